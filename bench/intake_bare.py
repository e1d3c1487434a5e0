"""The ceiling for durable ingestion through Django on this machine.

A WSGI app with no middleware and one view that INSERTs the posted JSON into
one table and answers its id, on the same database settings as production
(persistent connections). bench/intake.py serves it with gunicorn next to the
platform; it is not part of the product.
"""

import os

import django
import environ
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

TABLE = "bench_bare_event"

if not settings.configured:
    database = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    database["CONN_MAX_AGE"] = 60
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",  # noqa: S106 - this app only ever listens on 127.0.0.1
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        DATABASES={"default": database},
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()


def receive(request: HttpRequest, round_no: int) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (round, payload) VALUES (%s, %s::jsonb) RETURNING id",  # noqa: S608
            [round_no, request.body.decode()],
        )
        (event_id,) = cursor.fetchone()
    return JsonResponse({"status": "accepted", "event_id": event_id})


urlpatterns = [path("bare/<int:round_no>/", receive)]
application = get_wsgi_application()
