"""The hub side of accounting against a stand-in service on a real port: the
outbox keeps every event across a SIGKILL, the spawner hooks reserve, refuse
with the service's message, follow ``on_unreachable`` and record start and stop
events; the deliverer process drains the outbox through failures and stops
cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness import free_port, wait_for
from tornado import web
from tornado.httpserver import HTTPServer

from labspace.profiles import WorkspaceSpec
from labspace.services.accounting import hubside
from labspace.services.accounting.hubside import HubSide, render_form, session_key
from labspace.services.accounting.outbox import Outbox

TOKEN = "secret-accounting-token"  # noqa: S105 (test value)
STARTED = datetime(2026, 11, 25, 9, 30, 0, 123456)  # naive UTC, as JupyterHub keeps it
KEY = "ann//2026-11-25T09:30:00.123456+00:00"
SPEC = WorkspaceSpec(profile="small", display_name="Small", cpu_limit=1.0, mem_limit=2 * 1024**3)
SPAWN_INFO = {
    "currency": "credits",
    "projects": [
        {"name": "lab-x", "balance": "12.50", "default": True},
        {"name": "lab-<y>", "balance": "0.40", "default": False},
    ],
    "personal": None,
    "prices": {"small": "1.00", "big": "4.00"},
    "min_period_hours": 1.0,
    "refuse_without_project": False,
}


class FakeService:
    """A stand-in for the accounting service's internal API: records what it
    gets; ``answers[path]`` is a list of ``(status, body)`` served in turn (the
    last one repeats)."""

    def __init__(self):
        self.port = free_port()
        self.requests: list[tuple[str, str, dict | None]] = []
        self.answers: dict[str, list[tuple[int, dict]]] = {
            "spawn-info": [(200, SPAWN_INFO)],
            "reserve": [(200, {"session": KEY, "project": "lab-x", "reserved": "1.00"})],
            "events": [(200, {"accepted": 1, "duplicates": 0})],
            "outbox-status": [(200, {})],
            "alerts": [(200, {"alerts": [{"level": "warning", "text": "20% left"}]})],
        }
        self.events: list[dict] = []
        fake = self

        class Handler(web.RequestHandler):
            def check_xsrf_cookie(self):
                pass

            def handle(self, path):
                assert self.request.headers["Authorization"] == f"token {TOKEN}"
                body = json.loads(self.request.body) if self.request.body else None
                fake.requests.append((self.request.method, path, body))
                queue = fake.answers[path]
                status, answer = queue.pop(0) if len(queue) > 1 else queue[0]
                if path == "events" and status == 200:
                    fake.events += body["events"]
                self.set_status(status)
                self.finish(answer)

            get = post = handle

        self.app = web.Application([(r"/services/accounting/api/internal/([a-z-]+)", Handler)])
        self.server: HTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/accounting/"

    def start(self) -> FakeService:
        self.server = HTTPServer(self.app)
        self.server.listen(self.port, "127.0.0.1")
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None

    def calls(self, path: str) -> list:
        return [body for _, p, body in self.requests if p == path]


@pytest.fixture
async def service():
    fake = FakeService().start()
    yield fake
    fake.stop()


@pytest.fixture
def outbox_path(tmp_path):
    return tmp_path / "accounting-outbox.sqlite"


@pytest.fixture
def hub(service, outbox_path):
    return HubSide(service.base_url, TOKEN, str(outbox_path), "closed", timeout=2, tries=2)


def spawner(options=None, name="") -> SimpleNamespace:
    return SimpleNamespace(
        user=SimpleNamespace(name="ann"),
        user_groups=lambda: {"lab-x"},
        name=name,
        orm_spawner=SimpleNamespace(started=STARTED),
        user_options=options or {},
        start_failed=False,
    )


async def settle(hub: HubSide) -> None:
    """Wait for the hub side's background deliveries."""
    for _ in range(100):
        if not hub._tasks:
            return
        await asyncio.sleep(0.02)


# -- outbox --------------------------------------------------------------------


