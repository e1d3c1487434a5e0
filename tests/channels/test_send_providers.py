"""Each adapter's send_text: the request it makes and how it classifies the answer.

HTTP is mocked at the transport (httpx.MockTransport) with the providers'
documented response and error bodies; the adapter code runs for real.
"""

import json

import httpx
import pytest

from channels.http import provider_client
from channels.providers.base import ErrorKind, OutboundMedia, get_adapter
from tests.factories.channels import ChipFactory

pytestmark = pytest.mark.django_db


def send(chip, handler, *, to="5511999990000", text="Olá!"):
    seen = []

    def record(request):
        seen.append(request)
        return handler(request)

    with provider_client(transport=httpx.MockTransport(record)) as client:
        result = get_adapter(chip.provider).send_text(chip, to=to, text=text, client=client)
    return result, seen


def answer(status, body, headers=None):
    return lambda request: httpx.Response(status, json=body, headers=headers or {})


def meta_error(code, message, http_status=400, details="", headers=None):
    body = {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AbCdEf123",
        }
    }
    return answer(http_status, body, headers)


# --- Meta Cloud API ---------------------------------------------------------------------


@pytest.fixture
def meta_chip():
    return ChipFactory(provider="meta", instance_id="106540352242922", api_token="EAAG-token")


def test_meta_sends_a_text_to_the_phone_number_id_with_the_bearer_token(meta_chip):
    body = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "5511999990000", "wa_id": "5511999990000"}],
        "messages": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"}],
    }
    result, (request,) = send(meta_chip, answer(200, body), text="Oi, Ana")

    assert result.ok
    assert result.provider_message_id == body["messages"][0]["id"]
    assert str(request.url) == "https://graph.facebook.com/v21.0/106540352242922/messages"
    assert request.headers["Authorization"] == "Bearer EAAG-token"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5511999990000",
        "type": "text",
        "text": {"preview_url": False, "body": "Oi, Ana"},
    }


def test_meta_base_url_is_overridable_per_chip(meta_chip):
    meta_chip.api_base_url = "http://127.0.0.1:9/graph"
    _, (request,) = send(meta_chip, answer(200, {"messages": [{"id": "wamid.1"}]}))
    assert str(request.url) == "http://127.0.0.1:9/graph/106540352242922/messages"


@pytest.mark.parametrize(
    ("code", "http_status", "message", "kind"),
    [
        (131048, 400, "(#131048) Spam rate limit hit", ErrorKind.RATE_LIMITED),
        (
            131056,
            400,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            ErrorKind.RATE_LIMITED,
        ),
        (130429, 400, "(#130429) Rate limit hit", ErrorKind.RATE_LIMITED),
        (4, 400, "(#4) Application request limit reached", ErrorKind.RATE_LIMITED),
        (131026, 400, "(#131026) Message Undeliverable", ErrorKind.INVALID_RECIPIENT),
        (
            131047,
            400,
            "(#131047) Re-engagement message: more than 24 hours have passed",
            ErrorKind.INVALID_RECIPIENT,
        ),
        (131031, 400, "(#131031) Business Account locked", ErrorKind.RESTRICTED),
        (368, 400, "(#368) Temporarily blocked for policies violations", ErrorKind.RESTRICTED),
        (190, 401, "Error validating access token: Session has expired", ErrorKind.AUTH),
        (10, 403, "(#10) Application does not have permission for this action", ErrorKind.AUTH),
        (131000, 500, "(#131000) Something went wrong", ErrorKind.TRANSIENT),
        (131016, 503, "(#131016) Service unavailable", ErrorKind.TRANSIENT),
        (100, 400, "(#100) Invalid parameter", ErrorKind.PERMANENT),
        (131051, 400, "(#131051) Unsupported message type", ErrorKind.PERMANENT),
    ],
)
def test_meta_errors_are_classified_by_their_code(meta_chip, code, http_status, message, kind):
    result, _ = send(meta_chip, meta_error(code, message, http_status, details="See docs"))

    assert not result.ok
    assert result.error_kind == kind
    assert result.error_code == str(code)
    assert result.http_status == http_status
    assert message in result.error
    assert "See docs" in result.error


def test_meta_rate_limit_keeps_the_retry_after(meta_chip):
    result, _ = send(
        meta_chip,
        meta_error(130429, "(#130429) Rate limit hit", 429, headers={"Retry-After": "30"}),
    )
    assert result.error_kind == ErrorKind.RATE_LIMITED
    assert result.retry_after == 30


def test_meta_unknown_code_falls_back_to_the_http_status(meta_chip):
    result, _ = send(meta_chip, meta_error(999999, "new error", 502))
    assert result.error_kind == ErrorKind.TRANSIENT


def test_meta_success_without_a_message_id_is_not_retried(meta_chip):
    result, _ = send(meta_chip, answer(200, {"messaging_product": "whatsapp"}))
    assert result.error_kind == ErrorKind.PERMANENT


# --- Transport failures (any provider) --------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectTimeout("connect timed out"), httpx.ReadTimeout("read timed out")],
)
def test_timeouts_are_transient(meta_chip, exc):
    def fail(request):
        raise exc

    result, _ = send(meta_chip, fail)
    assert result.error_kind == ErrorKind.TRANSIENT
    assert "timeout" in result.error


