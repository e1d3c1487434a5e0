import factory

from agent.models import AgentProfile, AgentRun, Flow, FlowStep
from tests.factories.conversations import ConversationFactory


class FlowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Flow

    name = factory.Sequence(lambda n: f"Qualificação {n}")


class FlowStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FlowStep

    flow = factory.SubFactory(FlowFactory)
    order = factory.Sequence(lambda n: n)
    key = factory.Sequence(lambda n: f"step-{n}")
    question = "Qual é o seu nome?"
    validator = FlowStep.Validator.NAME
    error_message = "Não entendi, pode repetir?"


class AgentProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentProfile

    name = factory.Sequence(lambda n: f"Perfil {n}")
    persona = "Júlia, SDR"
    system_prompt = "Você é a Júlia, SDR. Seja breve e cordial."


class AgentRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentRun

    conversation = factory.SubFactory(ConversationFactory)
    profile = factory.SubFactory(AgentProfileFactory)
    kind = AgentRun.Kind.LLM
    outcome = AgentRun.Outcome.REPLIED
    latency_ms = 850
