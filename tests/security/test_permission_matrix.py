"""Who may see, add, change, delete and run what in the admin (issue 8).

The tables below are the policy, one line per model, action or custom view.
A model, action or view the tables do not know fails the test: add its line
when you add it. Roles are core/roles.py's groups plus `staff`, a staff user
in no group; superusers see everything and are not listed.
"""

from collections.abc import Callable, Iterator

import pytest
from axes.models import AccessAttempt, AccessBase, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db.models import Model
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success
from django_q.tasks import async_task

from tests.core.test_admin_pages import BUILDERS
from tests.security.conftest import ROLES

# Pages per model, for (ops, manager, sdr, staff): v = changelist and change
# page open (read-only or not), a = add page, c = change page saves,
# d = delete page. "-" where the role may not.
PAGES: dict[str, tuple[str, str, str, str]] = {
    # model                            ops     manager  sdr     staff
    "agent.agentprofile":            ("v---", "vacd", "----", "----"),
    "agent.agentrun":                ("v---", "v---", "v---", "----"),
    "agent.flow":                    ("v---", "vacd", "----", "----"),
    "auth.group":                    ("----", "----", "----", "----"),
    "axes.accessattempt":            ("----", "----", "----", "----"),
    "axes.accessfailurelog":         ("----", "----", "----", "----"),
    "axes.accesslog":                ("----", "----", "----", "----"),
    "auth.user":                     ("----", "----", "----", "----"),
    "campaigns.campaign":            ("v---", "vacd", "v---", "----"),
    "campaigns.campaignrecipient":   ("v---", "vacd", "----", "----"),
    "channels.chip":                 ("vac-", "v---", "----", "----"),
    "channels.webhookevent":         ("v---", "----", "----", "----"),
    "conversations.chatwootmirror":  ("v---", "----", "----", "----"),
    "conversations.conversation":    ("v-c-", "v---", "v-c-", "----"),
    "conversations.handoff":         ("v-c-", "v---", "v-c-", "----"),
    "conversations.lead":            ("v-c-", "vac-", "v-c-", "----"),
    "conversations.message":         ("v-c-", "v---", "v---", "----"),
    "core.alert":                    ("v---", "v---", "----", "----"),
    "core.auditentry":               ("v---", "v---", "----", "----"),
    "core.workerheartbeat":          ("v---", "----", "----", "----"),
    "django_q.failure":              ("v--d", "----", "----", "----"),
    "django_q.ormq":                 ("v---", "----", "----", "----"),
    "django_q.schedule":             ("v---", "----", "----", "----"),
    "django_q.success":              ("v---", "----", "----", "----"),
}  # fmt: skip

# Admin actions: "model:action" -> the roles that may run it ("" = superusers only).
ACTIONS: dict[str, str] = {
    "agent.agentprofile:delete_selected": "manager",
    "agent.agentrun:delete_selected": "",
    "agent.flow:delete_selected": "manager",
    "auth.group:delete_selected": "",
    "auth.user:delete_selected": "",
    "axes.accessattempt:cleanup_expired_attempts": "",
    "axes.accessattempt:delete_selected": "",
    "axes.accessfailurelog:delete_selected": "",
    "axes.accesslog:delete_selected": "",
    "campaigns.campaign:cancel_campaigns": "ops manager",
    "campaigns.campaign:delete_selected": "manager",
    "campaigns.campaign:pause_campaigns": "ops manager",
    "campaigns.campaign:resume_campaigns": "manager",
    "campaigns.campaign:start_campaigns": "manager",
    "campaigns.campaignrecipient:delete_selected": "manager",
    "channels.chip:block_chips": "ops",
    "channels.chip:delete_selected": "",
    "channels.chip:reset_circuit": "ops",
    "channels.chip:rotate_webhook_key": "ops",
    "channels.chip:unblock_chips": "ops",
    "channels.webhookevent:delete_selected": "",
    "channels.webhookevent:reprocess_selected": "ops",
    "conversations.chatwootmirror:chatwoot_retry": "ops",
    "conversations.conversation:close": "ops sdr",
    "conversations.conversation:delete_selected": "",
    "conversations.conversation:give_back": "ops sdr",
    "conversations.conversation:pause_agent": "ops sdr",
    "conversations.conversation:reprocess_last_message": "ops",
    "conversations.conversation:take_over": "ops sdr",
    "conversations.handoff:delete_selected": "",
    "conversations.lead:add_to_campaign": "manager",
    "conversations.lead:anonymize_leads": "ops",
    "conversations.lead:delete_selected": "",
    "conversations.message:cancel_messages": "ops",
    "conversations.message:chatwoot_retry": "ops",
    "conversations.message:delete_selected": "",
    "conversations.message:reprocess_messages": "ops",
    "conversations.message:reprocess_messages_force": "ops",
    "conversations.message:retry_now": "ops",
    "core.alert:acknowledge": "ops",
    "core.alert:delete_selected": "",
    "core.alert:resolve": "ops",
    "core.auditentry:delete_selected": "",
    "core.workerheartbeat:delete_selected": "",
    "django_q.failure:delete_selected": "ops",
    "django_q.failure:resubmit_tasks": "ops",
    "django_q.ormq:delete_selected": "",
    "django_q.schedule:delete_selected": "",
    "django_q.success:delete_selected": "",
    "django_q.success:resubmit_tasks": "ops",
}

