"""Validators on answers Brazilian leads really write."""

from datetime import date

import pytest

from agent.flows import FLOW_DONE, flow_turn, validate_answer
from agent.models import FlowStep

TODAY = date(2026, 11, 22)
EVENTS = ["Casamento", "Aniversário", "Corporativo"]


def ok(validator, answer, options=()):
    result = validate_answer(validator=validator, answer=answer, options=options, today=TODAY)
    assert result.ok, f"{answer!r} should be a valid {validator}: {result.error}"
    return result.value


def refused(validator, answer, options=()):
    result = validate_answer(validator=validator, answer=answer, options=options, today=TODAY)
    assert not result.ok, f"{answer!r} should not be a valid {validator}: {result.value!r}"
    assert result.error  # always something to tell the lead, in Portuguese
    return result.error


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        ("Daniella", "Daniella"),
        ("Daniella Harumi", "Daniella Harumi"),
        ("meu nome é João Silva", "João Silva"),
        ("Meu nome é João Silva.", "João Silva"),
        ("me chamo Ana Paula", "Ana Paula"),
        ("Oi, me chamo Ana Paula!", "Ana Paula"),
        ("sou a Maria", "Maria"),
        ("é o Pedro aqui", "Pedro"),
        ("joão da silva", "João da Silva"),
        ("D'Ávila", "D'Ávila"),
    ],
)
def test_name(answer, name):
    assert ok(FlowStep.Validator.NAME, answer) == name


@pytest.mark.parametrize(
    "answer", ["oi", "Boa tarde!", "1", "", "quanto custa o buffet para 100 pessoas no sábado?"]
)
def test_not_a_name(answer):
    refused(FlowStep.Validator.NAME, answer)


@pytest.mark.parametrize(
    ("answer", "option"),
    [
        ("1", "Casamento"),
        ("2", "Aniversário"),
        ("3.", "Corporativo"),
        ("opção 2", "Aniversário"),
        ("casamento", "Casamento"),
        ("CASAMENTO", "Casamento"),
        ("aniversario", "Aniversário"),
        ("é um casamento", "Casamento"),
        ("festa de aniversário da minha filha", "Aniversário"),
    ],
)
def test_menu_by_number_or_text(answer, option):
    assert ok(FlowStep.Validator.MENU, answer, EVENTS) == option


@pytest.mark.parametrize("answer", ["4", "0", "formatura", "casamento ou aniversário"])
def test_menu_refuses_what_is_not_an_option(answer):
    refused(FlowStep.Validator.MENU, answer, EVENTS)


@pytest.mark.parametrize(
    ("answer", "month"),
    [
        ("março", 3),
        ("marco", 3),
        ("mar", 3),
        ("Mar.", 3),
        ("3", 3),
        ("03", 3),
        ("em março", 3),
        ("Dezembro!", 12),
        ("setembro de 2027", 9),
    ],
)
def test_month(answer, month):
    assert ok(FlowStep.Validator.MONTH, answer) == month


@pytest.mark.parametrize("answer", ["13", "ainda não sei", "0"])
def test_not_a_month(answer):
    refused(FlowStep.Validator.MONTH, answer)


@pytest.mark.parametrize(
    ("answer", "day"),
    [("15", 15), ("dia 15", 15), ("no dia 15", 15), ("quinze", 15), ("dia primeiro", 1)],
)
def test_day(answer, day):
    assert ok(FlowStep.Validator.DAY, answer) == day


@pytest.mark.parametrize("answer", ["32", "0", "sábado", "15 ou 16"])
def test_not_a_day(answer):
    refused(FlowStep.Validator.DAY, answer)


@pytest.mark.parametrize(
    ("answer", "guests"),
    [
        ("50", 50),
        ("uns 50 convidados", 50),
        ("umas 120 pessoas", 120),
        ("cinquenta", 50),
        ("vinte e cinco", 25),
        ("uma festa pra umas duzentas e cinquenta pessoas", 250),
        ("entre 80 e 100", 100),
        ("1.200 pessoas", 1200),
        ("1", 1),  # the plan's Daniella answered "1" at `convidados`
    ],
)
def test_whole_number_in_range(answer, guests):
    assert ok(FlowStep.Validator.INTEGER_RANGE, answer, [1, 2000]) == guests


