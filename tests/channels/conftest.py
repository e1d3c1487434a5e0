import pytest

from tests.factories.channels import ChipFactory

META_APP_SECRET = "meta-app-secret-for-tests"


@pytest.fixture
def make_chip(db):
    def make(provider: str, **kwargs):
        defaults = {}
        if provider == "meta":
            defaults = {"app_secret": META_APP_SECRET, "verify_token": "meatyhamhock"}
        return ChipFactory(provider=provider, **{**defaults, **kwargs})

    return make
