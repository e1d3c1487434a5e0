"""Our conversations mirrored into Chatwoot: every message, and the handoff label.

On when the CHATWOOT_* settings name a Chatwoot, an account and an
API-channel inbox. Each thing to write is a `ChatwootMirror` row, created in
the same transaction as what it mirrors (a lead's message stored, a message
the provider accepted, a handoff opened or resolved), so nothing is lost when
a process dies. The writing happens later, in django-q2 tasks, never on the
WhatsApp path:

- a task per conversation is enqueued after commit, and a periodic sweep
  (`chatwoot mirror sweep`) picks up whatever is due;
- a conversation's rows are written in id order, one at a time: only the
  oldest unfinished row of a conversation can be claimed, by a
  compare-and-set on its state, with a lease for a worker that dies;
- exactly once: Chatwoot's message id is stored; a try that may have reached
  Chatwoot (a timeout after the request left, a 5xx) marks the row
  `uncertain`, and the next try looks for the message (our marker in
  `content_attributes`, our `source_id`, or the same text) before posting;
- a failure backs off exponentially (CHATWOOT_RETRY_BASE_SECONDS doubling up
  to CHATWOOT_RETRY_MAX_SECONDS), for the write and for Chatwoot as a whole
  (`ChatwootBreaker`): while Chatwoot fails nobody calls it, then one write
  probes, so a Chatwoot that hangs holds at most one worker for
  CHATWOOT_TIMEOUT_SECONDS now and then; a success closes the breaker, so
  one write Chatwoot keeps refusing holds the others up for one window only.

The Chatwoot conversation is found or created once per conversation (contact
by phone, else created in the inbox; its open conversation in the inbox,
else a new one) and kept in `Conversation.external_id`, the id the Chatwoot
webhook uses to find ours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from conversations.chatwoot_client import ChatwootClient, ChatwootError, chatwoot_configured
from conversations.models import ChatwootBreaker, ChatwootMirror, Conversation, Handoff, Message
from conversations.ownership import ACTIVE_HANDOFF
from core.audit import audit_record
from core.models import AuditEntry

logger = logging.getLogger(__name__)

MIRROR_TASK = "conversations.tasks.chatwoot_mirror_conversation"
# Set on every message we create in Chatwoot, so its webhook echo is recognised
# (conversations.chatwoot_events): a content_attributes key and a source_id prefix.
MIRROR_MARKER = "sdr_ops_message_id"
MIRROR_SOURCE_PREFIX = "sdr-ops:"
# How long our own label change may take to come back through the webhook
# (Chatwoot sends webhooks from a background job, within seconds).
LABEL_ECHO_WINDOW = timedelta(minutes=2)

BREAKER = 1  # the one ChatwootBreaker row
State = ChatwootMirror.State
Kind = ChatwootMirror.Kind
OPEN_STATES = (State.PENDING, State.SENDING)

# Who wrote a message, as the mirror tells Chatwoot (content_attributes).
_AUTHOR_BY_PURPOSE = {
    Message.Purpose.INBOUND: "lead",
    Message.Purpose.REPLY: "agent",
    Message.Purpose.SYSTEM: "agent",
    Message.Purpose.CAMPAIGN: "campaign",
    Message.Purpose.FOLLOW_UP: "campaign",
    Message.Purpose.HUMAN: "human",
}


def chatwoot_mirror_enabled() -> bool:
    return chatwoot_configured()


# --- Queueing (inside the caller's transaction) ------------------------------------------------


def chatwoot_mirror_message(*, message: Message) -> ChatwootMirror | None:
    """Queue one message for Chatwoot; idempotent. None when Chatwoot is not configured."""
    if not chatwoot_mirror_enabled():
        return None
    row, created = ChatwootMirror.objects.get_or_create(
        message=message,
        defaults={
            "conversation_id": message.conversation_id,
            "kind": Kind.MESSAGE,
            "next_attempt_at": timezone.now(),
        },
    )
    if created:
        _kick_after_commit(message.conversation_id)
    return row


def chatwoot_mirror_written_there(*, message: Message, remote_id: str) -> None:
    """A message that came from Chatwoot (an SDR's reply there): already mirrored, never posted."""
    if not chatwoot_mirror_enabled():
        return
    ChatwootMirror.objects.get_or_create(
        message=message,
        defaults={
            "conversation_id": message.conversation_id,
            "kind": Kind.MESSAGE,
            "state": State.DONE,
            "remote_id": remote_id[:100],
            "done_at": timezone.now(),
        },
    )


def chatwoot_mirror_labels(*, conversation_id: int) -> None:
    """Queue a label sync: the handoff label is set while a handoff is active."""
    if not chatwoot_mirror_enabled():
        return
    ChatwootMirror.objects.create(
        conversation_id=conversation_id, kind=Kind.LABELS, next_attempt_at=timezone.now()
    )
    _kick_after_commit(conversation_id)


def _kick_after_commit(conversation_id: int) -> None:
    def _enqueue() -> None:
        try:
            if chatwoot_mirror_backing_off():
                return  # Chatwoot is failing: the sweep probes it, one write per window.
            from django_q.tasks import async_task

            from core.brokers import fast_cluster

            async_task(
                MIRROR_TASK,
                conversation_id,
                group="chatwoot",
                cluster=fast_cluster(),
                save=False,
            )
        except Exception:  # the sweep is the safety net; never fail the caller's commit
            logger.exception(
                "chatwoot: could not enqueue the mirror of conversation %s", conversation_id
            )

    transaction.on_commit(_enqueue)


def chatwoot_mirror_retry(
    *,
    mirrors: QuerySet[ChatwootMirror] | Iterable[ChatwootMirror],
    actor: AbstractBaseUser | AnonymousUser | None,
    source: str = AuditEntry.Source.ADMIN,
) -> int:
    """Put writes Chatwoot refused (`failed`) back in the queue, once ops fixed the cause.

    Only failed rows move (compare-and-set on the state, so two clicks count
    once); the others are skipped. Each goes back to pending, due now, with
    its attempts reset: `failed` comes only from a refusal Chatwoot gave for
    good (a 4xx), so the tries before the fix say nothing about this one, and
    a row carrying them would start on a long backoff and behind every other
    write in the claim (fewest attempts first). `last_error` stays until the
    next try replaces it (a success clears it) so the list still says why it
    failed; the audit entry keeps the attempts and errors it had. `uncertain`
    is kept: an earlier ambiguous try may have stored the message in Chatwoot,
    and the next try must look for it before posting.

    Order in the conversation: the claim writes only the oldest unfinished
    row of a conversation, and a failed row is not unfinished, so the rows
    after it went on without it. Back to pending, it heads its conversation's
    queue again: later rows still pending wait for it. Later rows already
    written stay where they are in Chatwoot; this one is written after them.
    Returns how many rows went back to pending.
    """
    if isinstance(mirrors, QuerySet):
        ids = list(mirrors.values_list("pk", flat=True))
    else:
        ids = [mirror.pk for mirror in mirrors]
    with transaction.atomic():
        failed = list(
            ChatwootMirror.objects.select_for_update()
            .filter(pk__in=ids, state=State.FAILED)
            .order_by("id")
            .values("id", "conversation_id", "attempts", "last_error")
        )
        if not failed:
            return 0
        ChatwootMirror.objects.filter(
            pk__in=[row["id"] for row in failed], state=State.FAILED
        ).update(
            state=State.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            lease_expires_at=None,
        )
        audit_record(
            action="chatwoot_mirror_retry",
            source=source,
            actor=actor,
            target=ChatwootMirror,
            objects=[row["id"] for row in failed],
            detail={
                "skipped": len(set(ids)) - len(failed),
                "before": {
                    str(row["id"]): {"attempts": row["attempts"], "error": row["last_error"]}
                    for row in failed[:50]
                },
            },
        )
        for conversation_id in sorted({row["conversation_id"] for row in failed}):
            _kick_after_commit(conversation_id)
    return len(failed)


# Registered in ConversationsConfig.ready.


def outbox_settled_mirror(message: Message) -> None:
    """OUTBOX_SETTLED_HOOKS: a message the provider accepted goes to Chatwoot too."""
    if message.status == Message.Status.SENT:
        chatwoot_mirror_message(message=message)


def handoff_labels_mirror(handoff_id: int, event: str) -> None:
    """Handoff listener (after commit): opened or resolved changes the handoff label."""
    if event not in ("opened", "resolved") or not chatwoot_mirror_enabled():
        return
    conversation_id = (
        Handoff.objects.filter(pk=handoff_id).values_list("conversation_id", flat=True).first()
    )
    if conversation_id is not None:
        chatwoot_mirror_labels(conversation_id=conversation_id)


# --- Reading ---------------------------------------------------------------------------------


def chatwoot_mirror_backing_off(*, now: datetime | None = None) -> bool:
    """True while Chatwoot is failing and its next probe is not due: nobody calls it meanwhile."""
    now = now or timezone.now()
    return ChatwootBreaker.objects.filter(pk=BREAKER, retry_at__gt=now).exists()


def chatwoot_mirror_is_echo(
    *, chatwoot_conversation_id: str, message_id: str, content: str
) -> bool:
    """A Chatwoot message that is one of ours coming back (older Chatwoot drops our marker).

    By the id Chatwoot gave it, or, while its write is still in flight and
    the id not yet stored, by its text.
    """
    mirrors = ChatwootMirror.objects.filter(kind=Kind.MESSAGE)
    if message_id and mirrors.filter(remote_id=message_id).exists():
        return True
    if not chatwoot_conversation_id or not content:
        return False
    # Only our outgoing messages echo as outgoing; an SDR's own words are never taken for one.
    return mirrors.filter(
        Q(state=State.SENDING) | Q(state=State.PENDING, uncertain=True),
        conversation__external_id=chatwoot_conversation_id,
        message__direction=Message.Direction.OUTBOUND,
        message__body=content,
    ).exists()


def chatwoot_labels_are_ours(
    *, conversation: Conversation, previous: list[str], current: list[str]
) -> bool:
    """This label change is one our sync made lately: the webhook's echo of our own write.

    Chatwoot does not say who changed the labels; the change itself (from
    `previous` to `current`) and its timing do. An SDR making the very same
    change within LABEL_ECHO_WINDOW of ours is taken for the echo.
    """
    recent = ChatwootMirror.objects.filter(
        conversation=conversation,
        kind=Kind.LABELS,
        state=State.DONE,
        done_at__gte=timezone.now() - LABEL_ECHO_WINDOW,
    ).values_list("labels", flat=True)
    change = {"before": sorted(previous), "after": sorted(current)}
    return any(isinstance(done, dict) and done == change for done in recent)


# --- Writing (django-q2 tasks) -----------------------------------------------------------------


@dataclass
class MirrorReport:
    mirrored: int = 0
    failed: int = 0
    retried: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"mirrored": self.mirrored, "failed": self.failed, "retried": self.retried}


