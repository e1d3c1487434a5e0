import pytest
from django_q.conf import Conf

from agent.models import AgentProfile, Flow, FlowStep
from core.demo import DEMO_STEPS
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import ChipFactory
from tests.support.fake_openai import running_fake_openai
from tests.support.fake_provider import running_fake_provider


@pytest.fixture(autouse=True)
def agent_settings(settings):
    """No real model unless a test starts the fake one; no burst wait unless a test asks."""
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    settings.AGENT_BURST_WINDOW_SECONDS = 0
    settings.OPENAI_RETRY_BASE_SECONDS = 0.05
    settings.OPENAI_TIMEOUT_SECONDS = 2.0
    return settings


@pytest.fixture
def fake_openai(settings):
    with running_fake_openai() as server:
        settings.OPENAI_API_KEY = "sk-test-agent"
        settings.OPENAI_BASE_URL = server.url
        yield server


@pytest.fixture
def run_tasks(monkeypatch):
    """django-q2's own sync mode: an enqueued task runs at once, through the real worker code."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def qualification_flow(db):
    """The demo's event qualification (nome, tipo, mes, convidados) plus the plan's `dia`."""
    flow = Flow.objects.create(name="Qualificação de eventos")
    steps = list(DEMO_STEPS)
    steps.insert(3, ("dia", "E qual dia?", FlowStep.Validator.DAY, []))
    for order, (key, question, validator, options) in enumerate(steps):
        FlowStep.objects.create(
            flow=flow,
            order=order,
            key=key,
            question=question,
            validator=validator,
            options=options,
            error_message="" if key != "tipo" else "Escolha uma das opções: 1, 2 ou 3 🙂",
        )
    return flow


@pytest.fixture
def flow_profile(qualification_flow):
    return AgentProfileFactory(
        flow=qualification_flow,
        on_flow_end=AgentProfile.FlowEnd.HANDOFF,
        closing_message="Perfeito! Vou passar para a nossa especialista. 😉",
    )


@pytest.fixture
def sandbox_chip(db):
    return ChipFactory(provider="sandbox", min_interval_seconds=0, jitter_seconds=0)


@pytest.fixture
def fake_zapi():
    with running_fake_provider() as provider:
        yield provider


@pytest.fixture
def zapi_chip(flow_profile, fake_zapi):
    return ChipFactory(
        provider="zapi",
        api_base_url=fake_zapi.url,
        instance_id="A20DA9C0183A2D35A260F53F5D2B9244",
        api_token="zapi-token",
        min_interval_seconds=0,
        jitter_seconds=0,
        agent_profile=flow_profile,
    )