# Admin pages that are not a model's standard pages: URL name -> (method,
# roles, and the model whose object the URL names, if it names one).
VIEWS: dict[str, tuple[str, str, str | None]] = {
    "admin:auth_user_password_change": ("GET", "", "auth.user"),
    "admin:campaigns_campaign_cancel": ("POST", "ops manager", "campaigns.campaign"),
    "admin:campaigns_campaign_import": ("GET", "manager", "campaigns.campaign"),
    "admin:campaigns_campaign_pause": ("POST", "ops manager", "campaigns.campaign"),
    "admin:campaigns_campaign_preview": ("GET", "ops manager sdr", "campaigns.campaign"),
    "admin:campaigns_campaign_progress": ("GET", "ops manager sdr", "campaigns.campaign"),
    "admin:campaigns_campaign_progress_list": ("GET", "ops manager sdr", None),
    "admin:campaigns_campaign_resume": ("POST", "manager", "campaigns.campaign"),
    "admin:campaigns_campaign_start": ("POST", "manager", "campaigns.campaign"),
    "admin:channels_chip_credentials": ("POST", "ops", "channels.chip"),
    "admin:conversations_conversation_chat": (
        "GET",
        "ops manager sdr",
        "conversations.conversation",
    ),
    "admin:conversations_queue": ("GET", "ops manager sdr", None),
    "admin:dashboard_tiles": ("GET", "ops manager", None),
    "agent_sandbox:chat": ("GET", "ops manager", None),
    "agent_sandbox:messages": ("GET", "ops manager", None),
    "agent_sandbox:reset": ("POST", "ops manager", None),
    "agent_sandbox:send": ("POST", "ops manager", None),
}

# The admin site's own pages, open to every staff user.
SITE_VIEWS = {
    "admin:index",
    "admin:login",
    "admin:logout",
    "admin:password_change",
    "admin:password_change_done",
    "admin:autocomplete",
    "admin:jsi18n",
    "admin:app_list",
    "admin:view_on_site",
}
MODEL_PAGES = ("changelist", "add", "history", "delete", "change")

_names = iter(range(10**6))


def _task(model: type[Failure] | type[Success]) -> Model:
    now = timezone.now()
    return model.objects.create(
        id=f"{next(_names):032x}",
        name=f"task-{next(_names)}",
        func="core.tasks.heartbeat",
        started=now,
        stopped=now,
        success=model is Success,
    )


def _access(model: type[AccessBase], **fields: object) -> Model:
    return model.objects.create(
        username=f"user-{next(_names)}",
        ip_address="198.51.100.7",
        user_agent="Mozilla/5.0",
        http_accept="text/html",
        path_info="/admin/login/",
        **fields,
    )


def _queued() -> OrmQ:
    async_task("core.tasks.heartbeat")
    return OrmQ.objects.latest("id")


OBJECTS: dict[str, Callable[[], Model]] = {
    **BUILDERS,
    "auth.user": lambda: User.objects.create_user(username=f"user-{next(_names)}"),
    "auth.group": lambda: Group.objects.create(name=f"group-{next(_names)}"),
    "django_q.schedule": lambda: Schedule.objects.create(
        name=f"schedule-{next(_names)}", func="core.tasks.heartbeat", next_run=timezone.now()
    ),
    "django_q.success": lambda: _task(Success),
    "django_q.failure": lambda: _task(Failure),
    "django_q.ormq": _queued,
    "axes.accessattempt": lambda: _access(
        AccessAttempt, get_data="", post_data="", failures_since_start=3
    ),
    "axes.accessfailurelog": lambda: _access(AccessFailureLog),
    "axes.accesslog": lambda: _access(AccessLog),
}

