"""Everyday admin work through the installed ``labspace`` command against ONE
real hub (local backend, accounting and catalog on): a user starts a server
with a profile and watches its progress (the hub's progress stream as lines and
a bar on stderr, the URL on stdout), lists, waits for and stops it, named
servers too; a profile that does not exist is the hub's 400 and exit 1; a token
is created (printed once, on stdout), listed and revoked (then refused); a
standalone app is shared with another user and taken back; an admin assigns,
moves and reverses budget between projects (the balances move, a reverse puts
them back) and the CLI refuses a bad amount before sending it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness import demo_app, free_port, service_answers, service_client, wait_for

pytestmark = [pytest.mark.e2e]
LABSPACE = str(Path(sys.executable).parent / "labspace")
OUTPUT = os.environ.get("LABSPACE_CLI_OUTPUT")  # a file to keep the start's output in
PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True, "memory": {"limit": "1G"}},
    {"slug": "big", "display_name": "Big", "groups": ["gpu-users"]},
]


@pytest.fixture(scope="module")
def world(module_hub_factory):
    def edit(settings):
        settings["profiles"] = PROFILES
        settings["accounting"] = {
            "enabled": True,
            "port": free_port(),
            "projects": {"prefix": "proj-", "parents": {"proj-child": "proj-lab"}},
        }
        settings["catalog"] = {
            "enabled": True,
            "port": free_port(),
            "apps": [demo_app("viewer", kind="standalone")],
        }

    hub, api = module_hub_factory(edit)
    for name in ("ann", "bob"):
        api.create_user(name)
    api.add_to_group("proj-lab", "ann")
    api.add_to_group("proj-child", "ann")
    tokens = {name: api.token(name, "cli e2e") for name in ("ann", "bob", "admin")}
    api.started.update({"ann"})
    for service in ("accounting", "catalog"):
        wait_for(
            lambda s=service: service_answers(hub.url, tokens["admin"], s), 90, 1, what=service
        )
    try:
        yield {"hub": hub, "api": api, "tokens": tokens}
    finally:
        for server in ("lab2", "viewer"):
            api.request("DELETE", f"users/ann/servers/{server}")


def run(world, who: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    token = world["tokens"].get(who, who)  # a name, or a token itself
    env = {**os.environ, **(env or {}), "LABSPACE_URL": world["hub"].url, "LABSPACE_TOKEN": token}
    env.pop("COLUMNS", None)
    return subprocess.run([LABSPACE, *args], capture_output=True, text=True, env=env, timeout=180)


def test_start_with_progress_list_wait_and_stop(world):
    started = run(world, "ann", "servers", "start", "--profile", "small")
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url == f"{world['hub'].url}user/ann/", started.stdout  # the URL, alone, on stdout
    lines = started.stderr.splitlines()
    # the hub's progress events, one line each, then the bar at 100%
    assert any(line.strip().startswith("0% Server requested") for line in lines), lines
    assert any("Server ready at /user/ann/" in line for line in lines), lines
    assert "━" in lines[-1] and lines[-1].rstrip().endswith("100%"), lines[-1]
    if OUTPUT:
        Path(OUTPUT).write_text(
            f"$ labspace servers start --profile small\n{started.stderr}{url}\n"
        )

    again = run(world, "ann", "servers", "start")
    assert (again.returncode, again.stderr) == (1, "error: 400: ann is already running\n")

    table = run(world, "ann", "servers", "list")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["user", "name", "profile", "state", "started", "last_activity", "url"]
    assert row.split()[:3] == ["ann", "small", "ready"] and row.rstrip().endswith(url), row

    mine = json.loads(run(world, "ann", "servers", "list", "--json").stdout)
    assert [(r["user"], r["name"], r["profile"], r["ready"], r["url"]) for r in mine] == [
        ("ann", "", "small", True, url)
    ]
    # bob sees only his own (none); the admin sees ann's with --all
    assert json.loads(run(world, "bob", "servers", "list", "--json").stdout) == []
    everyone = json.loads(run(world, "admin", "servers", "list", "--all", "--json").stdout)
    assert ("ann", "") in {(r["user"], r["name"]) for r in everyone}
    refused = run(world, "bob", "servers", "list", "--all", "--json")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: 403")

    waited = run(world, "ann", "servers", "wait", "--timeout", "30")
    assert (waited.returncode, waited.stdout.strip()) == (0, url), waited.stderr

    stopped = run(world, "admin", "servers", "stop", "ann", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"user": "ann", "name": "", "state": "stopped"}
    assert json.loads(run(world, "ann", "servers", "list", "--json").stdout) == []
    world["api"].started.discard("ann")


def test_named_server_without_waiting_then_wait(world):
    asked = run(world, "ann", "servers", "start", "--name", "lab2", "--no-wait", "--json")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["name"] == "lab2"
    ready = run(world, "ann", "servers", "wait", "--name", "lab2", "--json")
    assert ready.returncode == 0, ready.stderr
    row = json.loads(ready.stdout)
    assert (row["name"], row["ready"], row["profile"]) == ("lab2", True, "small")  # the default
    assert row["url"] == f"{world['hub'].url}user/ann/lab2/"
    # shell completion asks the hub for the server names
    words = {"COMP_WORDS": "labspace servers stop --name ", "COMP_CWORD": "4"}
    completed = run(world, "ann", env={**words, "_LABSPACE_COMPLETE": "bash_complete"})
    assert completed.stdout.splitlines() == ["plain,lab2"], completed.stderr
    gone = run(world, "ann", "servers", "stop", "--name", "lab2", "--no-wait")
    assert gone.returncode == 0, gone.stderr
    done = run(world, "ann", "servers", "wait", "--name", "lab2", "--until", "stopped")
    assert (done.returncode, done.stdout.strip()) == (0, "ann/lab2: stopped"), done.stderr
    # waiting for a server that is not there to be ready: an error, at once
    missing = run(world, "ann", "servers", "wait", "--name", "lab2", "--timeout", "5")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: 0: ann's server 'lab2' is not running (it stopped)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--profile", "nope"], "error: 400: No such profile: 'nope' (yours: small)"),
        (["--profile", "big"], "error: 403: Profile 'big' is not open to your groups"),
        (
            ["--option", "cpu=64"],
            "error: 400: Unknown option 'cpu': the options are 'app', 'profile', 'project', "
            "'version'",
        ),
    ],
    ids=["unknown", "not-mine", "option"],
)
def test_a_refused_start_is_the_hubs_message_and_exit_1(world, args, message):
    for mode in ([], ["--json"]):
        done = run(world, "bob", "servers", "start", *args, *mode)
        assert done.returncode == 1, done.stdout
        assert done.stderr.strip() == message
        assert done.stdout == ""
    assert json.loads(run(world, "bob", "servers", "list", "--json").stdout) == []


def test_tokens_create_list_revoke(world):
    made = run(world, "ann", "tokens", "create", "--note", "for ci", "--expires-in", "600")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(made.stdout.splitlines()) == 1 and len(token) >= 32  # the token alone
    assert token not in made.stderr and "expires" in made.stderr
    hub = world["hub"].url + "hub/api/user"
    assert httpx.get(hub, headers={"Authorization": f"token {token}"}).json()["name"] == "ann"

    listed = json.loads(run(world, "ann", "tokens", "list", "--json").stdout)
    (mine,) = [t for t in listed if t["note"] == "for ci"]
    assert mine["expires_at"] and token not in json.dumps(listed)
    table = run(world, "ann", "tokens", "list")
    assert "for ci" in table.stdout and token not in table.stdout

    scoped = run(world, token, "tokens", "create", "--scope", "read:users:name!user", "--json")
    assert scoped.returncode == 0, scoped.stderr
    scopes = json.loads(scoped.stdout)["scopes"]
    assert "read:users:name!user=ann" in scopes and not {"servers", "tokens"} & set(scopes)

    revoked = run(world, "ann", "tokens", "revoke", mine["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"revoked token {mine['id']} of ann"
    assert httpx.get(hub, headers={"Authorization": f"token {token}"}).status_code == 403
    refused = run(world, token, "tokens", "list")
    assert refused.returncode == 1 and refused.stderr.startswith("error: 403")
    assert token not in refused.stderr


def test_apps_share_and_unshare(world):
    launched = run(world, "ann", "apps", "launch", "viewer", "--json")
    assert launched.returncode == 0, launched.stderr
    launch = json.loads(launched.stdout)

    def running():
        with service_client(world["hub"].url, world["tokens"]["ann"], "catalog") as c:
            found = c.get(f"launches/{launch['id']}").json()
        assert found["state"] != "failed", found
        return found if found["state"] == "running" else None

    url = world["hub"].url + wait_for(running, 120, 0.5, what="viewer")["url"].lstrip("/")

    def as_bob() -> dict:
        # a fresh token each time: the app's server caches what a token may do
        return {"Authorization": f"token {world['api'].token('bob', 'share check')}"}

    assert httpx.get(url, headers=as_bob()).status_code == 403

    shared = run(world, "ann", "apps", "share", str(launch["id"]), "--user", "bob")
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.strip() == f"launch {launch['id']}: shared with user bob"
    assert httpx.get(url, headers=as_bob()).status_code == 200
    shares = json.loads(run(world, "ann", "apps", "shares", str(launch["id"]), "--json").stdout)
    assert [s["user"] for s in shares] == ["bob"]

    both = run(world, "ann", "apps", "share", str(launch["id"]), "--user", "bob", "--group", "x")
    assert both.returncode == 2 and "one of them" in both.stderr
    gone = run(world, "ann", "apps", "unshare", str(launch["id"]), "--user", "bob", "--json")
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout) == {"unshared": {"user": "bob"}}
    assert httpx.get(url, headers=as_bob()).status_code == 403
    assert run(world, "ann", "apps", "stop", str(launch["id"])).returncode == 0


def balances(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["balances"]


def test_usage_assign_move_reverse(world):
    reason = ["--reason", "cli e2e", "--json"]
    before = balances(run(world, "admin", "usage", "top-up", "proj-lab", "100", *reason))
    assert before["proj-lab"] == "100.00"
    child = before.get("proj-child", "0.00")
    assigned = run(world, "admin", "usage", "assign", "proj-lab", "proj-child", "30.5", *reason)
    after = balances(assigned)
    assert (after["proj-lab"], after["proj-child"]) == ("69.50", "30.50")
    moved = run(world, "admin", "usage", "move", "proj-child", "proj-lab", "10", *reason)
    assert (balances(moved)["proj-lab"], balances(moved)["proj-child"]) == ("79.50", "20.50")
    tx = json.loads(moved.stdout)["transaction"]
    back = run(world, "admin", "usage", "reverse", str(tx), "--reason", "undo")
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith(f"transaction {tx + 1}: reversed {tx}; balances ")
    assert "proj-lab 69.50" in back.stdout and "proj-child 30.50" in back.stdout
    again = run(world, "admin", "usage", "reverse", str(tx), "--reason", "twice")
    assert again.returncode == 1 and again.stderr.startswith("error: 4")
    # a person without accounting admin: the service's 403
    refused = run(world, "ann", "usage", "move", "proj-lab", "proj-child", "1", *reason)
    assert refused.returncode == 1 and refused.stderr.startswith("error: 403")
    assert refused.stdout == ""
    # a bad amount never reaches the service: click's usage error, exit 2
    for amount in ("0", "1.1234567", "2000000000", "ten"):
        bad = run(world, "admin", "usage", "assign", "proj-lab", "proj-child", amount, *reason)
        assert bad.returncode == 2, amount
        assert f"Invalid value for 'AMOUNT': '{amount}' is" in bad.stderr, bad.stderr
    ledger = json.loads(run(world, "admin", "usage", "ledger", "--json").stdout)
    assert len(ledger) == 4 and child == "0.00"
