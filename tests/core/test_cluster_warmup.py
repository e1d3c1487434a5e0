"""A task cluster builds, before it forks its workers, what each worker's first task would build."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.processes import BASE_DIR

STARTUP = """
import json, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
import django
django.setup()
from agent import llm
from channels.http import tls_context
from channels.providers import base
print(json.dumps({
    "tls_context": tls_context.cache_info().currsize,
    "adapters": sorted(base._REGISTRY),
    "llm_clients": len(llm._clients),
    "chat_loaded": "openai.resources.chat.completions" in sys.modules,
}))
"""


def _started_as(*argv: str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", STARTUP, *argv],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_qcluster_builds_the_clients_and_loads_the_adapters_before_forking():
    loaded = _started_as("manage.py", "qcluster", OPENAI_API_KEY="sk-test")

    assert loaded == {
        "tls_context": 1,
        "adapters": ["evolution", "meta", "sandbox", "wapi", "zapi"],
        "llm_clients": 1,
        "chat_loaded": True,
    }


@pytest.mark.slow
def test_qcluster_without_a_model_builds_no_model_client():
    loaded = _started_as("manage.py", "qcluster", OPENAI_API_KEY="")

    assert loaded["llm_clients"] == 0
    assert loaded["adapters"]  # the sends still need them


@pytest.mark.slow
def test_other_processes_build_nothing_ahead():
    # The web server never sends or asks the model in a request.
    loaded = _started_as("manage.py", "runserver", OPENAI_API_KEY="sk-test")

    assert loaded == {"tls_context": 0, "adapters": [], "llm_clients": 0, "chat_loaded": False}