def test_outbox_claims_acks_and_releases(outbox_path):
    box = Outbox(outbox_path)
    assert box.append({"id": "k:start"}, {"id": "k:stop"}) == 2
    assert box.append({"id": "k:start"}) == 0  # an event is kept once
    assert box.status()["depth"] == 2
    assert oct(outbox_path.stat().st_mode & 0o777) == "0o600"
    first = box.claim(limit=1)
    assert [e["id"] for _, e in first] == ["k:start"]
    second = box.claim()  # the first is leased to its claimer
    assert [e["id"] for _, e in second] == ["k:stop"]
    assert box.claim() == []
    box.release([seq for seq, _ in first], "HTTP 500", delay=0)
    assert [e["id"] for _, e in box.claim()] == ["k:start"]
    box.ack([seq for seq, _ in first + second])
    assert box.status() == {"depth": 0, "oldest": None}


def test_outbox_keeps_a_sessions_events_in_order(outbox_path):
    """A stop never overtakes its start that is claimed elsewhere or set back."""
    box = Outbox(outbox_path)
    box.append({"id": "a:start", "key": "a"}, {"id": "a:stop", "key": "a"})
    box.append({"id": "b:start", "key": "b"})
    ((seq, _),) = box.claim(ids=["a:start"])  # the hub's own try, under way
    assert [e["id"] for _, e in box.claim()] == ["b:start"]
    box.release([seq], "refused", delay=60)  # set back
    assert box.claim() == []
    box.release([seq], "again", delay=0)
    assert [e["id"] for _, e in box.claim()] == ["a:start", "a:stop"]


def test_outbox_keys_open_and_close(outbox_path):
    box = Outbox(outbox_path)
    box.append({"id": "a:start"}, open_key=("ann", "", "a"))
    assert box.open_key("ann", "") == "a"
    assert box.open_key("ann", "other") is None
    box.append({"id": "a:stop"}, close_key=("ann", ""))
    assert box.open_key("ann", "") is None


