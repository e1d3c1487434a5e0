import os

import pytest
from django.contrib.auth.models import Group
from hypothesis import settings as hypothesis_settings

# Property-based tests run a bounded, fixed set of examples in CI (derandomized:
# the same examples every run, so a red build is reproducible, never a roll of
# the dice); a long random local run: HYPOTHESIS_PROFILE=thorough.
hypothesis_settings.register_profile(
    "ci", max_examples=60, deadline=None, database=None, derandomize=True
)
hypothesis_settings.register_profile("thorough", max_examples=3000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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


@pytest.fixture(autouse=True)
def _no_chip_cached_from_another_test():
    """The chip cache is per process; a test's chips are rolled back, the cache is not."""
    from channels.chip_cache import chip_cache_clear

    chip_cache_clear()


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
        from tests.support.browser import admin_form_login

        admin_form_login(page, live_server.url, username="ops", password="s3nha-forte-ops")
        return live_server.url

    return login


# role_user('ops'|'manager'|'sdr'|'staff'): a staff user in that role's group
# ('staff': in no group, who may see nothing).
@pytest.fixture
def role_user(db, django_user_model):
    def make(role: str):
        user = django_user_model.objects.create_user(
            username=f"{role}-user", password="pw-for-tests", is_staff=True
        )
        if role != "staff":
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def role_client(client, role_user):
    def login(role: str):
        client.force_login(role_user(role))
        return client

    return login


@pytest.fixture
def fake_chatwoot(settings):
    """Chatwoot's Application API behind respx, with the CHATWOOT_* settings pointing at it."""
    import respx

    from tests.support.fake_chatwoot import FakeChatwoot, chatwoot_settings

    chatwoot_settings(settings)
    with respx.mock(assert_all_called=False) as router:
        yield FakeChatwoot(router)