REGISTERED = sorted(model._meta.label_lower for model in admin.site._registry)


def _url(label: str, page: str, *args: object) -> str:
    app_label, model_name = label.split(".")
    return reverse(f"admin:{app_label}_{model_name}_{page}", args=args)


def _observed(client, label: str, obj: Model) -> tuple[str, set[str]]:
    """The pages a user may open on `label` (letters as in PAGES) and the actions offered."""
    changelist = client.get(_url(label, "changelist"))
    change = client.get(_url(label, "change", obj.pk))
    assert change.status_code in (200, 403)
    assert (change.status_code == 200) == (changelist.status_code == 200), label
    can_change = change.status_code == 200 and change.context_data["has_change_permission"]
    letters = [
        "v" if changelist.status_code == 200 else "-",
        "a" if client.get(_url(label, "add")).status_code == 200 else "-",
        "c" if can_change else "-",
        "d" if client.get(_url(label, "delete", obj.pk)).status_code == 200 else "-",
    ]
    return "".join(letters), _actions(changelist)


def _actions(changelist) -> set[str]:
    """The actions the changelist offers (the ones the admin accepts in a POST)."""
    if changelist.status_code != 200 or changelist.context_data["action_form"] is None:
        return set()
    choices = changelist.context_data["action_form"].fields["action"].choices
    return {name for name, _ in choices} - {""}


def test_every_admin_model_has_a_line():
    assert set(PAGES) == set(REGISTERED)
    assert set(OBJECTS) >= set(REGISTERED), "add a builder to tests/core/test_admin_pages.py"


@pytest.mark.django_db
@pytest.mark.parametrize("label", REGISTERED)
def test_pages_and_actions_per_role(client, role_user, superuser, label):
    obj = OBJECTS[label]()
    client.force_login(superuser)
    every_action = _actions(client.get(_url(label, "changelist")))
    declared = {key.split(":")[1] for key in ACTIONS if key.split(":")[0] == label}
    assert every_action == declared, f"{label}: add or remove its lines in ACTIONS"

    mismatches = []
    for role, expected in zip(ROLES, PAGES[label], strict=True):
        client.force_login(role_user(role))
        pages, runs = _observed(client, label, obj)
        if pages != expected:
            mismatches.append(f"{role}: pages {pages!r}, table says {expected!r}")
        allowed = {name for name in declared if role in ACTIONS[f"{label}:{name}"].split()}
        if runs != allowed:
            mismatches.append(f"{role}: actions {sorted(runs)}, table says {sorted(allowed)}")
    assert not mismatches, f"{label}: " + "; ".join(mismatches)


def _admin_urls() -> Iterator[tuple[str, URLPattern]]:
    """Every named URL under /admin/, as (namespaced name, pattern)."""

    def walk(patterns, prefix: str, namespace: str):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, route, inner)
            elif pattern.name and route.startswith("admin/"):
                yield f"{namespace}{pattern.name}", pattern

    yield from walk(get_resolver().url_patterns, "", "")


def _is_model_page(name: str) -> bool:
    return any(
        name == f"admin:{label.replace('.', '_')}_{page}"
        for label in REGISTERED
        for page in MODEL_PAGES
    )


CUSTOM_VIEWS = sorted(
    name for name, _ in _admin_urls() if name not in SITE_VIEWS and not _is_model_page(name)
)


def test_every_custom_admin_view_has_a_line():
    assert set(CUSTOM_VIEWS) == set(VIEWS)


@pytest.mark.django_db
@pytest.mark.parametrize("name", CUSTOM_VIEWS)
def test_custom_views_per_role(client, role_user, name):
    method, roles, label = VIEWS[name]
    url = reverse(name, args=[OBJECTS[label]().pk] if label else [])
    mismatches = []
    for role in ROLES:
        client.force_login(role_user(role))
        response = getattr(client, method.lower())(url)
        allowed = response.status_code != 403
        if allowed != (role in roles.split()):
            mismatches.append(f"{role}: {method} answered {response.status_code}")
    assert not mismatches, f"{name}: " + "; ".join(mismatches)
