# The outbox fixtures (a local fake provider, chips pointed at it) for the provider-URL tests.
from tests.conversations.conftest import fake_provider, provider_chip  # noqa: F401

# The roles of core/roles.py plus a staff user in no group (who may see nothing).
ROLES = ("ops", "manager", "sdr", "staff")