def chatwoot_mirror_drain(
    *,
    conversation_id: int | None = None,
    max_seconds: float | None = None,
) -> MirrorReport:
    """Write what is due (of one conversation, or of all), in order, until done or out of time.

    Stops at the first failure: Chatwoot is then backing off, and the rest
    waits for the next probe.
    """
    report = MirrorReport()
    if not chatwoot_mirror_enabled():
        return report
    budget = settings.CHATWOOT_MIRROR_DRAIN_SECONDS if max_seconds is None else max_seconds
    deadline = time.monotonic() + budget
    client: ChatwootClient | None = None
    try:
        while True:
            row = _claim_next(conversation_id=conversation_id)
            if row is None:
                break
            if client is None:
                client = ChatwootClient()
            outcome = _mirror_one(client, row)
            if outcome == "done":
                report.mirrored += 1
            elif outcome == "failed":
                report.failed += 1
            else:
                report.retried += 1
                break
            if time.monotonic() >= deadline:
                break
    finally:
        if client is not None:
            client.close()
    return report


def _lease() -> timedelta:
    # Linking a conversation takes up to five calls, then the write itself.
    return timedelta(seconds=settings.CHATWOOT_TIMEOUT_SECONDS * 8 + 30)


def _claim_next(*, conversation_id: int | None) -> ChatwootMirror | None:
    """Take the next due row that heads its conversation's queue (compare-and-set on its state)."""
    now = timezone.now()
    if not _probe_slot(now):
        return None
    unfinished = ChatwootMirror.objects.filter(state__in=OPEN_STATES)
    earlier = unfinished.filter(conversation_id=OuterRef("conversation_id"), id__lt=OuterRef("id"))
    due = Q(state=State.PENDING, next_attempt_at__lte=now) | Q(
        state=State.SENDING, lease_expires_at__lt=now
    )
    heads = unfinished.filter(due).filter(~Exists(earlier))
    if conversation_id is not None:
        heads = heads.filter(conversation_id=conversation_id)
    # Fewest attempts first: one write Chatwoot keeps refusing does not hold up the others.
    for candidate in heads.order_by("attempts", "id").values("id", "state")[:20]:
        expired = candidate["state"] == State.SENDING
        claimed = (
            ChatwootMirror.objects.filter(pk=candidate["id"], state=candidate["state"])
            .filter(due)
            .update(
                state=State.SENDING,
                attempts=F("attempts") + 1,
                lease_expires_at=now + _lease(),
                # A worker died mid-write: it may have reached Chatwoot.
                uncertain=True if expired else F("uncertain"),
            )
        )
        if claimed:
            return ChatwootMirror.objects.select_related("conversation__lead", "message").get(
                pk=candidate["id"]
            )
    # Nothing to write: a probe slot taken for nothing is given back.
    ChatwootBreaker.objects.filter(pk=BREAKER, failures__gt=0, retry_at__gt=now).update(
        retry_at=now
    )
    return None


