from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AgentConfig(AppConfig):
    name = "agent"
    verbose_name = _("Agent")

    def ready(self) -> None:
        from agent.llm import llm_client_warm
        from agent.reprocess import messages_reprocess_enqueue
        from agent.turns import agent_enqueue
        from conversations.ingest import AGENT_HOOKS
        from conversations.reprocessing import reprocessor_register
        from core.process_lifetime import task_cluster_process

        # The ingest announces each new inbound message the agent may answer;
        # answering happens in a worker task, never in the webhook's process.
        if agent_enqueue not in AGENT_HOOKS:
            AGENT_HOOKS.append(agent_enqueue)
        reprocessor_register(messages_reprocess_enqueue)
        if task_cluster_process():
            # Built before the cluster forks its workers, which inherit it.
            llm_client_warm()
