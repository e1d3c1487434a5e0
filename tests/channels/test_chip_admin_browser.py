"""The chip list as an operator sees it at 1440 px, in a real headless Chromium."""

import pytest

from channels.models import Chip
from tests.factories.channels import ChipFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_operator_blocks_a_chip_and_the_list_shows_it_blocked_within_1440_px(
    page, admin_login, tmp_path
):
    ChipFactory(name="Vendas São Paulo 01", provider="zapi", instance_id="A" * 32)
    ChipFactory(
        name="Vendas Rio 02",
        provider="evolution",
        circuit_state=Chip.CircuitState.OPEN,
        consecutive_failures=5,
        last_error="HTTP 500 do provedor: erro interno ao enviar a mensagem",
    )
    ChipFactory(name="Follow-up 03", provider="meta", can_prospect=False)
    base = admin_login(page)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{base}/admin/channels/chip/")
    page.locator("#result_list tr", has_text="Vendas São Paulo 01").locator(
        "input.action-select"
    ).check()
    page.select_option("select[name=action]", "block_chips")
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist")
    page.screenshot(path=str(tmp_path / "chips-1440.png"))

    # Who is in trouble is on screen, not behind the table's sideways scroll.
    visible_right = page.evaluate(
        "document.querySelector('.results').getBoundingClientRect().right"
    )
    for column in ("name", "status_pill", "circuit_pill", "sends_today", "last_error_short"):
        header = page.locator(f"#result_list th.column-{column}").bounding_box()
        assert header["x"] + header["width"] <= visible_right, column
    blocked = page.locator("#result_list tr", has_text="Vendas São Paulo 01")
    pill = blocked.locator(".pill-blocked")
    assert pill.inner_text() == "bloqueado"
    assert pill.is_visible()
    assert pill.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(198, 40, 40)"
    assert Chip.objects.get(name="Vendas São Paulo 01").status == Chip.Status.CONNECTED
    assert (
        "5 falhas seguidas"
        in page.locator("#result_list tr", has_text="Vendas Rio 02").inner_text()
    )
    follow_up = page.locator("#result_list tr", has_text="Follow-up 03")
    assert "sem prospecção" in follow_up.inner_text()
    assert not follow_up.locator(".pill-blocked").count()