def test_outbox_loses_nothing_when_its_writer_is_killed(outbox_path):
    """Every append that returned is there after a SIGKILL mid-stream."""
    writer = textwrap.dedent(
        f"""
        import sys
        from labspace.services.accounting.outbox import Outbox
        box = Outbox({str(outbox_path)!r})
        for i in range(100000):
            box.append({{"id": f"e{{i}}", "n": i}})
            print(i, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    acked = []
    for line in proc.stdout:
        acked.append(int(line))
        if len(acked) == 200:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(10)
    stored = {e["n"] for e in Outbox(outbox_path).pending()}
    assert set(acked) <= stored


# -- the spawn form ------------------------------------------------------------


def test_form_shows_projects_and_prices():
    part = render_form(SPAWN_INFO)
    assert part["labels"] == {"small": "1.00 credits/hour", "big": "4.00 credits/hour"}
    assert '<select class="form-control" id="labspace-project" name="project">' in part["html"]
    assert '<option value="lab-x" selected>lab-x — 12.50 credits left</option>' in part["html"]
    assert "lab-&lt;y&gt; — 0.40 credits left" in part["html"]


@pytest.mark.parametrize(
    "info, shown",
    [
        ({"projects": [], "personal": {"balance": "3.00"}}, "personal allowance (3.00 credits"),
        ({"projects": [], "refuse_without_project": True}, "cannot start a workspace"),
    ],
    ids=["personal", "refused"],
)
def test_form_without_projects(info, shown):
    assert shown in render_form({**SPAWN_INFO, **info})["html"]


async def test_form_part_asks_the_service(hub, service):
    part = await hub.form_part(spawner())
    assert "lab-x — 12.50 credits left" in part["html"]
    assert service.requests[0][:2] == ("GET", "spawn-info")


async def test_form_part_says_when_the_service_is_down(hub, service):
    service.stop()
    part = await hub.form_part(spawner())
    assert "cannot be shown right now" in part["html"]
    assert part["labels"] == {}


# -- hooks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "project, status, message",
    [
        (3, 400, "Option 'project' must be a project name (a string)"),
        ("lab-z", 403, "Project 'lab-z' is not one of yours (yours: lab-x, lab-<y>)"),
    ],
    ids=["not-string", "not-mine"],
)
async def test_check_options_refuses(hub, project, status, message):
    with pytest.raises(web.HTTPError) as e:
        await hub.check_options(spawner(), {"profile": "small", "project": project})
    assert (e.value.status_code, e.value.log_message) == (status, message)


async def test_check_options_lets_mine_through(hub):
    await hub.check_options(spawner(), {"project": "lab-x"})
    await hub.check_options(spawner(), {})


def test_session_key_is_user_server_and_hub_start_time():
    assert session_key("ann", "", STARTED) == KEY
    assert session_key("ann", "gpu", STARTED).startswith("ann/gpu/2026-11-25T09:30:00.123456")


async def test_before_start_reserves_then_records_the_start(hub, service, outbox_path):
    await hub.before_start(spawner({"project": "lab-x"}), SPEC)
    (reserve,) = service.calls("reserve")
    assert reserve == {
        "key": KEY,
        "user": "ann",
        "server": "",
        "groups": ["lab-x"],
        "project": "lab-x",
        "profile": "small",
        "display_name": "Small",
        "resources": {"cpu": 1.0, "mem_gib": 2.0, "gpus": 0},
        "at": "2026-11-25T09:30:00.123456+00:00",
    }
    await settle(hub)
    (start,) = service.events
    assert start["id"] == f"{KEY}:start" and start["reserve"] == reserve
    assert start["at"] == reserve["at"]
    assert Outbox(outbox_path).status()["depth"] == 0  # delivered and acknowledged
    assert Outbox(outbox_path).open_key("ann", "") == KEY

    await hub.after_stop(spawner())
    await settle(hub)
    stop = service.events[-1]
    assert (stop["id"], stop["type"], stop["reason"]) == (f"{KEY}:stop", "stop", "stopped")
    assert Outbox(outbox_path).open_key("ann", "") is None
    await hub.after_stop(spawner())  # no session open: nothing more
    assert len(service.events) == 2


async def test_refusal_carries_the_service_message(hub, service, outbox_path):
    message = "Project lab-x has 0.40 credits left; Small costs 1.00/hour"
    service.answers["reserve"] = [(402, {"status": 402, "message": message})]
    with pytest.raises(web.HTTPError) as e:
        await hub.before_start(spawner(), SPEC)
    assert (e.value.status_code, e.value.log_message) == (402, message)
    assert Outbox(outbox_path).pending() == []
    await hub.after_stop(spawner())  # the failed start owes no stop
    assert Outbox(outbox_path).pending() == []


async def test_retries_a_failing_service(hub, service):
    service.answers["reserve"].insert(0, (503, {}))
    await hub.before_start(spawner(), SPEC)
    assert len(service.calls("reserve")) == 2


async def test_unreachable_closed_refuses_and_records_it(hub, service, outbox_path):
    service.stop()
    with pytest.raises(web.HTTPError) as e:
        await hub.before_start(spawner(), SPEC)
    assert e.value.status_code == 503
    assert "accounting service is not answering" in e.value.log_message
    (event,) = Outbox(outbox_path).pending()
    assert (event["type"], event["decision"], event["mode"]) == ("unreachable", "refused", "closed")
    assert Outbox(outbox_path).open_key("ann", "") is None


async def test_unreachable_open_starts_and_records_everything(hub, service, outbox_path):
    service.stop()
    hub.on_unreachable = "open"
    await hub.before_start(spawner(), SPEC)
    await hub.after_stop(spawner())
    await settle(hub)
    kinds = [(e["type"], e.get("decision")) for e in Outbox(outbox_path).pending()]
    assert kinds == [("unreachable", "allowed"), ("start", None), ("stop", None)]
    start = Outbox(outbox_path).pending()[1]
    assert start["reserve"]["profile"] == "small"  # enough for the service to open it later


async def test_alerts_are_cached_and_never_block(hub, service):
    assert hub.alerts(None) == []
    assert hub.alerts(SimpleNamespace(name="ann")) == []  # first look: fetched in background
    await settle(hub)
    assert hub.alerts(SimpleNamespace(name="ann")) == [{"level": "warning", "text": "20% left"}]
    assert len(service.calls("alerts")) == 1  # cached
    service.stop()
    hub._alerts["ann"] = (0.0, hub._alerts["ann"][1])  # expired
    assert hub.alerts("ann")  # the stale list, while refreshing fails quietly
    await settle(hub)
    assert hub.alerts("ann") == [{"level": "warning", "text": "20% left"}]


def test_alerts_outside_the_event_loop(hub):
    assert hub.alerts("ann") == []


def test_parts_for_the_hub_config(tmp_path):
    values = {
        "hub": {"base_url": "/lab/", "hub_ip": "0.0.0.0"},  # noqa: S104 (the chart's)
        "accounting": {"port": 8010, "on_unreachable": "open"},
    }
    settings = SimpleNamespace(
        values=values, get=lambda key: values[key.split(".")[0]][key.split(".")[1]]
    )
    state = SimpleNamespace(data_dir=tmp_path, service_token=lambda name: f"{name}-token")
    one = HubSide.from_settings(settings, state)  # config.hub_parts builds it once
    traits = hubside.spawner_traits(one)
    again = hubside.spawner_traits(one)
    assert traits == again  # one HubSide per hub: the config may be loaded twice
    hub = traits["before_start"][0].__self__
    # on the pod's own loopback, where the service listens too (hub.hub_ip 0.0.0.0)
    assert hub.base_url == "http://127.0.0.1:8010/lab/services/accounting/"
    assert hub.on_unreachable == "open"
    assert set(traits["option_keys"]) == {"project"}
    service = hubside.deliverer_service(settings, state)
    assert service["name"] == "accounting-deliverer" and "url" not in service
    assert service["command"][1:] == ["-m", "labspace.services.accounting.deliver"]
    env = service["environment"]
    secret = Path(json.loads(env["LABSPACE_ACCOUNTING_DELIVERER_CONFIG"])["secret_file"])
    assert secret == tmp_path / "secrets" / "accounting-deliverer-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) == 64  # its own, not the service's token
    assert "accounting-token" not in json.dumps(env)


# -- the deliverer -------------------------------------------------------------


def start_deliverer(service: FakeService, outbox_path) -> subprocess.Popen:
    secret = outbox_path.parent / "deliverer-secret"
    secret.write_text(TOKEN + "\n")
    env = {
        **os.environ,
        "LABSPACE_ACCOUNTING_DELIVERER_CONFIG": json.dumps(
            {"outbox": str(outbox_path), "url": service.base_url, "secret_file": str(secret)}
        ),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "labspace.services.accounting.deliver"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_deliverer_drains_through_failures_and_stops_on_sigterm(service, outbox_path):
    box = Outbox(outbox_path)
    box.append(*({"id": f"k{i}:start", "n": i} for i in range(1200)))
    service.answers["events"] = [(500, {}), (500, {}), (200, {"accepted": 1, "duplicates": 0})]
    proc = start_deliverer(service, outbox_path)
    try:
        deadline = time.monotonic() + 30

        def settled() -> bool:  # drained, and the empty outbox reported (it follows the ack)
            reports = service.calls("outbox-status")
            return not box.status()["depth"] and bool(reports) and reports[-1]["depth"] == 0

        while not settled() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert box.status()["depth"] == 0
        assert sorted(e["n"] for e in service.events) == list(range(1200))
        statuses = service.calls("outbox-status")
        assert statuses and statuses[-1] == {"depth": 0, "oldest": None}
        assert statuses[0]["depth"] > 0
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 10)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_deliverer_waits_for_the_service_to_come_back(service, outbox_path):
    service.stop()
    Outbox(outbox_path).append({"id": "late:stop"})
    proc = start_deliverer(service, outbox_path)
    try:
        await asyncio.sleep(2)
        assert Outbox(outbox_path).status()["depth"] == 1
        service.start()
        await asyncio.to_thread(
            wait_for, lambda: service.events, 40, 0.2, "delivery after the outage"
        )
        assert [e["id"] for e in service.events] == ["late:stop"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