def test_number_out_of_range_says_the_range():
    assert refused(FlowStep.Validator.INTEGER_RANGE, "5000", [1, 2000]) == (
        "Pode mandar um número entre 1 e 2000?"
    )
    refused(FlowStep.Validator.INTEGER_RANGE, "não sei ainda", [1, 2000])


@pytest.mark.parametrize(
    ("answer", "email"),
    [
        ("joao@exemplo.com.br", "joao@exemplo.com.br"),
        ("meu email é Joao.Silva@Exemplo.com.br", "joao.silva@exemplo.com.br"),
    ],
)
def test_email(answer, email):
    assert ok(FlowStep.Validator.EMAIL, answer) == email


@pytest.mark.parametrize("answer", ["joao@", "joao arroba gmail", "a@b.c"])
def test_not_an_email(answer):
    refused(FlowStep.Validator.EMAIL, answer)


@pytest.mark.parametrize(
    ("answer", "iso"),
    [
        ("15/03", "2027-03-15"),  # without a year: the next 15/03
        ("15/12", "2026-12-15"),
        ("15/03/2027", "2027-03-15"),
        ("15-3-27", "2027-03-15"),
        ("15 de março", "2027-03-15"),
        ("dia 15 de março de 2027", "2027-03-15"),
    ],
)
def test_date(answer, iso):
    assert ok(FlowStep.Validator.DATE, answer) == iso


def test_impossible_date_is_refused_with_a_reason():
    assert "não existe" in refused(FlowStep.Validator.DATE, "31/02")
    refused(FlowStep.Validator.DATE, "semana que vem")


def test_free_text():
    assert ok(FlowStep.Validator.FREE_TEXT, "  Quero decoração rústica  ") == (
        "Quero decoração rústica"
    )
    refused(FlowStep.Validator.FREE_TEXT, "   ")


def _steps():
    return [
        FlowStep(key="nome", question="Qual é o seu nome?", validator="name"),
        FlowStep(key="tipo", question="Que tipo de evento?", validator="menu", options=EVENTS),
        FlowStep(key="mes", question="Em que mês?", validator="month"),
        FlowStep(key="dia", question="Qual dia?", validator="day"),
    ]


def test_stepper_starts_with_the_first_question_and_a_burst_can_answer_two_steps():
    start = flow_turn(steps=_steps(), current_step="", data={}, answers=["oi, quanto custa?"])
    assert (start.step, start.reply, start.started) == ("nome", "Qual é o seu nome?", True)

    turn = flow_turn(steps=_steps(), current_step="mes", data={}, answers=["março", "dia 15"])
    assert turn.data == {"mes": 3, "dia": 15}
    assert (turn.step, turn.finished) == (FLOW_DONE, True)


def test_stepper_reasks_with_the_error_and_skips_noise_after_a_valid_answer():
    wrong = flow_turn(steps=_steps(), current_step="tipo", data={}, answers=["formatura"])
    assert wrong.step == "tipo"
    assert wrong.reply == (
        "Não encontrei essa opção. Pode responder com o número da opção?\n\nQue tipo de evento?"
    )
    noisy = flow_turn(steps=_steps(), current_step="nome", data={}, answers=["Daniella", "oi"])
    assert (noisy.step, noisy.reply, noisy.data) == (
        "tipo",
        "Que tipo de evento?",
        {"nome": "Daniella"},
    )


def test_stepper_follows_next_step():
    steps = _steps()
    steps[0].next_step = "mes"
    turn = flow_turn(steps=steps, current_step="nome", data={}, answers=["Ana"])
    assert (turn.step, turn.reply) == ("mes", "Em que mês?")
