"""Warm starts on the local backend, on one real hub with ``backend.warm_pool``
on, as people and scripts meet them: a start from the pool looks and behaves
like a cold one (the same progress messages, the same refusals), each person's
workspace holds only their own environment, token and files, a pool member
serves nothing before its claim, an empty pool starts cold, and the hub's
fork server and members end with the hub (and a restarted hub makes a new
pool). The tests run in order on one hub."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from harness import environ, progress, wait_for, workspace_pids

from labspace.warm import forkserver

pytestmark = [pytest.mark.e2e]

SIZE = 2


@pytest.fixture(scope="module")
def warm(module_hub_factory):
    """The hub (pool of ``SIZE``, filled in the background once it is up), its
    API client, and what the tests learn along the way."""

    def edit(settings):
        settings["backend"] = {"warm_pool": {"enabled": True, "size": SIZE}}

    hub, api = module_hub_factory(edit)
    return {"hub": hub, "api": api, "folder": hub.workdir / "data" / "runtime" / ".warm"}


def members(folder: Path) -> list[dict]:
    """The fork server's members (``[]`` while it is not up)."""
    try:
        answer = asyncio.run(
            forkserver.request(str(folder / forkserver.SOCKET_NAME), {"op": "list"})
        )
    except forkserver.ForkServerError:
        return []
    return answer["members"]


def ready_members(folder: Path, n: int = SIZE) -> list[dict]:
    def filled():
        ready = [m for m in members(folder) if m["state"] == "ready"]
        return ready if len(ready) >= n else None

    return wait_for(filled, 60, 0.1, what=f"{n} pool members")


def start_with_progress(warm, name: str) -> tuple[list[str], float]:
    """Start ``name``'s server; the progress messages (the user's name made
    ``NAME``) and the seconds from the request to the first 200 of its API."""
    hub, api = warm["hub"], warm["api"]
    token = api.token(name)
    began = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(api.request, "POST", f"users/{name}/server")
        events = progress(hub.url, api.client.headers["Authorization"].split()[1], name)
        assert posted.result().status_code in (201, 202), posted.result().text
    api.started.add(name)

    def answers():
        r = httpx.get(f"{hub.url}user/{name}/api/status", headers=auth(token), timeout=10)
        return r.status_code == 200

    wait_for(answers, 60, 0.05, what=f"{name}'s server")
    shown = [e["message"].replace(name, "NAME") for e in events]
    assert events[-1].get("ready") is True, shown
    return shown, time.monotonic() - began


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def started_warm(hub, name: str) -> str | None:
    """The member ``name``'s last start claimed, from the hub's log."""
    found = re.findall(rf"\b{re.escape(name)} started warm from member (\w+)", hub.log())
    return found[-1] if found else None


def kernel_env(hub_url: str, token: str, name: str, home: Path) -> dict[str, str]:
    """The environment a kernel of ``name``'s server gets: the server's own
    (a kernel inherits it), as the user's code sees it."""
    base = f"{hub_url}user/{name}/api/kernels"
    before = set(workspace_pids(home))
    r = httpx.post(base, headers=auth(token), json={}, timeout=30)
    assert r.status_code == 201, r.text
    try:
        pid = wait_for(lambda: set(workspace_pids(home)) - before, 30, what="a kernel").pop()
        return environ(pid)
    finally:
        httpx.delete(f"{base}/{r.json()['id']}", headers=auth(token), timeout=30)


def test_a_start_before_the_pool_is_filled_is_a_cold_start(warm):
    """The pool fills once the hub is up (the fork server takes seconds to
    preload): a start that finds it empty is a normal cold start."""
    api = warm["api"]
    api.create_user("cole")
    shown, took = start_with_progress(warm, "cole")
    # (the fork server preloads for ~2 s after the hub is up: the pool is empty)
    assert started_warm(warm["hub"], "cole") is None, "the pool was filled already"
    warm["cold_messages"], warm["cold_seconds"] = shown, took


def test_pool_members_serve_nothing_before_their_claim(warm):
    folder = warm["folder"]
    assert folder.stat().st_mode & 0o777 == 0o700
    for member in ready_members(folder):
        proc = psutil.Process(member["pid"])
        assert proc.net_connections(kind="inet") == []
        assert "JUPYTERHUB_API_TOKEN" not in proc.environ()
        assert proc.cwd() == str(folder)  # no one's home
        assert proc.status() != psutil.STATUS_ZOMBIE


