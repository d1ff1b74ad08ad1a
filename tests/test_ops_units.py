"""The operations page's pure parts: start outcomes and their record, the
services' health rows (and the kit's health answer), the workspaces' rows."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from offline import build_spawner, settings_from
from tornado import web
from traitlets.config import Config

from labspace import ops
from labspace.services.kit import health
from labspace.spawners.local import LabspaceLocalSpawner
from labspace.spawners.outcome import StartOutcome, outcome_of

EVIL = "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize(
    ("error", "kind", "status", "reason"),
    [
        pytest.param(None, "started", None, "", id="started"),
        pytest.param(web.HTTPError(402, "Over budget: %s left", "0"), "refused", 402,
                     "Over budget: 0 left", id="budget-402"),
        pytest.param(web.HTTPError(403, "Not yours"), "refused", 403, "Not yours", id="403"),
        pytest.param(web.HTTPError(503, "Accounting down"), "failed", 503, "Accounting down",
                     id="503-is-a-failure"),
        pytest.param(TimeoutError(), "failed", None, "The workspace did not start in time",
                     id="timeout"),
        pytest.param(RuntimeError("image gone"), "failed", None, "RuntimeError: image gone",
                     id="other"),
    ],
)  # fmt: skip
def test_outcome_of(error, kind, status, reason):
    outcome = outcome_of(error, "small", 1.5)
    assert (outcome.kind, outcome.status, outcome.reason) == (kind, status, reason)
    assert outcome.profile == "small" and outcome.seconds == 1.5


def test_record_keeps_only_refused_and_failed_starts_newest_first_and_bounded():
    record = ops.StartRecord(size=3)
    record.add("ann", "", StartOutcome("started", "small"))
    assert len(record) == 0
    for i in range(5):
        record.add(f"u{i}", "", StartOutcome("refused", "small", 402, "x" * 1000))
    entries = record.entries()
    assert [e.user for e in entries] == ["u4", "u3", "u2"]
    assert len(entries[0].reason) == ops.MAX_TEXT


def test_each_hub_has_its_own_record():
    a, b = {}, {}
    assert ops.start_record(a) is ops.start_record(a)
    assert ops.start_record(a) is not ops.start_record(b)


def local_spawner(tmp_path, before_start, outcomes):
    config = Config()
    config.LabspaceSpawnerMixin.before_start = before_start
    config.LabspaceSpawnerMixin.start_outcome = [
        lambda spawner, outcome: outcomes.append(outcome),
        ops.record_outcome,
        lambda spawner, outcome: 1 / 0,  # a broken hook changes nothing
    ]
    config.LabspaceSpawnerMixin.home_root = str(tmp_path / "users")
    spawner = build_spawner(LabspaceLocalSpawner, "ann", "", settings_from("{}"), config)
    spawner.user.settings = {}
    spawner.cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    spawner.http_timeout = 1
    spawner.api_token = "not-a-real-token"  # noqa: S105
    return spawner


async def test_the_mixin_tells_each_outcome_once(tmp_path):
    outcomes: list[StartOutcome] = []

    def over_budget(spawner, spec):
        raise web.HTTPError(402, "Your budget is spent (<b>0</b> credits left)")

    spawner = local_spawner(tmp_path, [over_budget], outcomes)
    await spawner._run_apply_user_options({})
    with pytest.raises(web.HTTPError):
        await spawner.start()
    await spawner.run_post_stop_hook()
    assert [(o.kind, o.status) for o in outcomes] == [("refused", 402)]
    assert outcomes[0].reason == "Your budget is spent (<b>0</b> credits left)"
    (entry,) = ops.start_record(spawner.user.settings).entries()
    assert (entry.user, entry.kind, entry.status) == ("ann", "refused", 402)
    # options refused before any start
    with pytest.raises(web.HTTPError):
        await spawner._run_apply_user_options({"profile": "<no-such>"})
    assert outcomes[-1].kind == "refused" and outcomes[-1].profile == "<no-such>"
    # a start that works
    spawner.before_start = []
    await spawner._run_apply_user_options({})
    await spawner.start()
    try:
        assert outcomes[-1].kind == "started" and len(outcomes) == 3
    finally:
        await spawner.stop(now=True)
        await spawner.run_post_stop_hook()
    assert len(ops.start_record(spawner.user.settings)) == 2


# -- health -------------------------------------------------------------------------


def test_health_rows():
    up = ops.health_row(
        "accounting",
        200,
        {"ok": True, "version": "1.2", "outbox_depth": 0, "last_reconcile": "t",
         "last_error": {"at": "t", "message": "m"}},
        None,
        0.01,
    )  # fmt: skip
    assert (up["state"], up["version"], up["outbox_depth"], up["ms"]) == ("up", "1.2", 0, 10)
    assert up["last_error"] == {"at": "t", "message": "m"}
    degraded = ops.health_row("catalog", 200, {"ok": False, "problem": "db locked"}, None)
    assert (degraded["state"], degraded["problem"]) == ("degraded", "db locked")
    down = ops.health_row("data", None, {}, "ConnectionRefusedError")
    assert down["state"] == "down" and "ConnectionRefusedError" in down["problem"]
    refused = ops.health_row("data", 403, {"message": "Internal endpoints need a token"}, None)
    assert refused["state"] == "down" and refused["problem"].startswith("HTTP 403")
    assert ops.health_row("x", 200, ["not", "a", "dict"], None)["state"] == "up"
    assert ops.process_row("idle-culler", False)["state"] == "down"


async def test_nothing_listening_is_down_fast():
    probe = ops.Probe("catalog", "http://127.0.0.1:9/services/catalog/", "t0ken")
    assert "t0ken" not in repr(probe)
    row = await asyncio.wait_for(ops.ask_health(probe, timeout=1), 5)
    assert row["state"] == "down"


async def test_kit_health_report_keeps_the_last_error_and_a_failing_detail():
    health.install()
    logging.getLogger("labspace.test").error("Cannot reach the hub: %s\nmore", "refused")
    report = await health.report("demo", None)
    assert report["ok"] and report["service"] == "demo" and report["version"]
    assert report["last_error"]["message"] == "Cannot reach the hub: refused"

    async def broken():
        raise RuntimeError("database is locked")

    async def detail():
        return {"outbox_depth": 3}

    assert (await health.report("demo", detail))["outbox_depth"] == 3
    failed = await health.report("demo", broken)
    assert failed["ok"] is False and "database is locked" in failed["problem"]


# -- workspaces ---------------------------------------------------------------------


def test_workspace_rows_join_the_open_sessions():
    t = datetime(2026, 1, 1, 9, tzinfo=UTC)
    running = [
        ops.Running("bob", "gpu", "large", None, t, t, None),
        ops.Running("ann", "", "small", "alpha", t, None, "stop"),
    ]
    sessions = [
        {"user": "bob", "server": "gpu", "display_name": "Large", "project": "beta",
         "cost": "1.25", "price_per_hour": "2.50"},
        {"user": "carl", "server": "", "cost": "9"},  # gone from the hub
        "not a session",
    ]  # fmt: skip
    rows = ops.workspace_rows(running, sessions)
    assert [(r["user"], r["profile"], r["project"], r["cost"]) for r in rows] == [
        ("ann", "small", "alpha", None),
        ("bob", "Large", "beta", "1.25"),
    ]
    assert rows[1]["started"] == "2026-01-01T09:00:00+00:00"
    assert ops.workspace_rows(running, None)[1]["cost"] is None


# -- the hub's configuration --------------------------------------------------------


def test_the_page_is_wired_even_with_every_service_off(tmp_path):
    from labspace.hubconfig import build
    from labspace.settings import load
    from labspace.state import State

    path = tmp_path / "labspace.yaml"
    path.write_text(
        "hub:\n  admin_users: [root]\n"
        "accounting: {enabled: false}\ncatalog: {enabled: false}\ndata: {enabled: false}\n"
    )
    settings = load(path, environ={})
    state = State(settings)
    state.prepare()
    values = build(settings, state, ["/bin/true"])
    hub = values["JupyterHub"]
    assert ops.SCOPE in hub["custom_scopes"]
    roles = {r["name"]: r for r in hub["load_roles"]}
    assert ops.SCOPE in roles["labspace-admin"]["scopes"]
    assert roles["labspace-admin"]["users"] == ["root"]
    assert ops.SCOPE not in roles["user"]["scopes"]
    (link,) = [n for n in hub["template_vars"]["labspace_nav"] if n["url"] == ops.PAGE]
    assert (link["url"], link["scope"]) == (ops.PAGE, ops.SCOPE)
    assert ops.record_outcome in values["LabspaceSpawnerMixin"]["start_outcome"]


# -- the template ------------------------------------------------------------------


def render_ops(**ns) -> str:
    """ops.html as the hub renders it (JupyterHub's loaders, autoescape on)."""
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader

    from labspace.hubconfig import PACKAGE_DIR

    shared = os.path.join(sys.prefix, "share", "jupyterhub", "templates")
    assert os.path.isdir(shared), shared
    loader = ChoiceLoader(
        [
            PrefixLoader({"templates": FileSystemLoader([shared])}, "/"),
            FileSystemLoader([str(PACKAGE_DIR / "templates")]),
        ]
    )
    env = Environment(loader=loader, autoescape=True)
    page = {
        "base_url": "/hub/", "prefix": "/",
        "user": SimpleNamespace(name="admin", spawner=SimpleNamespace(options_form=None)),
        "static_url": lambda path, **kw: "/hub/static/" + path, "services": [],
        "parsed_scopes": {ops.SCOPE: {}}, "xsrf": "XSRF-TOKEN", "version_hash": "",
        "login_url": "/hub/login", "logout_url": "/hub/logout",
        "labspace_nav": [{"title": "Operations", "url": ops.PAGE, "admin": True,
                          "scope": ops.SCOPE}],
    }  # fmt: skip
    return env.get_template("ops.html").render(**{**page, **ns})


def test_the_page_escapes_what_users_and_services_say():
    t = datetime(2026, 1, 1, 9, tzinfo=UTC)
    running = [ops.Running(EVIL, EVIL, EVIL, EVIL, t, t, None)]
    record = ops.StartRecord()
    record.add(EVIL, EVIL, StartOutcome("refused", EVIL, 402, f"Over budget {EVIL}"))
    health_rows = [
        ops.health_row(
            "accounting", 200,
            {"version": EVIL, "last_error": {"at": EVIL, "message": EVIL}, "problem": EVIL},
            None,
        ),
    ]  # fmt: skip
    html = render_ops(
        workspaces=ops.workspace_rows(running, [{"user": EVIL, "server": EVIL, "cost": EVIL}]),
        currency=EVIL,
        costs_known=True,
        accounting_on=True,
        health=health_rows,
        starts=record.entries(),
        actions=[{"at": EVIL, "who": EVIL, "text": EVIL}],
        culling_on=True,
        max_starts=50,
    )
    assert "<img src=x" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 12
    assert 'name="_xsrf" value="XSRF-TOKEN"' in html
    assert 'href="/hub/ops"' in html  # the nav link, for whoever holds the scope
    assert 'action="/hub/ops/stop"' in html and 'action="/hub/ops/cull"' in html


def test_the_nav_link_needs_the_scope():
    html = render_ops(
        workspaces=[], currency="credits", costs_known=False, accounting_on=False, health=[],
        starts=[], actions=[], culling_on=False, max_starts=50,
        **{"parsed_scopes": {"admin-ui": {}}},
    )  # fmt: skip
    assert 'href="/hub/ops"' not in html
    assert "No workspace is running." in html and "Idle culling is off" in html


def test_the_access_log_is_not_a_last_error():
    health.install()
    health.LAST.last = None
    logging.getLogger("tornado.access").error("503 POST /services/x/api/internal/y 0.5ms")
    assert health.LAST.last is None


def test_only_foreign_extra_handlers_get_jupyterhubs_deprecation_warning():
    """Labspace's pages use JupyterHub's extra_handlers on purpose (they need the
    hub's own state), so an operator's log does not warn about them at every
    start; anybody else's handlers still get JupyterHub's warning."""
    import io
    import logging

    from jupyterhub.handlers.base import BaseHandler

    from labspace.hubapp import LabspaceHub
    from labspace.ops_pages import routes

    hub = LabspaceHub()
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    hub.log.addHandler(handler)
    try:
        hub.extra_handlers = [(pattern, cls, {}) for pattern, cls in routes()]
        assert hub.extra_handlers and seen.getvalue() == ""
        hub.extra_handlers = [(r"/mine", BaseHandler, {})]
        assert "extra_handlers is deprecated" in seen.getvalue()
    finally:
        hub.log.removeHandler(handler)
