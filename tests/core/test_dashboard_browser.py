"""The dashboard as an ops person uses it, in a real headless Chromium at 1440 px."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone

from channels.models import Chip
from conversations.models import Message
from core.models import AuditEntry
from tests.factories import channels as channel_f
from tests.factories import conversations as conv_f
from tests.factories import core as core_f

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

SCREENSHOTS = Path(settings.BASE_DIR) / "test-results" / "screenshots" / "ops_dashboard"


@pytest.fixture
def wide_page():
    from tests.support.browser import chromium_page

    with chromium_page(width=1440, height=1000) as page:
        yield page


def _a_day_of_traffic() -> Message:
    """Sends over the last hours, a restricted chip, and one failed message to fix."""
    core_f.WorkerHeartbeatFactory(beat_at=timezone.now())
    chip = channel_f.ChipFactory(name="Chip SP 01", daily_cap=200)
    channel_f.ChipFactory(
        name="Chip RJ 02", status=Chip.Status.RESTRICTED, last_error="number restricted (403)"
    )
    now = timezone.now()
    conversation = conv_f.ConversationFactory(chip=chip)
    for hours_ago, count, outcome in [
        (1, 6, "sent"),
        (2, 9, "sent"),
        (5, 4, "sent"),
        (5, 2, "failed_provider"),
        (9, 7, "sent"),
    ]:
        at = now - timedelta(hours=hours_ago)
        for _ in range(count):
            message = conv_f.OutboundMessageFactory(
                conversation=conversation,
                status="sent" if outcome == "sent" else "failed",
                outcome=outcome,
                sent_at=at if outcome == "sent" else None,
                failed_at=None if outcome == "sent" else at,
                next_attempt_at=None,
            )
            Message.objects.filter(pk=message.pk).update(created_at=at)
    failed = conv_f.OutboundMessageFactory(
        conversation=conv_f.ConversationFactory(chip=chip, lead__name="Daniella Harumi"),
        body="Oi Daniella, tudo bem?",
        status="failed",
        outcome="failed_provider",
        failed_at=now - timedelta(minutes=20),
        last_error="provider timeout after 5 attempts",
        next_attempt_at=None,
    )
    return failed


def test_ops_lands_on_the_dashboard_and_fixes_a_failed_message(
    wide_page, live_server, django_user_model, settings
):
    settings.DASHBOARD_REFRESH_SECONDS = 2
    page = wide_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    failed = _a_day_of_traffic()
    ops = django_user_model.objects.create_user(
        "ana.ops", password="s3nha-forte-ops", is_staff=True
    )
    ops.groups.add(Group.objects.get(name="ops"))

    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "ana.ops")
    page.fill("#id_password", "s3nha-forte-ops")
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard")

    # The home page is the dashboard, with the chart drawn from the data.
    assert page.locator("h1").inner_text() == "Painel de operação"
    bars = page.locator("#panel-sends svg rect.bar")
    assert bars.count() >= 4
    box = bars.first.bounding_box()
    assert box is not None
    assert box["height"] > 0
    assert box["width"] > 0
    assert "Chip RJ 02" in page.locator("#panel-chips").inner_text()
    assert "Restrito" in page.locator("#panel-chips").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "01-dashboard.png"), full_page=True)

    # Partial refresh: the tiles update in place without a reload.
    conv_f.HandoffFactory()
    page.evaluate("window.__marker = 'same page'")
    page.wait_for_function(
        "document.querySelector('#tile-handoffs strong').textContent.trim() === '1'",
        timeout=10_000,
    )
    assert page.evaluate("window.__marker") == "same page"

    # Follow the failed-sends tile to the message and send it again.
    assert page.locator("#tile-failed strong").inner_text() == "3"
    page.click("#tile-failed")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 3
    row = page.locator("#result_list tbody tr", has_text="Daniella Harumi")
    page.screenshot(path=str(SCREENSHOTS / "02-failed-messages.png"), full_page=True)
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_now")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    notice = page.locator(".messagelist").inner_text()
    assert "1 mensagem(ns) de volta à fila; 0 ignorada(s)" in notice
    page.screenshot(path=str(SCREENSHOTS / "03-reprocessed.png"), full_page=True)

    failed.refresh_from_db()
    assert failed.status == Message.Status.QUEUED
    assert AuditEntry.objects.filter(actor=ops, object_count=1).exists()
