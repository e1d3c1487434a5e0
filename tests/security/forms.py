"""Build the POST an admin change form would send, from the page a user sees."""

from typing import Any

from django.forms import BaseForm, MultiWidget


def change_form_data(response: Any) -> dict[str, Any]:
    """The admin form's current values (inlines included) as the browser would submit them."""
    data = _form_values(response.context_data["adminform"].form)
    for inline in response.context_data.get("inline_admin_formsets", []):
        formset = inline.formset
        data |= _form_values(formset.management_form)
        for form in formset.forms:
            data |= _form_values(form)
    return data


def _form_values(form: BaseForm) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        key = form.add_prefix(name)
        value = form[name].value()
        if isinstance(field.widget, MultiWidget):
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{key}_{index}"] = "" if part is None else part
        elif value is None:
            data[key] = ""
        elif value is False:
            continue  # an unchecked checkbox is absent from the POST
        else:
            data[key] = value
    return data
