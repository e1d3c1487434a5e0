import pytest


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password="pw-for-tests"
    )


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client
