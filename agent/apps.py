from django.apps import AppConfig


class AgentConfig(AppConfig):
    name = "agent"
    verbose_name = "Agente"

    def ready(self) -> None:
        from agent.services import agent_enqueue
        from conversations.ingest import AGENT_HOOKS

        # The ingest announces each new inbound message the agent may answer;
        # answering happens in a worker task, never in the webhook's process.
        if agent_enqueue not in AGENT_HOOKS:
            AGENT_HOOKS.append(agent_enqueue)