def _probe_slot(now: datetime) -> bool:
    """May this drain call Chatwoot now? While it fails, only one drain per window (the probe)."""
    breaker = ChatwootBreaker.objects.filter(pk=BREAKER).values("failures", "retry_at").first()
    if breaker is None or not breaker["failures"]:
        return True
    if breaker["retry_at"] and breaker["retry_at"] > now:
        return False
    # Compare-and-set: of the drains that see the window over, one probes.
    return bool(
        ChatwootBreaker.objects.filter(pk=BREAKER, retry_at=breaker["retry_at"]).update(
            retry_at=now + _lease()
        )
    )


def _breaker_closed() -> None:
    ChatwootBreaker.objects.filter(pk=BREAKER, failures__gt=0).update(failures=0, retry_at=None)


def _breaker_failed() -> None:
    with transaction.atomic():
        breaker, _ = ChatwootBreaker.objects.select_for_update().get_or_create(pk=BREAKER)
        breaker.failures += 1
        breaker.retry_at = timezone.now() + timedelta(seconds=_backoff(breaker.failures))
        breaker.save(update_fields=["failures", "retry_at", "updated_at"])


def _backoff(failures: int) -> float:
    return min(
        settings.CHATWOOT_RETRY_BASE_SECONDS * 2 ** max(failures - 1, 0),
        settings.CHATWOOT_RETRY_MAX_SECONDS,
    )


