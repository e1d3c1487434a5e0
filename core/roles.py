"""The staff roles and what each may do in the admin.

Applied by data migrations (`sync_roles`), so a new database has the groups
before anyone logs in. Later migrations that add permissions (admin actions)
add them here and call `sync_roles` again.
"""

from typing import Any

ALL = ("view", "add", "change", "delete")
VIEW = ("view",)
EDIT = ("view", "change")

ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    # Ops keep the machine running: chips, webhooks, outbox, reprocessing, workers.
    "ops": {
        "channels.chip": ("view", "add", "change", "block", "reset_circuit"),
        "channels.webhookevent": EDIT,
        "conversations.lead": EDIT,
        "conversations.conversation": ("view", "change", "reprocess"),
        "conversations.message": ("view", "change", "retry", "cancel", "reprocess"),
        "conversations.handoff": ("view", "add", "change"),
        "campaigns.campaign": EDIT,
        "campaigns.campaignrecipient": VIEW,
        "agent.agentprofile": ("view", "sandbox"),
        "agent.flow": VIEW,
        "agent.flowstep": VIEW,
        "agent.agentrun": VIEW,
        "core.workerheartbeat": VIEW,
        "django_q.schedule": EDIT,
        "django_q.task": VIEW,
        "django_q.success": VIEW,
        "django_q.failure": ("view", "delete"),
        "django_q.ormq": VIEW,
    },
    # Managers run campaigns and shape the agents.
    "manager": {
        "campaigns.campaign": ALL,
        "campaigns.campaignrecipient": ALL,
        "conversations.lead": ("view", "add", "change"),
        "conversations.conversation": VIEW,
        "conversations.message": VIEW,
        "conversations.handoff": VIEW,
        "channels.chip": VIEW,
        "agent.agentprofile": (*ALL, "sandbox"),
        "agent.flow": ALL,
        "agent.flowstep": ALL,
        "agent.agentrun": VIEW,
    },
    # SDRs take conversations over and hand them back.
    "sdr": {
        "conversations.lead": EDIT,
        "conversations.conversation": EDIT,
        "conversations.message": ("view", "add"),
        "conversations.handoff": ("view", "add", "change"),
        "agent.agentrun": VIEW,
    },
}


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


def _declared_permissions(apps: Any) -> set[tuple[str, str]]:
    """(app_label, codename) of every permission the models in `apps` declare."""
    declared = set()
    for model in apps.get_models():
        opts = model._meta
        declared |= {
            (opts.app_label, f"{action}_{opts.model_name}") for action in opts.default_permissions
        }
        declared |= {(opts.app_label, codename) for codename, _ in opts.permissions}
    return declared