def test_connection_errors_are_transient(meta_chip):
    def fail(request):
        raise httpx.ConnectError("connection refused")

    result, _ = send(meta_chip, fail)
    assert result.error_kind == ErrorKind.TRANSIENT
    assert "ConnectError" in result.error


# --- Evolution API ---------------------------------------------------------------------------


@pytest.fixture
def evolution_chip():
    return ChipFactory(
        provider="evolution",
        api_base_url="https://evo.example.com/",
        instance_id="vendas-01",
        api_token="B6D711FCDE4D-4183",
    )


def test_evolution_sends_to_message_send_text_with_the_apikey(evolution_chip):
    body = {
        "key": {
            "remoteJid": "5511999990000@s.whatsapp.net",
            "fromMe": True,
            "id": "BAE5F5A632EAE722",
        },
        "message": {"conversation": "Olá!"},
        "messageTimestamp": "1717689097",
        "status": "PENDING",
    }
    result, (request,) = send(evolution_chip, answer(201, body))

    assert result.ok
    assert result.provider_message_id == "BAE5F5A632EAE722"
    assert str(request.url) == "https://evo.example.com/message/sendText/vendas-01"
    assert request.headers["apikey"] == "B6D711FCDE4D-4183"
    assert json.loads(request.content) == {"number": "5511999990000", "text": "Olá!"}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            {
                "status": 400,
                "error": "Bad Request",
                "response": {
                    "message": [
                        {
                            "exists": False,
                            "jid": "5511999990000@s.whatsapp.net",
                            "number": "5511999990000",
                        }
                    ]
                },
            },
            ErrorKind.INVALID_RECIPIENT,
        ),
        (
            401,
            {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}},
            ErrorKind.AUTH,
        ),
        (
            404,
            {
                "status": 404,
                "error": "Not Found",
                "response": {"message": ['The "vendas-01" instance does not exist']},
            },
            ErrorKind.PERMANENT,
        ),
        (
            500,
            {
                "status": 500,
                "error": "Internal Server Error",
                "response": {"message": "Connection Closed"},
            },
            ErrorKind.TRANSIENT,
        ),
        (
            400,
            {"status": 400, "error": "Bad Request", "response": {"message": ["Text is required"]}},
            ErrorKind.PERMANENT,
        ),
    ],
)
def test_evolution_errors(evolution_chip, status, body, kind):
    result, _ = send(evolution_chip, answer(status, body))
    assert result.error_kind == kind
    assert result.http_status == status


def test_evolution_without_server_url_fails_permanently(evolution_chip):
    evolution_chip.api_base_url = ""
    result, seen = send(evolution_chip, answer(201, {}))
    assert result.error_kind == ErrorKind.PERMANENT
    assert seen == []


# --- Z-API ---------------------------------------------------------------------------------------


@pytest.fixture
def zapi_chip():
    return ChipFactory(
        provider="zapi",
        instance_id="3C4A0B1D2E",
        api_token="F1E2D3C4B5",
        client_token="Fa1b2c3d4e5S",
    )


def test_zapi_sends_to_send_text_with_the_client_token(zapi_chip):
    body = {
        "zaapId": "3999984263738042930CD6ECDE9VDWSA",
        "messageId": "D241XXXX732339502B68",
        "id": "D241XXXX732339502B68",
    }
    result, (request,) = send(zapi_chip, answer(200, body))

    assert result.ok
    assert result.provider_message_id == "D241XXXX732339502B68"
    assert (
        str(request.url) == "https://api.z-api.io/instances/3C4A0B1D2E/token/F1E2D3C4B5/send-text"
    )
    assert request.headers["Client-Token"] == "Fa1b2c3d4e5S"
    assert json.loads(request.content) == {"phone": "5511999990000", "message": "Olá!"}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"error": "your client-token is not configured"}, ErrorKind.AUTH),
        (400, {"error": "You are not connected."}, ErrorKind.TRANSIENT),
        (404, {"error": "Instance not found"}, ErrorKind.PERMANENT),
        (429, {"error": "Too many requests"}, ErrorKind.RATE_LIMITED),
        (500, {"error": "Internal error"}, ErrorKind.TRANSIENT),
    ],
)
def test_zapi_errors(zapi_chip, status, body, kind):
    result, _ = send(zapi_chip, answer(status, body))
    assert result.error_kind == kind


# --- W-API ---------------------------------------------------------------------------


@pytest.fixture
def wapi_chip():
    return ChipFactory(provider="wapi", instance_id="LITE-ABC123", api_token="wapi-token")


