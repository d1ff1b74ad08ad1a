"""The ``labspace`` CLI and Python client against a real hub: users and groups,
JSON for scripts, one-line errors that never show the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labspace.client import Client, ClientError

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def hub(hub_factory, hub_settings):
    """One hub on SQLite (the API calls are the same on PostgreSQL)."""
    return hub_factory(hub_settings).start()


LABSPACE = str(Path(sys.executable).parent / "labspace")


def run(hub, token, *args):
    env = {**os.environ, "LABSPACE_URL": hub.url, "LABSPACE_TOKEN": token}
    return subprocess.run([LABSPACE, *args], capture_output=True, text=True, env=env, timeout=60)


def test_users_and_groups_through_the_cli(hub, service_token):
    done = run(hub, service_token, "users", "add", "ann", "bob")
    assert done.returncode == 0, done.stderr
    assert "added ann" in done.stdout
    done = run(hub, service_token, "groups", "add", "proj-a", "ann", "bob")
    assert done.returncode == 0, done.stderr
    done = run(hub, service_token, "groups", "remove", "proj-a", "bob")
    assert done.returncode == 0, done.stderr
    done = run(hub, service_token, "groups", "list", "--json")
    groups = {g["name"]: g["users"] for g in json.loads(done.stdout)}
    assert groups == {"proj-a": ["ann"]}
    table = run(hub, service_token, "users", "list")
    assert "ann" in table.stdout and "proj-a" in table.stdout
    raw = run(hub, service_token, "api", "GET", "hub/api/users/ann")
    assert json.loads(raw.stdout)["groups"] == ["proj-a"]


def test_errors_are_one_line_without_the_token(hub):
    bad = "not-a-real-token-0123456789abcdef"
    done = run(hub, bad, "users", "list")
    assert done.returncode == 1
    assert done.stderr.startswith("error: 403")
    assert bad not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_python_client(hub, service_token):
    with Client(hub.url, service_token) as ls:
        ls.add_user("cleo")
        assert "cleo" in [u["name"] for u in ls.users()]
        with pytest.raises(ClientError) as e:
            ls.add_user("cleo")
        assert e.value.status == 409
        assert "already exists" in e.value.message
