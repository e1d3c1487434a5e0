"""deploy/: the Prometheus rules are valid and fire as intended; every series they
and the Grafana dashboard read is one /metrics exports."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

DEPLOY = Path(settings.BASE_DIR) / "deploy"
HERE = Path(__file__).parent
# PromQL functions and keywords that look like series names in the expressions.
NOT_SERIES = {
    "sum", "by", "and", "or", "on", "increase", "rate", "hour", "day_of_week", "vector",
    "histogram_quantile", "le", "outcome", "status", "circuit", "reason", "integration",
}  # fmt: skip


def promtool(*args: str) -> subprocess.CompletedProcess:
    # CI installs Debian's prometheus package (.ci/run); a machine without it fails here.
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install prometheus"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_rules_fire_on_the_incident_and_stay_quiet_when_healthy():
    # Backlog for 40 min, heartbeat stale, a restricted chip; then a healthy platform.
    result = promtool("test", "rules", str(HERE / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def _series(expr: str) -> set[str]:
    names = set(re.findall(r"\b([a-z_]+)\b(?=\s*[{\[)\s]|\s*$|\s*[<>=/])", expr))
    return {name.removesuffix("_bucket") for name in names if name not in NOT_SERIES}


@pytest.mark.django_db
def test_every_series_the_rules_and_dashboard_read_is_exported(client):
    exported = set(re.findall(r"^# TYPE (\w+) ", client.get("/metrics").content.decode(), re.M))
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    exprs = re.findall(r"expr: \|?\n?((?:\s{10,}.*\n)+|.*\n)", rules)
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]

    read = set().union(*(_series(expr) for expr in exprs))

    assert {"outbox_pending_messages", "worker_heartbeat_age_seconds", "chips"} <= read
    assert read <= exported, f"not at /metrics: {sorted(read - exported)}"
