"""Fixtures for the broker tests."""

import pytest
import redis
from django_q.conf import Conf

REDIS_URL = "redis://127.0.0.1:6379/5"


@pytest.fixture
def redis_broker(settings, monkeypatch):
    """django-q2 configured as config/settings/base.py does for Q_BROKER=redis."""
    # Every enqueue names its cluster (core.brokers.fast_cluster): this test's own.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "name": "intake-broker-test"}
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    monkeypatch.setattr(Conf, "BROKER_CLASS", "core.brokers.PooledRedis")
    monkeypatch.setattr(Conf, "CLUSTER_NAME", "intake-broker-test")
    queue = redis.from_url(REDIS_URL)
    key = "django_q:intake-broker-test:q"
    queue.delete(key)
    yield queue, key
    queue.delete(key)
    queue.close()
