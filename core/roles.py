"""The staff roles and what each may do in the admin.

Applied by data migrations (`sync_roles`), so a new database has the groups
before anyone logs in. Later migrations that add permissions (admin actions)
add them here and call `sync_roles` again.
"""

from typing import Any

from django.utils.translation import gettext_lazy as _

ALL = ("view", "add", "change", "delete")
VIEW = ("view",)
EDIT = ("view", "change")

ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    # Ops keep the machine running: chips, webhooks, outbox, reprocessing, workers.
    "ops": {
        "channels.chip": (
            "view",
            "add",
            "change",
            "block",
            "reset_circuit",
            "reveal_credentials",
            "rotate_webhook_key",
        ),
        "channels.webhookevent": EDIT,
        "conversations.lead": ("view", "change", "anonymize"),
        "conversations.conversation": ("view", "change", "reprocess", "take_over"),
        "conversations.message": ("view", "change", "retry", "cancel", "reprocess"),
        "conversations.handoff": ("view", "add", "change"),
        "conversations.ownerchange": VIEW,
        # Writes Chatwoot refused go back to it once ops fixed the cause.
        "conversations.chatwootmirror": ("view", "retry"),
        # Ops stop a campaign that hurts the numbers; starting one is a manager's call.
        "campaigns.campaign": ("view", "pause", "cancel"),
        "campaigns.campaignrecipient": VIEW,
        "agent.agentprofile": ("view", "sandbox"),
        "agent.flow": VIEW,
        "agent.flowstep": VIEW,
        "agent.agentrun": VIEW,
        "core.workerheartbeat": VIEW,
        "core.auditentry": VIEW,
        "core.alert": ("view", "acknowledge", "dashboard"),
        # Schedules are declared in code (core/schedules.py); changing one
        # would let its holder run any function on the worker.
        "django_q.schedule": VIEW,
        "django_q.task": ("view", "resubmit"),
        "django_q.success": VIEW,
        "django_q.failure": ("view", "delete"),
        "django_q.ormq": VIEW,
    },
    # Managers run campaigns and shape the agents.
    "manager": {
        "campaigns.campaign": (*ALL, "start", "pause", "cancel"),
        "campaigns.campaignrecipient": ALL,
        "conversations.lead": ("view", "add", "change"),
        "conversations.conversation": VIEW,
        "conversations.message": VIEW,
        "conversations.handoff": VIEW,
        "conversations.ownerchange": VIEW,
        "channels.chip": VIEW,
        "agent.agentprofile": (*ALL, "sandbox"),
        "agent.flow": ALL,
        "agent.flowstep": ALL,
        "agent.agentrun": VIEW,
        "core.auditentry": VIEW,
        "core.alert": ("view", "dashboard"),
    },
    # SDRs take conversations over and hand them back.
    "sdr": {
        "conversations.lead": EDIT,
        # Owner changes and replies go through the take-over actions and the
        # SDR's screen (conversations/ownership.py), never the change form.
        "conversations.conversation": (*EDIT, "take_over"),
        "conversations.ownerchange": VIEW,
        # Outbound messages come only from services (the reply box), never
        # from the admin's add form.
        "conversations.message": VIEW,
        "conversations.handoff": ("view", "add", "change"),
        "agent.agentrun": VIEW,
        "campaigns.campaign": VIEW,
    },
}


# Permissions on models of other packages (django-q2), which we cannot give a
# Meta.permissions entry: sync_roles creates them. (app_label.model, codename, name)
EXTRA_PERMISSIONS: list[tuple[str, str, str]] = [
    ("django_q.task", "resubmit_task", _("Can resubmit django-q2 tasks")),
]


def role_permission_codenames(role: str) -> set[tuple[str, str]]:
    """(app_label, codename) pairs granted to `role`."""
    pairs = set()
    for model_label, actions in ROLES[role].items():
        app_label, model = model_label.split(".")
        pairs |= {(app_label, f"{action}_{model}") for action in actions}
    return pairs


def sync_roles(apps: Any, schema_editor: Any = None) -> None:
    """Create the role groups and set exactly the permissions listed above."""
    from django.apps import apps as current_apps
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; a data
    # migration on a fresh database must create them first.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    _create_extra_permissions(apps)
    declared = _declared_permissions(apps)
    known = _declared_permissions(current_apps)
    for role in ROLES:
        typos = role_permission_codenames(role) - known
        if typos:
            raise RuntimeError(f"role {role!r} names unknown permissions: {sorted(typos)}")
        # An early migration runs against an older model state: permissions a
        # later migration declares (admin actions) are granted when that later
        # migration calls sync_roles again. Anything the current state declares
        # must exist, so a typo still fails loudly on the last migration.
        wanted = role_permission_codenames(role) & declared
        permissions = [
            perm
            for perm in Permission.objects.select_related("content_type")
            if (perm.content_type.app_label, perm.codename) in wanted
        ]
        missing = wanted - {(p.content_type.app_label, p.codename) for p in permissions}
        if missing:
            raise RuntimeError(f"role {role!r} names unknown permissions: {sorted(missing)}")
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(permissions)


def _create_extra_permissions(apps: Any) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for model_label, codename, name in EXTRA_PERMISSIONS:
        app_label, model = model_label.split(".")
        content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
        Permission.objects.update_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )


def _declared_permissions(apps: Any) -> set[tuple[str, str]]:
    """(app_label, codename) of every permission the models in `apps` declare."""
    declared = {
        (model_label.split(".")[0], codename) for model_label, codename, _ in EXTRA_PERMISSIONS
    }
    for model in apps.get_models():
        opts = model._meta
        declared |= {
            (opts.app_label, f"{action}_{opts.model_name}") for action in opts.default_permissions
        }
        declared |= {(opts.app_label, codename) for codename, _ in opts.permissions}
    return declared
