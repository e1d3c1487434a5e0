import pytest

from tests.channels.webhooks import chip_for


@pytest.fixture
def make_chip(db):
    return chip_for
