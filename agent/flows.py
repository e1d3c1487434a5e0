"""Scripted qualification flows: validators for Brazilian Portuguese answers, and the stepper.

Leads answer however they like ("meu nome é João Silva", "uns 50 convidados",
"mar", "dia 15"), so each validator extracts the value from a free answer and
says why it could not. `flow_turn` applies one turn (one or more messages of
the lead) to a conversation's flow state and returns what to send: pure, no
database writes, so the agent service decides when to save and reply.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from agent.models import FlowStep

StrOrPromise = str | Promise

# The flow finished; kept in `Conversation.flow_step` so it never restarts by itself.
FLOW_DONE = "__done__"

# What the lead reads after an answer a step cannot take (unless the step has
# its own error message); lazy, so it is in the language active when sent.
DEFAULT_ERRORS: dict[str, StrOrPromise] = {
    FlowStep.Validator.NAME: _(
        "I could not understand your name. Could you tell me just the name?"
    ),
    FlowStep.Validator.MENU: _(
        "I could not find that option. Could you answer with the option's number?"
    ),
    FlowStep.Validator.MONTH: _(
        "I did not understand the month. Could you write the month's name, for example: March?"
    ),
    FlowStep.Validator.DAY: _(
        "I did not understand the day. Could you send just the day's number, from 1 to 31?"
    ),
    FlowStep.Validator.INTEGER_RANGE: _(
        "I did not understand the number. Could you send just the number, please?"
    ),
    FlowStep.Validator.FREE_TEXT: _("Could you answer me with a text message?"),
    FlowStep.Validator.EMAIL: _(
        "That email does not look valid. Could you check it and send it again?"
    ),
    FlowStep.Validator.DATE: _(
        "I did not understand the date. Could you send it as day/month, for example 15/03?"
    ),
}


@dataclass(frozen=True)
class Validation:
    ok: bool
    value: Any = None
    error: str = ""


def _fail(validator: str, detail: str = "") -> Validation:
    return Validation(ok=False, error=detail or str(DEFAULT_ERRORS[validator]))


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize(text: str) -> str:
    """Lowercase, accents removed, punctuation as spaces, single spaces."""
    plain = _strip_accents(text.casefold())
    return " ".join(re.sub(r"[^\w@.+-]+", " ", plain).split())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", normalize(text))


# --- Numbers written in digits or in words ("cinquenta", "vinte e cinco", "1.200", "2 mil") ----

_UNITS = {
    "zero": 0,
    "um": 1,
    "uma": 1,
    "primeiro": 1,
    "dois": 2,
    "duas": 2,
    "tres": 3,
    "quatro": 4,
    "cinco": 5,
    "seis": 6,
    "sete": 7,
    "oito": 8,
    "nove": 9,
    "dez": 10,
    "onze": 11,
    "doze": 12,
    "treze": 13,
    "quatorze": 14,
    "catorze": 14,
    "quinze": 15,
    "dezesseis": 16,
    "dezessete": 17,
    "dezoito": 18,
    "dezenove": 19,
    "vinte": 20,
    "trinta": 30,
    "quarenta": 40,
    "cinquenta": 50,
    "sessenta": 60,
    "setenta": 70,
    "oitenta": 80,
    "noventa": 90,
    "cem": 100,
    "cento": 100,
    "duzentos": 200,
    "duzentas": 200,
    "trezentos": 300,
    "trezentas": 300,
    "quatrocentos": 400,
    "quatrocentas": 400,
    "quinhentos": 500,
    "quinhentas": 500,
    "seiscentos": 600,
    "seiscentas": 600,
    "setecentos": 700,
    "setecentas": 700,
    "oitocentos": 800,
    "oitocentas": 800,
    "novecentos": 900,
    "novecentas": 900,
}


def _numbers_in_words(words: list[str]) -> list[int]:
    """Numbers spelled out: 'vinte e cinco' -> 25, 'duzentos e cinquenta' -> 250, 'mil' -> 1000.

    "um"/"uma" followed by a word that is not a number is the article ("uma
    festa"), not the number one.
    """
    found: list[int] = []
    current: int | None = None
    total = 0
    padded = [*words, ""]
    for index, word in enumerate(padded[:-1]):
        following = padded[index + 1]
        if word in {"um", "uma"} and current is None and following not in {*_UNITS, "mil", ""}:
            continue
        if word in _UNITS:
            current = (current or 0) + _UNITS[word]
        elif word == "mil":
            total += (current or 1) * 1000
            current = 0
        elif word == "e" and current is not None and following in _UNITS:
            continue
        elif current is not None or total:
            found.append(total + (current or 0))
            current, total = None, 0
    if current is not None or total:
        found.append(total + (current or 0))
    return found


def extract_integers(text: str) -> list[int]:
    """Every whole number in an answer ('1.200' -> 1200, '2 mil' -> 2000, 'cinquenta' -> 50)."""
    plain = normalize(text)
    numbers: list[int] = []
    for match in re.finditer(r"(\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?(\s*mil\b)?", plain):
        value = int(match.group(1).replace(".", ""))
        if match.group(2):
            value *= 1000
        numbers.append(value)
    return numbers or _numbers_in_words(_words(text))


# --- Validators -------------------------------------------------------------------------------

_NAME_PREFIXES = re.compile(
    r"^(?:(?:oi|ola|bom dia|boa tarde|boa noite)[\s,!.]+)?"
    r"(?:(?:o\s+)?meu\s+nome\s+(?:e|eh)\s+|me\s+chamo\s+|eu\s+sou\s+(?:o\s+|a\s+)?|"
    r"sou\s+(?:o\s+|a\s+)?|aqui\s+(?:e|eh)\s+(?:o\s+|a\s+)?|pode\s+me\s+chamar\s+de\s+|"
    r"(?:e|eh)\s+(?:o\s+|a\s+)?|nome\s*:\s*)",
    re.IGNORECASE,
)
_GREETINGS = {
    "oi",
    "ola",
    "bom dia",
    "boa tarde",
    "boa noite",
    "tudo bem",
    "tudo bom",
    "opa",
    "e ai",
    "sim",
    "nao",
    "ok",
    "obrigado",
    "obrigada",
}
_NAME_PARTICLES = {"da", "de", "do", "das", "dos", "e"}


def validate_name(answer: str, **_: Any) -> Validation:
    """'Daniella' -> 'Daniella'; 'meu nome é joão silva' -> 'João Silva'."""
    text = " ".join(answer.strip().split())
    # Match the prefix on an accent-free copy (same length), cut the original.
    plain = _strip_accents(text).lower()
    match = _NAME_PREFIXES.match(plain)
    if match:
        text = text[match.end() :]
    text = re.split(r"[,.!?;\n]", text, maxsplit=1)[0].strip()
    text = re.sub(r"\s+(?:aqui|tudo bem|prazer)$", "", text, flags=re.IGNORECASE).strip()
    words = text.split()
    if not words or len(words) > 6 or normalize(text) in _GREETINGS:
        return _fail(FlowStep.Validator.NAME)
    if not all(re.fullmatch(r"[^\W\d_]+(?:['-][^\W\d_]+)*\.?", word) for word in words):
        return _fail(FlowStep.Validator.NAME)
    if len(text) < 2:
        return _fail(FlowStep.Validator.NAME)
    if text == text.lower() or text == text.upper():
        text = " ".join(
            w.lower() if w.lower() in _NAME_PARTICLES and i else w.capitalize()
            for i, w in enumerate(words)
        )
    return Validation(ok=True, value=text)


def validate_menu(answer: str, *, options: Sequence[Any] = (), **_: Any) -> Validation:
    """'1' or 'opção 1' -> the first option; 'casamento' -> 'Casamento'."""
    labels = [str(option) for option in options]
    if not labels:
        return _fail(FlowStep.Validator.MENU, gettext("This step has no options configured."))
    plain = normalize(answer)
    number = re.fullmatch(r"(?:(?:opcao|opção|numero|n)\s*)?(\d{1,2})[.)o]?", plain)
    if number:
        index = int(number.group(1))
        if 1 <= index <= len(labels):
            return Validation(ok=True, value=labels[index - 1])
        return _fail(FlowStep.Validator.MENU)
    normalized = [normalize(label) for label in labels]
    for label, norm in zip(labels, normalized, strict=True):
        if plain == norm:
            return Validation(ok=True, value=label)
    # "é um casamento", "festa de aniversário": the one option named in the answer.
    named = [
        label
        for label, norm in zip(labels, normalized, strict=True)
        if norm and re.search(rf"\b{re.escape(norm)}\b", plain)
    ]
    if len(named) == 1:
        return Validation(ok=True, value=named[0])
    return _fail(FlowStep.Validator.MENU)


MONTH_NAMES_PT = [
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
]
# What answers are compared with: normalize() strips accents ("marco").
MONTHS = [_strip_accents(name) for name in MONTH_NAMES_PT]


def _month_in(words: list[str]) -> int | None:
    for word in words:
        for index, name in enumerate(MONTHS, start=1):
            if word == name or (len(word) >= 3 and name.startswith(word) and len(word) <= 4):
                return index
    return None


def validate_month(answer: str, **_: Any) -> Validation:
    """'março', 'marco', 'mar', 'em março', '3', '03' -> 3."""
    words = _words(answer)
    month = _month_in(words)
    if month is None:
        numbers = extract_integers(answer)
        if len(numbers) == 1 and 1 <= numbers[0] <= 12:
            month = numbers[0]
    if month is None:
        return _fail(FlowStep.Validator.MONTH)
    return Validation(ok=True, value=month)


def validate_day(answer: str, **_: Any) -> Validation:
    """'15', 'dia 15', 'no dia 15', 'quinze', 'dia primeiro' -> 15 / 1."""
    numbers = extract_integers(answer)
    if len(numbers) != 1 or not 1 <= numbers[0] <= 31:
        return _fail(FlowStep.Validator.DAY)
    return Validation(ok=True, value=numbers[0])


def validate_integer_range(answer: str, *, options: Sequence[Any] = (), **_: Any) -> Validation:
    """'uns 50 convidados' -> 50; 'entre 80 e 100' -> 100 (plan for the upper bound)."""
    numbers = extract_integers(answer)
    if not numbers:
        return _fail(FlowStep.Validator.INTEGER_RANGE)
    # A range answer ("80 a 100 pessoas") sizes the event by its upper end.
    value = max(numbers[:2])
    low, high = _bounds(options)
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            detail = gettext("Could you send a number between %(low)s and %(high)s?") % {
                "low": low,
                "high": high,
            }
        elif low is not None:
            detail = gettext("Could you send a number from %(low)s up?") % {"low": low}
        else:
            detail = gettext("Could you send a number up to %(high)s?") % {"high": high}
        return _fail(FlowStep.Validator.INTEGER_RANGE, detail)
    return Validation(ok=True, value=value)


def _bounds(options: Sequence[Any]) -> tuple[int | None, int | None]:
    values = [*options, None, None]
    low, high = values[0], values[1]
    return (int(low) if low is not None else None, int(high) if high is not None else None)


def validate_free_text(answer: str, **_: Any) -> Validation:
    text = answer.strip()
    if not text:
        return _fail(FlowStep.Validator.FREE_TEXT)
    return Validation(ok=True, value=text[:1000])


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def validate_email(answer: str, **_: Any) -> Validation:
    """'meu email é Joao.Silva@Exemplo.com.br' -> 'joao.silva@exemplo.com.br'."""
    found = _EMAIL.findall(answer.replace(" @ ", "@"))
    if len(found) != 1:
        return _fail(FlowStep.Validator.EMAIL)
    return Validation(ok=True, value=found[0].lower())


def validate_date(answer: str, *, today: date | None = None, **_: Any) -> Validation:
    """'15/03', '15/03/2027', '15-3-27', '15 de março', '15 de março de 2027' -> ISO date.

    Without a year, the next 15/03 from today (an event is in the future).
    """
    today = today or date.today()  # noqa: DTZ011 - callers pass the local date
    plain = " ".join(_strip_accents(answer).lower().split())
    day = month = year = None
    numeric = re.search(r"\b(\d{1,2})\s*[/.-]\s*(\d{1,2})(?:\s*[/.-]\s*(\d{2,4}))?\b", plain)
    if numeric:
        day, month = int(numeric.group(1)), int(numeric.group(2))
        year = int(numeric.group(3)) if numeric.group(3) else None
    else:
        spelled = re.search(r"\b(\d{1,2})\s+(?:de\s+)?([a-z]+)(?:\s+(?:de\s+)?(\d{4}))?\b", plain)
        if spelled:
            month = _month_in([spelled.group(2)])
            day = int(spelled.group(1))
            year = int(spelled.group(3)) if spelled.group(3) else None
    if day is None or month is None:
        return _fail(FlowStep.Validator.DATE)
    if year is not None and year < 100:
        year += 2000
    try:
        if year is None:
            candidate = date(today.year, month, day)
            if candidate < today:
                candidate = date(today.year + 1, month, day)
        else:
            candidate = date(year, month, day)
    except ValueError:
        return _fail(
            FlowStep.Validator.DATE,
            gettext("That date does not exist. Could you check the day and month?"),
        )
    return Validation(ok=True, value=candidate.isoformat())


VALIDATORS: dict[str, Callable[..., Validation]] = {
    FlowStep.Validator.NAME: validate_name,
    FlowStep.Validator.MENU: validate_menu,
    FlowStep.Validator.MONTH: validate_month,
    FlowStep.Validator.DAY: validate_day,
    FlowStep.Validator.INTEGER_RANGE: validate_integer_range,
    FlowStep.Validator.FREE_TEXT: validate_free_text,
    FlowStep.Validator.EMAIL: validate_email,
    FlowStep.Validator.DATE: validate_date,
}


def validate_answer(
    *, validator: str, answer: str, options: Sequence[Any] = (), today: date | None = None
) -> Validation:
    """Run one named validator on a lead's answer."""
    return VALIDATORS[validator](answer, options=options, today=today)


# --- The stepper --------------------------------------------------------------------------------


@dataclass
class FlowOutcome:
    """What one turn did to the flow, and what to send back."""

    step: str  # the new Conversation.flow_step
    data: dict[str, Any]
    reply: str = ""
    finished: bool = False  # the last answer was just taken: the profile's flow end applies
    advanced: list[str] = field(default_factory=list)  # keys answered this turn
    started: bool = False


def _next_step(steps: list[FlowStep], current: FlowStep) -> FlowStep | None:
    if current.next_step:
        return next((s for s in steps if s.key == current.next_step), None)
    index = steps.index(current)
    return steps[index + 1] if index + 1 < len(steps) else None


def flow_turn(
    *,
    steps: Sequence[FlowStep],
    current_step: str,
    data: dict[str, Any],
    answers: Sequence[str],
    today: date | None = None,
) -> FlowOutcome:
    """Apply the lead's messages of one turn to the flow.

    Not started: the first question goes out (the opening "oi" is not an
    answer). Otherwise each message is tried, in order, against the step then
    waiting, so a burst like "março" / "dia 15" answers two steps. When
    something was answered, the next question goes out; when nothing was, the
    step's error and its question again.
    """
    ordered = list(steps)
    data = dict(data)
    if not ordered:
        return FlowOutcome(step=FLOW_DONE, data=data, finished=True)
    by_key = {step.key: step for step in ordered}
    step = by_key.get(current_step)
    if step is None:
        first = ordered[0]
        return FlowOutcome(step=first.key, data=data, reply=first.question, started=True)

    advanced: list[str] = []
    last_error = ""
    for answer in answers:
        if step is None:
            break
        result = validate_answer(
            validator=step.validator, answer=answer, options=step.options or [], today=today
        )
        if not result.ok:
            last_error = step.error_message or result.error
            continue
        data[step.key] = result.value
        advanced.append(step.key)
        step = _next_step(ordered, step)
    if step is None:
        return FlowOutcome(step=FLOW_DONE, data=data, finished=True, advanced=advanced)
    if advanced:
        return FlowOutcome(step=step.key, data=data, reply=step.question, advanced=advanced)
    error = last_error or step.error_message or str(DEFAULT_ERRORS[step.validator])
    return FlowOutcome(step=step.key, data=data, reply=f"{error}\n\n{step.question}")