def test_wapi_sends_with_instance_id_query_and_bearer(wapi_chip):
    result, (request,) = send(
        wapi_chip, answer(200, {"error": False, "instanceId": "LITE-ABC123", "messageId": "3EB0X"})
    )
    assert result.ok
    assert result.provider_message_id == "3EB0X"
    assert request.url.path == "/v1/message/send-text"
    assert request.url.host == "api.w-api.app"
    assert request.url.params["instanceId"] == "LITE-ABC123"
    assert request.headers["Authorization"] == "Bearer wapi-token"
    assert json.loads(request.content) == {"phone": "5511999990000", "message": "Olá!"}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error": True, "message": "Token inválido"}, ErrorKind.AUTH),
        (200, {"error": True, "message": "Instância desconectada"}, ErrorKind.PERMANENT),
        (503, {"error": True, "message": "Instância não conectada"}, ErrorKind.TRANSIENT),
    ],
)
def test_wapi_errors(wapi_chip, status, body, kind):
    result, _ = send(wapi_chip, answer(status, body))
    assert result.error_kind == kind


# --- Sandbox -------------------------------------------------------------------------


def test_sandbox_without_a_url_records_locally():
    chip = ChipFactory(provider="sandbox")
    result, seen = send(chip, answer(500, {}))
    assert result.ok
    assert result.provider_message_id.startswith("sbx-out-")
    assert seen == []


def test_sandbox_with_a_simulator_url_posts_and_reads_the_error_kind():
    chip = ChipFactory(provider="sandbox", api_base_url="http://sim.local")
    result, (request,) = send(chip, answer(403, {"kind": "restricted", "error": "bloqueado"}))
    assert request.url.path == "/messages"
    assert result.error_kind == ErrorKind.RESTRICTED


# --- Media -------------------------------------------------------------------------------


def send_media(chip, handler, media):
    seen = []

    def record(request):
        seen.append(request)
        return handler(request)

    with provider_client(transport=httpx.MockTransport(record)) as client:
        result = get_adapter(chip.provider).send_media(
            chip, to="5511999990000", media=media, client=client
        )
    return result, seen


def test_meta_sends_an_image_by_link_with_its_caption(meta_chip):
    media = OutboundMedia(kind="image", url="https://cdn.example.com/a.jpg", caption="Catálogo")
    result, (request,) = send_media(
        meta_chip, answer(200, {"messages": [{"id": "wamid.9"}]}), media
    )
    assert result.ok
    body = json.loads(request.content)
    assert body["type"] == "image"
    assert body["image"] == {"link": "https://cdn.example.com/a.jpg", "caption": "Catálogo"}


def test_meta_sends_a_named_document_and_a_captionless_audio(meta_chip):
    ok = answer(200, {"messages": [{"id": "wamid.9"}]})
    document = OutboundMedia(
        kind="document", url="https://cdn.example.com/p.pdf", caption="Proposta", filename="p.pdf"
    )
    _, (request,) = send_media(meta_chip, ok, document)
    assert json.loads(request.content)["document"] == {
        "link": "https://cdn.example.com/p.pdf",
        "caption": "Proposta",
        "filename": "p.pdf",
    }
    audio = OutboundMedia(kind="audio", url="https://cdn.example.com/v.ogg", caption="ignored")
    _, (request,) = send_media(meta_chip, ok, audio)
    assert json.loads(request.content)["audio"] == {"link": "https://cdn.example.com/v.ogg"}


def test_evolution_sends_media_and_voice_notes(evolution_chip):
    ok = answer(201, {"key": {"id": "BAE5"}})
    image = OutboundMedia(
        kind="image", url="https://cdn.example.com/a.jpg", caption="Oi", mime_type="image/jpeg"
    )
    result, (request,) = send_media(evolution_chip, ok, image)
    assert result.ok
    assert request.url.path == "/message/sendMedia/vendas-01"
    assert json.loads(request.content) == {
        "number": "5511999990000",
        "mediatype": "image",
        "media": "https://cdn.example.com/a.jpg",
        "caption": "Oi",
        "mimetype": "image/jpeg",
    }
    audio = OutboundMedia(kind="audio", url="https://cdn.example.com/v.ogg")
    _, (request,) = send_media(evolution_chip, ok, audio)
    assert request.url.path == "/message/sendWhatsAppAudio/vendas-01"
    assert json.loads(request.content) == {
        "number": "5511999990000",
        "audio": "https://cdn.example.com/v.ogg",
    }


def test_zapi_sends_images_and_documents_to_their_endpoints(zapi_chip):
    ok = answer(200, {"zaapId": "Z1", "messageId": "M1", "id": "M1"})
    image = OutboundMedia(kind="image", url="https://cdn.example.com/a.jpg", caption="Oi")
    _, (request,) = send_media(zapi_chip, ok, image)
    assert request.url.path.endswith("/send-image")
    assert json.loads(request.content) == {
        "phone": "5511999990000",
        "image": "https://cdn.example.com/a.jpg",
        "caption": "Oi",
    }
    document = OutboundMedia(kind="document", url="https://cdn.example.com/p.pdf")
    _, (request,) = send_media(zapi_chip, ok, document)
    assert request.url.path.endswith("/send-document/pdf")


def test_wapi_media_is_not_supported_and_fails_permanently_without_a_request(wapi_chip):
    media = OutboundMedia(kind="image", url="https://cdn.example.com/a.jpg")
    result, seen = send_media(wapi_chip, answer(200, {}), media)
    assert result.error_kind == ErrorKind.PERMANENT
    assert seen == []