def _mirror_one(client: ChatwootClient, row: ChatwootMirror) -> str:
    """Write one row: "done", "failed" (Chatwoot refused it for good) or "retry"."""
    chatwoot_id = ""
    try:
        chatwoot_id = _conversation_link(client, row.conversation)
        if row.kind == Kind.MESSAGE:
            remote_id = _message_write(client, row, chatwoot_id)
            _finish(row, remote_id=remote_id)
        else:
            _finish(row, labels=_labels_write(client, row, chatwoot_id))
        return "done"
    except ChatwootError as exc:
        if exc.status == 404 and chatwoot_id and exc.operation != "contacts_search":
            # The Chatwoot conversation was deleted: find or create another next time.
            Conversation.objects.filter(pk=row.conversation_id, external_id=chatwoot_id).update(
                external_id=""
            )
        if not exc.retryable:
            _give_up(row, error=str(exc))
            return "failed"
        _retry(row, error=str(exc), uncertain=exc.ambiguous and exc.operation == "message_create")
        return "retry"


def _finish(
    row: ChatwootMirror, *, remote_id: str = "", labels: dict[str, list[str]] | None = None
) -> None:
    _breaker_closed()
    ChatwootMirror.objects.filter(pk=row.pk, state=State.SENDING).update(
        state=State.DONE,
        remote_id=remote_id[:100],
        labels=labels if labels is not None else {},
        done_at=timezone.now(),
        lease_expires_at=None,
        uncertain=False,
        last_error="",
    )


