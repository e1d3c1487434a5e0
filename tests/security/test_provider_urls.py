"""Issue 8, finding 8: a chip's API base URL cannot make the worker call an internal address.

Before the fix, any URL was saved and the worker POSTed to it with the chip's
credentials, showing 500 characters of the answer in the admin. Now the URL is
checked when the chip is saved (pt-BR error on the form) and again when the
worker opens the connection, on the address it connects to (a host name that
resolves to an internal address later, DNS rebinding, is refused too).
Test settings allow private addresses (the fake servers listen on
127.0.0.1); these tests turn that off as production has it.
"""

from __future__ import annotations

import pytest

from channels.models import Chip
from conversations import outbox
from conversations.models import DeliveryAttempt, Message
from tests.factories.conversations import ConversationFactory, OutboundMessageFactory
from tests.security.forms import change_form_data
from tests.support.fake_provider import Reply

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/channels/chip/add/"


def _add_chip(client, api_base_url: str):
    page = client.get(ADD_URL)
    assert page.status_code == 200
    data = {
        **change_form_data(page),
        "name": "Chip SSRF",
        "provider": "evolution",
        "instance_id": "inst-1",
        "api_base_url": api_base_url,
    }
    return client.post(ADD_URL, data)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/",
        "http://localhost:6379/",  # a name: resolved, then refused
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://192.168.1.1/",
        "http://[::1]:5432/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0:8000/",
        "http://224.0.0.1/",
    ],
)
def test_saving_a_chip_with_an_internal_api_url_is_refused_in_pt_br(
    superuser_client, settings, url
):
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False
    response = _add_chip(superuser_client, url)
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert "rede interna" in errors["api_base_url"][0]
    assert not Chip.objects.filter(name="Chip SSRF").exists()


def test_a_scheme_other_than_http_is_refused_even_where_private_urls_are_allowed(
    superuser_client, settings
):
    settings.PROVIDER_ALLOW_PRIVATE_URLS = True
    response = _add_chip(superuser_client, "ftp://127.0.0.1/")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "https://" in errors["api_base_url"][0]
    assert not Chip.objects.filter(name="Chip SSRF").exists()


def test_a_private_api_url_is_saved_where_the_setting_allows_it(superuser_client, settings):
    settings.PROVIDER_ALLOW_PRIVATE_URLS = True
    response = _add_chip(superuser_client, "http://10.0.0.5:8080")
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Chip.objects.get(name="Chip SSRF").api_base_url == "http://10.0.0.5:8080"


def test_a_public_address_is_accepted(superuser_client, settings):
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False
    response = _add_chip(superuser_client, "https://93.184.215.14/")
    assert response.status_code == 302, response.context["adminform"].form.errors


def test_an_unresolvable_host_is_refused(superuser_client, settings):
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False
    response = _add_chip(superuser_client, "https://no-such-host.invalid/")
    assert response.status_code == 200
    assert "resolver" in response.context["adminform"].form.errors["api_base_url"][0]


# --- At send time ----------------------------------------------------------------------------


def _queue(chip) -> Message:
    return OutboundMessageFactory(conversation=ConversationFactory(chip=chip), body="Oi")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_worker_never_connects_to_an_internal_address(
    fake_provider, provider_chip, settings, host
):
    # Saved while allowed, or a name that resolved elsewhere when it was saved.
    chip = provider_chip(api_base_url=fake_provider.url.replace("127.0.0.1", host))
    message = _queue(chip)
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False

    report = outbox.outbox_drain()

    assert report.sent == 0
    assert fake_provider.seen() == []  # not one byte reached the internal server
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == "auth"
    assert attempt.error.startswith("URL do provedor bloqueada:")
    assert "rede interna" in attempt.error
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED  # retried once ops fix the chip
    chip.refresh_from_db()
    assert "bloqueada" in chip.last_error


def test_the_same_chip_sends_where_private_addresses_are_allowed(fake_provider, provider_chip):
    chip = provider_chip()
    message = _queue(chip)
    assert outbox.outbox_drain().sent == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(fake_provider.seen()) == 1


def test_provider_error_bodies_are_kept_short_and_shown_escaped(
    fake_provider, provider_chip, superuser_client
):
    chip = provider_chip()
    message = _queue(chip)
    internal_page = "<script>alert(1)</script>\x1b[31m" + "segredo interno " * 400
    fake_provider.always(Reply(500, internal_page))

    outbox.outbox_drain()

    attempt = DeliveryAttempt.objects.get(message=message)
    assert len(attempt.error) <= 301
    assert attempt.error.endswith("…")
    message.refresh_from_db()
    assert len(message.last_error) <= 400
    page = superuser_client.get(f"/admin/conversations/message/{message.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_control_characters_in_provider_errors_are_escaped(fake_provider, provider_chip):
    chip = provider_chip(provider="zapi", api_token="zapi-token")
    message = _queue(chip)
    fake_provider.always(Reply(500, {"error": "falhou\x1b[31m\r\nLinha forjada"}))

    outbox.outbox_drain()

    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.error == "falhou\\x1b[31m\\r\\nLinha forjada"
