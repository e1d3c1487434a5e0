"""One worker per conversation: a lease row, taken over when it expires."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agent.models import ConversationLease

logger = logging.getLogger(__name__)


def lease_acquire(*, conversation_id: int) -> str | None:
    """Claim the conversation for this worker; None when another worker holds it."""
    token = uuid.uuid4().hex
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.AGENT_LEASE_SECONDS)
    taken_over = ConversationLease.objects.filter(
        conversation_id=conversation_id, expires_at__lt=now
    ).update(token=token, expires_at=expires_at, acquired_at=now)
    if taken_over:
        logger.warning("agent: took over the expired lease of conversation %s", conversation_id)
        return token
    try:
        with transaction.atomic():
            ConversationLease.objects.create(
                conversation_id=conversation_id, token=token, expires_at=expires_at
            )
    except IntegrityError:
        return None
    return token


def lease_hold(*, conversation_id: int, token: str, until: datetime) -> bool:
    """Keep (or resume) the lease of `token` until `until`; False when it is no longer ours.

    A turn waiting for the lead to finish typing holds its conversation with
    no worker attached; the task that resumes it carries the token.
    """
    return bool(
        ConversationLease.objects.filter(conversation_id=conversation_id, token=token).update(
            expires_at=until
        )
    )


def lease_release(*, conversation_id: int, token: str) -> None:
    ConversationLease.objects.filter(conversation_id=conversation_id, token=token).delete()


# --- Processing -----------------------------------------------------------------------------