def _give_up(row: ChatwootMirror, *, error: str) -> None:
    logger.warning("chatwoot: mirror #%s given up: %s", row.pk, error)
    _breaker_closed()  # Chatwoot answered: it is up, it refused this one write
    ChatwootMirror.objects.filter(pk=row.pk, state=State.SENDING).update(
        state=State.FAILED, lease_expires_at=None, last_error=error[:300]
    )


def _retry(row: ChatwootMirror, *, error: str, uncertain: bool) -> None:
    _breaker_failed()
    delay = _backoff(row.attempts)
    ChatwootMirror.objects.filter(pk=row.pk, state=State.SENDING).update(
        state=State.PENDING,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        lease_expires_at=None,
        uncertain=True if uncertain else F("uncertain"),
        last_error=error[:300],
    )


# --- The Chatwoot side ---------------------------------------------------------------------------


def _conversation_link(client: ChatwootClient, conversation: Conversation) -> str:
    """The Chatwoot conversation of ours: stored, else found or created (contact by phone)."""
    stored = (
        Conversation.objects.filter(pk=conversation.pk).values_list("external_id", flat=True).get()
    )
    if stored:
        return stored
    lead = conversation.lead
    identifier = f"sdr-ops-lead-{lead.pk}"
    contact = _contact_find(client, phone=lead.phone or "", identifier=identifier)
    source_id = ""
    if contact is None:
        created = client.contact_create(
            name=(lead.name or lead.phone or identifier)[:255],
            phone=lead.phone or "",
            identifier=identifier,
        )
        contact = _dict(created.get("contact"))
        source_id = str(_dict(created.get("contact_inbox")).get("source_id") or "")
    contact_id = contact.get("id")
    if not contact_id:
        raise ChatwootError("contact_create", "answer without a contact id")
    # A conversation created by a try whose answer was lost is found here, not made twice.
    reusable = [
        item
        for item in client.contact_conversations(contact_id=contact_id)
        if str(item.get("inbox_id")) == client.inbox
        and item.get("status") != "resolved"
        and item.get("id")
    ]
    if reusable:
        chatwoot_id = str(max(reusable, key=lambda item: int(item["id"]))["id"])
    else:
        source_id = source_id or _inbox_source_id(contact, client.inbox)
        if not source_id:
            source_id = str(
                client.contact_inbox_create(contact_id=contact_id).get("source_id") or ""
            )
        created_conversation = client.conversation_create(
            source_id=source_id, contact_id=contact_id
        )
        chatwoot_id = str(created_conversation.get("id") or "")
        if not chatwoot_id:
            raise ChatwootError("conversation_create", "answer without a conversation id")
    Conversation.objects.filter(pk=conversation.pk).update(external_id=chatwoot_id[:100])
    return chatwoot_id