def test_two_people_start_warm_and_each_sees_only_their_own(warm):
    hub, api = warm["hub"], warm["api"]
    users = hub.workdir / "data" / "users"
    tokens, seconds = {}, {}
    for name in ("quokka", "wombat"):
        waiting = {m["id"]: m["pid"] for m in ready_members(warm["folder"])}
        api.create_user(name)
        shown, seconds[name] = start_with_progress(warm, name)
        member = started_warm(hub, name)
        assert member in waiting, f"{name} did not start from the pool"
        # the member became the server: its pid is the workspace's, in the home
        assert waiting[member] in workspace_pids(users / name)
        # and ps, /proc and tools see the workspace's command and environment
        server = psutil.Process(waiting[member])
        assert server.cmdline()[1:3] == ["-m", "labspace.singleuser"]
        assert environ(server.pid)["JUPYTERHUB_USER"] == name
        # the same steps, in the same order, as the cold start
        assert shown == warm["cold_messages"]
        tokens[name] = api.token(name)
        r = httpx.put(
            f"{hub.url}user/{name}/api/contents/{name}.txt",
            headers=auth(tokens[name]),
            json={"type": "file", "format": "text", "content": f"{name}'s\n"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
    warm["warm_seconds"] = seconds

    for me, other in (("quokka", "wombat"), ("wombat", "quokka")):
        listing = httpx.get(
            f"{hub.url}user/{me}/api/contents", headers=auth(tokens[me]), timeout=30
        ).json()
        names = {item["name"] for item in listing["content"]}
        assert f"{me}.txt" in names and f"{other}.txt" not in names
        # someone else's token opens nothing of mine
        r = httpx.get(f"{hub.url}user/{other}/api/contents", headers=auth(tokens[me]), timeout=30)
        assert r.status_code == 403, r.text
        env = kernel_env(hub.url, tokens[me], me, users / me)
        assert env["JUPYTERHUB_USER"] == me and env["USER"] == me
        assert env["HOME"] == str(users / me)
        assert env["JUPYTERHUB_SERVICE_PREFIX"] == f"/user/{me}/"
        assert not any(other in value for value in env.values()), "another user's value"
        warm.setdefault("api_tokens", {})[me] = env["JUPYTERHUB_API_TOKEN"]
    assert warm["api_tokens"]["quokka"] != warm["api_tokens"]["wombat"]


def test_a_member_that_died_waiting_gives_a_cold_start(warm):
    """A member killed while it waited (OOM killer, an operator) never breaks a
    start: the start that takes it goes on cold (or, when the pool saw it dead
    first, gets another member), with the same messages, and works; the pool
    makes a new member."""
    hub, api = warm["hub"], warm["api"]
    # the oldest: the next one the pool hands out (first in, first out)
    oldest = min(ready_members(warm["folder"]), key=lambda m: m["created"])
    os.kill(oldest["pid"], signal.SIGKILL)
    api.create_user("dora")
    shown, _ = start_with_progress(warm, "dora")
    assert shown == warm["cold_messages"]
    member = started_warm(hub, "dora")
    if member is None:  # it took the dead one: the claim failed, the start went on cold
        assert re.search(r"dora: warm start from member \w+ failed; starting cold", hub.log())
    else:  # the pool saw it dead first (it checks every few seconds): another member
        assert member != oldest["id"]


def test_a_refused_start_is_refused_the_same_way_and_takes_no_member(warm):
    api, folder = warm["api"], warm["folder"]
    before = {m["id"] for m in ready_members(folder)}
    api.create_user("eve")
    r = api.request("POST", "users/eve/server", json={"profile": "nope"})
    message = "No such profile: 'nope' (yours: default)"
    assert (r.status_code, r.json()) == (400, {"status": 400, "message": message})
    assert api.user("eve").json()["servers"] == {}
    assert {m["id"] for m in members(folder) if m["state"] == "ready"} == before


def test_the_hub_going_ends_the_pool_and_a_new_hub_makes_a_new_one(warm):
    hub, api, folder = warm["hub"], warm["api"], warm["folder"]
    state = json.loads((folder / forkserver.STATE_FILE).read_text())
    waiting = [m["pid"] for m in ready_members(folder)]
    api.stop_all()
    hub.stop()
    gone = [state["pid"], *waiting]
    wait_for(lambda: not any(psutil.pid_exists(p) for p in gone), 15, what="the pool to end")
    assert not (folder / forkserver.SOCKET_NAME).exists()
    assert workspace_pids(hub.workdir / "data" / "users") == []

    hub.start()
    fresh = ready_members(folder)
    again = json.loads((folder / forkserver.STATE_FILE).read_text())
    assert again["pid"] != state["pid"] and psutil.pid_exists(again["pid"])
    assert not {m["pid"] for m in fresh} & set(waiting)
    shown, _ = start_with_progress(warm, "quokka")
    assert started_warm(hub, "quokka") in {m["id"] for m in fresh}
    assert shown == warm["cold_messages"]
