import factory
from django.utils import timezone

from core.models import WorkerHeartbeat


class WorkerHeartbeatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkerHeartbeat
        django_get_or_create = ("cluster",)

    cluster = "sdr"
    beat_at = factory.LazyFunction(timezone.now)
    beats = 1