def _contact_find(client: ChatwootClient, *, phone: str, identifier: str) -> dict[str, Any] | None:
    for contact in client.contacts_search(phone or identifier):
        if (phone and contact.get("phone_number") == phone) or contact.get(
            "identifier"
        ) == identifier:
            return contact
    return None


def _inbox_source_id(contact: dict[str, Any], inbox: str) -> str:
    for contact_inbox in contact.get("contact_inboxes") or []:
        contact_inbox = _dict(contact_inbox)
        if str(_dict(contact_inbox.get("inbox")).get("id")) == inbox:
            return str(contact_inbox.get("source_id") or "")
    return ""


def _message_write(client: ChatwootClient, row: ChatwootMirror, chatwoot_id: str) -> str:
    message = row.message
    if message is None:  # the check constraint keeps message rows with their message
        raise ChatwootError("message_create", "mirror row without a message", retryable=False)
    inbound = message.direction == Message.Direction.INBOUND
    author = _AUTHOR_BY_PURPOSE.get(message.purpose, "agent")
    content = message.body or f"[{message.get_kind_display()}] {message.media_url}".strip()
    if row.uncertain:
        found = _posted_before(client, chatwoot_id, message=message, content=content)
        if found:
            return found
    bot = settings.CHATWOOT_AGENT_BOT_ID if author in ("agent", "campaign") else ""
    answer = client.message_create(
        conversation_id=chatwoot_id,
        content=content,
        message_type="incoming" if inbound else "outgoing",
        content_attributes={MIRROR_MARKER: message.pk, "sdr_ops_author": author},
        source_id=f"{MIRROR_SOURCE_PREFIX}{message.pk}",
        agent_bot_id=bot,
    )
    remote_id = str(answer.get("id") or "")
    if not remote_id:
        raise ChatwootError("message_create", "answer without a message id", ambiguous=True)
    return remote_id


def _posted_before(
    client: ChatwootClient, chatwoot_id: str, *, message: Message, content: str
) -> str:
    """Chatwoot's id of this message if an earlier try stored it, else ""."""
    message_type = 0 if message.direction == Message.Direction.INBOUND else 1
    known = set(
        ChatwootMirror.objects.filter(conversation_id=message.conversation_id)
        .exclude(remote_id="")
        .values_list("remote_id", flat=True)
    )
    by_text = ""
    for posted in client.messages_list(conversation_id=chatwoot_id):
        remote_id = str(posted.get("id") or "")
        if not remote_id or remote_id in known:
            continue
        marker = _dict(posted.get("content_attributes")).get(MIRROR_MARKER)
        if str(marker) == str(message.pk) or posted.get("source_id") == (
            f"{MIRROR_SOURCE_PREFIX}{message.pk}"
        ):
            return remote_id
        kind = posted.get("message_type")
        same_type = kind in (message_type, ("incoming", "outgoing")[message_type])
        if same_type and posted.get("content") == content:
            # Older Chatwoot drops our marker: the same text of the same side, not yet ours.
            by_text = by_text or remote_id
    return by_text


def _labels_write(
    client: ChatwootClient, row: ChatwootMirror, chatwoot_id: str
) -> dict[str, list[str]]:
    """Set or remove the handoff label to match the conversation now; the change it made.

    Chatwoot's POST replaces the whole list, so the others' labels are read
    first and kept. Idempotent: a retry computes the same list.
    """
    label = settings.CHATWOOT_HANDOFF_LABEL
    wanted = Handoff.objects.filter(
        conversation_id=row.conversation_id, status__in=ACTIVE_HANDOFF
    ).exists()
    current = client.labels_get(conversation_id=chatwoot_id)
    desired = [item for item in current if item != label] + ([label] if wanted else [])
    if sorted(desired) == sorted(current):
        return {}
    client.labels_set(conversation_id=chatwoot_id, labels=desired)
    return {"before": sorted(current), "after": sorted(desired)}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
