"""The audit trail: who changed what, on how many objects, when and from where."""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model

from core.models import AuditEntry

# Keep the row small on bulk actions: the count is exact, the ids a sample.
MAX_IDS = 200


def audit_record(
    *,
    action: str,
    source: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_label: str = "",
    target: type[Model] | str = "",
    objects: Iterable[Any] = (),
    count: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Write one audit entry.

    `objects` may be model instances or primary keys; `count` overrides their
    number when the caller changed rows it did not load (a bulk UPDATE).
    """
    ids = [getattr(obj, "pk", obj) for obj in objects]
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    if not actor_label:
        actor_label = user.get_username() if user is not None else source
    if isinstance(target, type):
        target = target._meta.label_lower
    return AuditEntry.objects.create(
        actor=user,
        actor_label=actor_label[:150],
        source=source,
        action=action,
        target=target,
        object_count=len(ids) if count is None else count,
        object_ids=[str(pk) for pk in ids[:MAX_IDS]],
        detail=detail or {},
    )


def audit_admin(
    request: Any,
    *,
    action: str,
    target: type[Model],
    objects: Iterable[Any] = (),
    count: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """audit_record for an admin action: the request's user, from the admin."""
    return audit_record(
        action=action,
        source=AuditEntry.Source.ADMIN,
        actor=request.user,
        target=target,
        objects=objects,
        count=count,
        detail=detail,
    )
