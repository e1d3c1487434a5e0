"""A turn cut by a passing database error is answered when the database lets it, once."""

import pytest

from agent import tasks
from agent.models import ConversationLease
from conversations.models import Message
from tests.factories.agent import AgentProfileFactory
from tests.factories.conversations import ConversationFactory, InboundMessageFactory
from tests.support.db_locks import lock_timeout, row_locked_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _short_retries(settings):
    settings.DB_TRANSIENT_RETRY_SECONDS = [0.5, 1.0, 1.5, 2.0]


def test_a_turn_cut_by_a_lock_timeout_is_answered_on_retry_exactly_once(sandbox_chip):
    sandbox_chip.agent_profile = AgentProfileFactory()
    sandbox_chip.save()
    message = InboundMessageFactory(conversation=ConversationFactory(chip=sandbox_chip))
    lock_timeout(200)

    # Another transaction holds the lead's message while the turn tries to
    # mark it answered: the first try fails with a lock timeout.
    lock = "SELECT 1 FROM conversations_message WHERE id = %s FOR UPDATE"
    with row_locked_elsewhere(lock, message.pk, release_after=2.0):
        status = tasks.answer_message(message.pk)

    assert status == "fallback"  # no model configured: the fallback reply, by the normal path
    replies = Message.objects.filter(direction=Message.Direction.OUTBOUND, reply_to=message)
    assert replies.count() == 1
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED
    assert not ConversationLease.objects.exists()
