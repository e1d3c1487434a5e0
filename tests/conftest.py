import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every transactional test restores the database it found.

    A transactional test ends with a flush; without serialized rollback the
    flush re-creates content types with new ids and deletes the role groups
    the data migrations made, which breaks every later test that relies on
    either (and the deserialization of the next serialized-rollback test).
    """
    for item in items:
        marker = item.get_closest_marker("django_db")
        if (
            marker
            and marker.kwargs.get("transaction")
            and "serialized_rollback" not in marker.kwargs
        ):
            kwargs = {**marker.kwargs, "serialized_rollback": True}
            item.add_marker(pytest.mark.django_db(*marker.args, **kwargs), append=False)


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password="pw-for-tests"
    )


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def page():
    from tests.support.browser import chromium_page

    with chromium_page() as browser_page:
        yield browser_page


@pytest.fixture
def admin_login(live_server, django_user_model):
    """Log a real superuser in through the admin login form; returns the base URL."""

    def login(page) -> str:
        django_user_model.objects.create_superuser(
            username="ops", email="ops@example.com", password="s3nha-forte-ops"
        )
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "s3nha-forte-ops")
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")
        return live_server.url

    return login
