"""A manager runs a campaign in a real Chromium, with a real worker and the fake provider.

Screenshots go to $SCREENSHOT_DIR/campaign (default: the system temp dir);
look at them after a change to these pages.
"""

import os
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django_q.models import Schedule
from django_q.tasks import async_task

from campaigns.models import Campaign
from conversations.models import Message
from tests.factories.campaigns import CampaignFactory
from tests.factories.channels import ChipFactory
from tests.support.fake_provider import Reply, running_fake_provider
from tests.support.processes import running_qcluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

SHOTS = Path(os.environ.get("SCREENSHOT_DIR", tempfile.gettempdir())) / "campaign"

AUDIENCE = "\n".join(
    ["nome;telefone;empresa"]
    + [f"Lead {i};(11) 9{8000 + i:04d}-{1000 + i:04d};Empresa {i}" for i in range(24)]
    + ["Lead 0 de novo;11980001000;", "Sem número;(11) 1234;"]
)


def progress_value(page) -> float:
    return float(page.eval_on_selector("#campaign-progress-bar", "el => el.value"))


def test_manager_imports_previews_starts_watches_pauses_and_resumes(
    page, live_server, django_user_model, tmp_path
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    Schedule.objects.filter(func__startswith="conversations.").delete()
    Schedule.objects.filter(func__startswith="campaigns.").delete()
    manager = django_user_model.objects.create_user(
        username="gerente", password="s3nha-do-gerente", is_staff=True
    )
    manager.groups.add(Group.objects.get(name="manager"))
    csv_file = tmp_path / "publico.csv"
    csv_file.write_text(AUDIENCE, encoding="utf-8")

    with running_fake_provider() as provider, running_qcluster(workers=1):
        # Each answer takes a moment, so the bar visibly moves between polls.
        provider.always(Reply(200, hang=0.5))
        chip = ChipFactory(
            provider="evolution",
            api_base_url=provider.url,
            instance_id="vendas01",
            api_token="evo-key",
            min_interval_seconds=0,
            jitter_seconds=0,
            daily_cap=1000,
        )
        campaign = CampaignFactory(
            name="Piloto Discovery",
            chips=[chip],
            message_template="Oi {{nome}}, tudo bem?\n---\nOlá {{nome}}, da {{empresa}}!",
        )

        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "gerente")
        page.fill("#id_password", "s3nha-do-gerente")
        page.click("input[type=submit]")
        page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")

        # Import: the invalid row is reported by line and nothing goes in...
        page.click("a.campaign-import-link")
        page.set_input_files("#id_file", str(csv_file))
        page.click("#import-form input[type=submit]")
        errors = page.locator("#import-errors tbody tr")
        assert errors.count() == 1
        assert errors.first.inner_text().startswith("27")
        page.screenshot(path=str(SHOTS / "1-import-errors.png"), full_page=True)
        assert not campaign.recipients.exists()
        # ...then the manager chooses to import the valid rows.
        page.set_input_files("#id_file", str(csv_file))
        page.check("#id_skip_invalid")
        page.click("#import-form input[type=submit]")
        assert "24 lead(s) adicionado(s)" in page.inner_text("#import-report")
        page.screenshot(path=str(SHOTS / "2-import-done.png"), full_page=True)

        page.click("#import-report a")  # "Pré-visualizar mensagens"
        preview = page.locator("#campaign-preview tbody tr")
        assert preview.count() == 10
        assert "Lead 0" in preview.first.inner_text()
        page.screenshot(path=str(SHOTS / "3-preview.png"), full_page=True)

        page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
        page.click("button.campaign-start")
        page.wait_for_selector("text=24 mensagem(ns) na fila")
        async_task("conversations.tasks.outbox_sweep", 25)
        # The page polls the progress endpoint: the bar moves without a reload.
        page.wait_for_function(
            "() => (document.getElementById('campaign-progress-bar')?.value ?? 0) >= 20",
            timeout=60_000,
        )
        moving = progress_value(page)
        assert 0 < moving < 100
        page.screenshot(path=str(SHOTS / "4-running.png"), full_page=True)

        page.click("button.campaign-pause")
        page.wait_for_selector("text=Pausada por gerente")
        sent_at_pause = Message.objects.filter(status="sent").count()
        assert sent_at_pause < 24
        page.wait_for_timeout(4000)
        # At most the one send already handed to the provider finished after the pause.
        assert Message.objects.filter(status="sent").count() <= sent_at_pause + 1
        page.screenshot(path=str(SHOTS / "5-paused.png"), full_page=True)

        # The resume is a form POST: wait for the page it lands on, or the poll
        # below would read the old document while it is being replaced.
        with page.expect_navigation():
            page.click("button.campaign-resume")
        async_task("conversations.tasks.outbox_sweep", 25)
        page.wait_for_function(
            "() => (document.getElementById('campaign-progress-bar')?.value ?? 0) >= 100",
            timeout=90_000,
        )
        page.wait_for_function(
            "() => document.querySelector('[data-field=status_label]')?.textContent"
            " === 'Concluída'",
            timeout=30_000,
        )
        # The controls follow the status without a reload: nothing left to pause.
        page.wait_for_selector("button.campaign-pause", state="hidden", timeout=10_000)
        assert page.locator("button.campaign-cancel").is_hidden()
        page.screenshot(path=str(SHOTS / "6-done.png"), full_page=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert Message.objects.filter(status="sent").count() == 24
    assert len({r.body["number"] for r in provider.seen()}) == 24
