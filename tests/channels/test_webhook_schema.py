"""The OpenAPI schema at /api/schema/ (schemathesis: tests/security/test_live_server.py)."""

from __future__ import annotations


def test_schema_documents_the_webhook_endpoint(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    operation = schema["paths"]["/webhooks/{provider}/{chip_key}/"]["post"]
    assert set(operation["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "411",
        "413",
        "422",
        "429",
        "503",
    }
    assert operation["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"
    get = schema["paths"]["/webhooks/{provider}/{chip_key}/"]["get"]
    assert "text/plain" in get["responses"]["200"]["content"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert {"X-Hub-Signature-256", "apikey", "z-api-token", "X-Sandbox-Token"} <= headers
