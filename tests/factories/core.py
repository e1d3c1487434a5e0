import factory
from django.utils import timezone

from core.models import Alert, AuditEntry, WorkerHeartbeat


class WorkerHeartbeatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkerHeartbeat
        django_get_or_create = ("cluster",)

    cluster = "sdr"
    beat_at = factory.LazyFunction(timezone.now)
    beats = 1


class AuditEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditEntry

    actor = factory.SubFactory("tests.factories.core.StaffUserFactory")
    actor_label = factory.LazyAttribute(lambda o: o.actor.username)
    source = AuditEntry.Source.ADMIN
    action = "message_retry"
    target = "conversations.message"
    object_count = 2
    object_ids = factory.LazyFunction(lambda: ["1", "2"])


class StaffUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    condition = Alert.Condition.CHIP_DOWN
    subject = factory.Sequence(lambda n: f"chip:{n}")
    title = factory.LazyAttribute(lambda o: f"Chip {o.subject}: desconectado")
    detail = "Chip desconectado."
