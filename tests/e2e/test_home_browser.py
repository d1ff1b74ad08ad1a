"""The hub's home page (labspace/templates/home.html, labspace/home.py) in a
real browser (Debian's Chromium through Playwright) on ONE real hub with the
local backend and accounting, catalog and data on.

Ann is in lab-a: a budget (140 credits, Small 1/hour, Medium 10/hour), one
catalog app and one dataset, both open to lab-a, whose titles and
descriptions are HTML and quotes that must show as text. Bea is in no group: a
personal allowance of 0, no apps (the bundled ones are off), no datasets.

- Ann's home shows her workspaces, apps, datasets and budget ("about 14 hours
  left on Medium"), and no script from a title runs.
- Start from the page shows JupyterHub's progress, then an Open link to the
  running workspace; Stop stops it. A new named workspace starts on the
  profile chosen next to its name. A named server's display name that is
  markup shows as text.
- Bea's home shows the empty states.
- The catalog killed by PID: the apps section says it is unavailable and the
  rest of the page works (last: the service is gone for the module's hub).

Screenshots: /tmp/labspace-findings/home-*.png. The tests run in file order.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import sys
from pathlib import Path

import httpx
import pytest
from browser import VIEWPORT, sign_in
from harness import free_port, service_client, service_pid, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "home-page-pw"  # noqa: S105 (a test hub's shared user password)
SHOTS = Path("/tmp/labspace-findings")
EVIL = "<script>document.title='pwned'</script>\"quoted\" & 'single'"
APP = {
    "id": "viewer",
    "title": "Viewer " + EVIL,
    "description": "Looks at things <img src=x onerror=\"document.title='pwned'\">",
    "category": "Testing",
    "kind": "proxied",
    "groups": ["lab-a"],
    "launch": {
        "command": [sys.executable, "-c", "import sys; sys.exit(3)", "{unix_socket}"],
        "unix_socket": True,
        "timeout": 10,
    },
}
PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True},
    {"slug": "medium", "display_name": "Medium"},
]


@pytest.fixture(scope="module")
def world(module_hub_factory, tmp_path_factory, chromium):
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    root = tmp_path_factory.mktemp("home-data")
    (root / "genomes").mkdir()
    ann, bea = (f"{n}{secrets.token_hex(3)}" for n in ("ann", "bea"))
    dataset = {
        "id": "genomes",
        "title": "Genomes " + EVIL,
        "description": "reference genomes",
        "kind": "host",
        "source": str(root / "genomes"),
        "grants": [{"group": "lab-a", "level": "read"}],
    }

    def edit(settings):
        settings["auth"] = {"user_password": PASSWORD}
        settings["profiles"] = PROFILES
        settings["accounting"] = {
            "enabled": True,
            "port": free_port(),
            "projects": {"prefix": "lab-"},
            "no_project": "personal",
            "personal_allowance": 0,
            "prices": {"profiles": {"small": 1, "medium": 10}},
            "min_period_hours": 0.01,
        }
        settings["catalog"] = {"enabled": True, "port": free_port(), "bundled": False}
        settings["catalog"]["apps"] = [APP]
        settings["data"] = {
            "enabled": True,
            "port": free_port(),
            "roots": [str(root)],
            "datasets": [dataset],
        }
        (role,) = settings["hub"]["config"]["JupyterHub"]["load_roles"]
        role["scopes"] += ["custom:labspace-accounting:admin", "access:services!service=accounting"]

    hub, api = module_hub_factory(edit)
    for name in (ann, bea):
        api.create_user(name)
    api.add_to_group("lab-a", ann)
    # a named server whose display name is markup and quotes (JupyterHub 6 lets people name them)
    body = {"display_name": EVIL, "user_options": {"profile": "medium"}}
    r = api.request("PUT", f"users/{ann}/servers/notes", json=body)
    assert r.status_code == 201, r.text
    token = api.client.headers["Authorization"].split()[1]
    with service_client(hub.url, token, "accounting") as acc:
        wait_for(lambda: acc.get("prices").status_code == 200, 90, 1, what="accounting")
        r = acc.post("ledger/topup", json={"project": "lab-a", "amount": "140", "reason": "t"})
        assert r.status_code == 201, r.text
    for name in ("catalog", "data"):
        wait_for(lambda n=name: up(hub, n), 90, 1, what=f"the {name} service")
    return {"hub": hub, "api": api, "ann": ann, "bea": bea}


def up(hub, name: str) -> bool:
    port = hub.settings[name]["port"]
    try:
        return httpx.get(f"http://127.0.0.1:{port}/services/{name}/", timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def home_of(world, chromium, name: str):
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(world["hub"].url + "hub/login")
    sign_in(page, name, PASSWORD)
    page.wait_for_url(re.compile(r"/hub/"))
    page.goto(world["hub"].url + "hub/home")
    page.wait_for_function("window._labspace_home_loaded === true")
    return page


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"home-{name}.png"), full_page=True)


def test_ann_sees_workspaces_apps_datasets_and_budget(world, chromium):
    from playwright.sync_api import expect

    page = home_of(world, chromium, world["ann"])
    rows = page.locator("#ls-workspaces tr.ls-server")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Default workspace")
    expect(rows.nth(0)).to_contain_text("Small")
    expect(rows.nth(0).locator(".ls-state")).to_have_text("stopped")
    expect(rows.nth(1).locator(".ls-server-label")).to_have_text(EVIL)  # as text
    expect(rows.nth(1)).to_contain_text("Medium")  # its last options' profile
    apps = page.locator("#ls-apps")
    expect(apps.locator(".ls-app")).to_have_count(1)
    expect(apps.locator(".ls-app-title")).to_have_text(APP["title"])  # as text, not markup
    expect(page.locator("#ls-datasets .ls-dataset")).to_contain_text("Genomes " + EVIL)
    expect(page.locator("#ls-datasets")).to_contain_text("read-only")
    budget = page.locator("#ls-budget")
    expect(budget.locator(".ls-balance")).to_contain_text("140.00")
    expect(budget).to_contain_text("about 14 hours left on Medium")
    expect(budget).to_contain_text("about 6 days left on Small")
    assert page.title() != "pwned" and not page.errors, page.errors
    shoot(page, "ann")


def test_start_shows_progress_then_open_and_stop_works(world, chromium):
    from playwright.sync_api import expect

    world["api"].started.add(world["ann"])  # stopped at the module's end if the test fails
    page = home_of(world, chromium, world["ann"])
    row = page.locator("tr.ls-server").first
    row.locator(".ls-start").click()
    expect(row.locator(".ls-state")).to_have_text("starting")
    expect(row.locator(".ls-progress")).to_be_visible()
    expect(row.locator(".ls-progress-message")).not_to_be_empty()
    shoot(page, "starting")
    expect(row.locator(".ls-open")).to_be_visible(timeout=90_000)
    expect(row.locator(".ls-state")).to_have_text("running")
    # read from JupyterHub's progress stream (a quick start sends only its last event)
    assert int(row.get_attribute("data-progress-events")) >= 1
    assert "ready" in row.locator(".ls-progress-message").text_content().lower()
    href = row.locator(".ls-open").get_attribute("href")
    assert href.rstrip("/").endswith(f"/user/{world['ann']}"), href
    page.reload()
    page.wait_for_function("window._labspace_home_loaded === true")
    expect(page.locator("#ls-budget .ls-burn")).to_contain_text("1 workspace at 1.00 credits/hour")
    shoot(page, "running")
    expect(page.locator("#start")).to_have_text("My Server")
    row = page.locator("tr.ls-server").first
    page.locator("#stop").click()  # the big button stops the default workspace too
    expect(row.locator(".ls-state")).to_have_text("stopped", timeout=60_000)
    expect(page.locator("#start")).to_have_text("Start My Server")
    expect(page.locator("#stop")).to_be_hidden()
    expect(row.locator(".ls-open")).to_be_hidden()
    wait_for(
        lambda: not world["api"].user(world["ann"]).json()["servers"], 30, 0.5, what="the stop"
    )
    assert not page.errors, page.errors


def test_a_new_named_workspace_starts_with_its_profile(world, chromium):
    from playwright.sync_api import expect

    page = home_of(world, chromium, world["ann"])
    page.locator("#ls-new-name").fill("analysis")
    page.locator("#ls-new-profile").select_option("medium")
    page.get_by_role("button", name="Start a new workspace").click()
    row = page.locator('tr.ls-server[data-server="analysis"]')
    expect(row.locator(".ls-open")).to_be_visible(timeout=90_000)
    assert row.locator(".ls-open").get_attribute("href").endswith(f"/user/{world['ann']}/analysis/")
    model = world["api"].user(world["ann"]).json()["servers"]["analysis"]
    assert model["user_options"]["profile"] == "medium"
    page.reload()
    page.wait_for_function("window._labspace_home_loaded === true")
    row = page.locator('tr.ls-server[data-server="analysis"]')
    expect(row).to_contain_text("Medium")
    expect(page.locator("#ls-budget .ls-burn")).to_contain_text("at 10.00 credits/hour")
    row.locator(".ls-stop").click()
    expect(row.locator(".ls-state")).to_have_text("stopped", timeout=60_000)
    assert not page.errors, page.errors


def test_bea_sees_empty_states(world, chromium):
    from playwright.sync_api import expect

    page = home_of(world, chromium, world["bea"])
    expect(page.locator("#ls-apps")).to_contain_text("No apps are open to you yet")
    expect(page.locator("#ls-datasets")).to_contain_text("No datasets are shared with you yet")
    expect(page.locator("#ls-budget")).to_contain_text("No budget to spend")
    expect(page.locator("#ls-workspaces tr.ls-server")).to_have_count(1)
    shoot(page, "empty")


def test_a_killed_service_leaves_the_page_working(world, chromium):
    from playwright.sync_api import expect

    pid = service_pid(world["hub"], "catalog")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not up(world["hub"], "catalog"), 10, 0.2, what="the catalog to go")
    page = home_of(world, chromium, world["ann"])
    expect(page.locator("#ls-apps")).to_contain_text("Apps are unavailable right now")
    expect(page.locator("#ls-budget .ls-balance")).to_contain_text(re.compile(r"1[34]\d\.\d\d"))
    expect(page.locator("#ls-datasets .ls-dataset")).to_have_count(1)
    expect(page.locator("#ls-workspaces .ls-start").first).to_be_visible()
    shoot(page, "catalog-down")
