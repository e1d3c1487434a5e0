"""A new agent profile's texts come from the catalog, in the project's language."""

import pytest
from django.utils import translation

from agent.models import AgentProfile
from agent.selectors import default_profile


@pytest.mark.django_db
def test_new_profile_starts_with_the_portuguese_texts_by_default():
    profile = AgentProfile.objects.create(name="Júlia")
    assert profile.fallback_reply.startswith("Desculpe, tive um problema para responder agora.")
    assert profile.opt_out_confirmation.startswith("Tudo bem! Você não vai mais receber")
    assert profile.follow_up_texts.startswith("Oi! Ainda está por aí?")
    assert "falar com alguém" in profile.handoff_keywords
    assert profile.opt_out_keywords == ["sair", "parar", "stop", "descadastrar"]


@pytest.mark.django_db
def test_defaults_follow_the_project_language_not_the_active_one(settings):
    # An English-speaking admin session must not seed a Portuguese project's bot in English.
    with translation.override("en"):
        profile = AgentProfile.objects.create(name="pt project")
    assert profile.handoff_reply.startswith("Certo! Vou chamar um dos nossos especialistas")

    settings.LANGUAGE_CODE = "en-us"
    profile = AgentProfile.objects.create(name="en project")
    assert profile.handoff_reply.startswith("Sure! I will call one of our specialists")
    assert profile.opt_out_keywords == ["quit", "stop", "unsubscribe"]
    assert "Always answer in English" in default_profile().system_prompt


@pytest.mark.django_db
def test_edited_texts_are_the_profiles_own(settings):
    profile = AgentProfile.objects.create(name="custom", fallback_reply="Volto já!")
    settings.LANGUAGE_CODE = "en-us"
    profile.refresh_from_db()
    assert profile.fallback_reply == "Volto já!"


def test_system_prompt_setting_wins_over_the_translated_default(settings):
    settings.AGENT_DEFAULT_SYSTEM_PROMPT = "Fale como um pirata."
    assert default_profile().system_prompt == "Fale como um pirata."
    settings.AGENT_DEFAULT_SYSTEM_PROMPT = ""
    assert "Responda sempre em português do Brasil" in default_profile().system_prompt
