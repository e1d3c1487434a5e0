import uuid

import pytest

from tests.factories.channels import ChipFactory
from tests.support.fake_provider import running_fake_provider


@pytest.fixture
def fake_provider():
    with running_fake_provider() as provider:
        yield provider


@pytest.fixture
def provider_chip(db, fake_provider):
    """Evolution chips pointed at the fake provider, unpaced unless told otherwise."""

    def make(**kwargs):
        defaults = {
            "provider": "evolution",
            "api_base_url": fake_provider.url,
            "instance_id": f"chip-{uuid.uuid4().hex[:10]}",
            "api_token": "evo-key",
            "min_interval_seconds": 0,
            "jitter_seconds": 0,
            "daily_cap": 10_000,
        }
        return ChipFactory(**{**defaults, **kwargs})

    return make
