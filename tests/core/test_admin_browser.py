"""The console as an operator uses it, in a real headless Chromium."""

import pytest

from tests.factories.conversations import ConversationFactory, InboundMessageFactory, LeadFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_operator_finds_a_lead_by_phone_and_reads_the_conversation(page, admin_login, tmp_path):
    lead = LeadFactory(phone="+5511987654321", name="Daniella Harumi")
    conversation = ConversationFactory(lead=lead)
    InboundMessageFactory(conversation=conversation, body="queria saber o preço")
    ConversationFactory(lead=LeadFactory(name="Outra Pessoa"))

    base = admin_login(page)
    page.goto(f"{base}/admin/conversations/conversation/")
    page.fill("#searchbar", "(11) 98765-4321")
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()

    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "Daniella Harumi" in rows.first.inner_text()

    rows.first.locator("th a").click()
    page.wait_for_selector("#messages-group, [id$='messages-group'], .inline-group")
    body = page.content()
    assert "queria saber o preço" in body
    assert "Daniella Harumi" in body
    page.screenshot(path=str(tmp_path / "conversation.png"), full_page=True)
