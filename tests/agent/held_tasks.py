"""The answer tasks a turn left waiting in the ORM broker (the test settings' broker)."""

from typing import Any

from django_q.models import OrmQ

from agent.turns import ANSWER_TASK


def held_answers() -> list[tuple[tuple, dict[str, Any], Any]]:
    """Each waiting answer task's args, kwargs and the time it is due, oldest first."""
    return [
        (q.task["args"], q.task["kwargs"], q.lock)
        for q in OrmQ.objects.order_by("pk")
        if q.task["func"] == ANSWER_TASK
    ]


def held_answer() -> tuple[tuple, dict[str, Any]]:
    """The one waiting answer task's args and kwargs, taken off the queue (run it by hand)."""
    [(args, kwargs, _due)] = held_answers()
    OrmQ.objects.all().delete()
    return args, kwargs
