"""Constraints and indexes name their fields by plain strings, never by translatable ones.

A translated name (`_("chip")`) resolves to whatever the active language
calls it: the day a translation differs, the model's own checks and
migrations fail to find the field.
"""

from django.apps import apps

OUR_APPS = {"core", "channels", "conversations", "agent", "campaigns"}


def test_constraint_and_index_fields_are_plain_strings():
    named = []
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS:
            continue
        for rule in [*model._meta.constraints, *model._meta.indexes]:
            for field in getattr(rule, "fields", ()):
                if type(field) is not str:
                    named.append(f"{model.__name__}.{rule.name}: {field!r}")
                else:
                    model._meta.get_field(field.lstrip("-"))  # names a real field
    assert named == []
