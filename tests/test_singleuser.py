"""Workspaces of the local backend start through ``labspace.singleuser``, whose
package import leaves out jsonschema's IRI grammar (``rfc3987_syntax``): about 2
CPU-seconds of every start (tests/security/test_apps_loopback.py finds a
workspace's server by that command line). Real interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

# jupyter-server imported four times, ~15 s: make test, not make check
pytestmark = pytest.mark.slow

# what a workspace imports before it serves: jupyter-server's app and its events
PROBE = (
    "import sys; import {module}; "
    "import jupyter_server.serverapp, jupyter_events.validators; "
    "print(sys.modules.get('rfc3987_syntax') is None)"
)


def imports_the_grammar(module: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "False"


def test_labspace_singleuser_skips_the_grammar_plain_jupyterhub_builds():
    assert imports_the_grammar("jupyterhub.singleuser")  # what it saves, as it is
    assert not imports_the_grammar("labspace.singleuser")


def test_labspace_singleuser_is_jupyterhub_singleuser():
    done = subprocess.run(
        [sys.executable, "-m", "labspace.singleuser", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    plain = subprocess.run(
        [sys.executable, "-m", "jupyterhub.singleuser", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == plain.returncode == 0, done.stderr
    assert done.stdout == plain.stdout
