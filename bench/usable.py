"""Click to usable and first cell, in Chromium (Playwright, as tests/browser.py).

Per turn, on one hub, a new user in a fresh browser profile (no cache, no
cookies): sign in on the hub's login page, land on its home page, press Start
(``#start``: JupyterHub's own spawn flow, upstream's home page and Labspace's
alike; where it leads to the spawn page's options form, as on Labspace with
its services, press that form's Start too, at once), and time until
JupyterLab's launcher (``.jp-Launcher``) is visible: **click to usable**.
Then **first cell**: open a Python notebook from the launcher, type ``1+1``,
Shift+Enter, and time from the launcher visible to the output ``2`` shown.
The lab page's navigation timing (performance API) splits click to usable
into the spawn (click to the lab page's request) and the page (its request to
the launcher: HTML, assets, JupyterLab's own start). Hubs alternate turn by
turn, the order rotated each round; a warm hub's pool is full before each
turn. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import figures  # noqa: E402
from browser import VIEWPORT, launch, sign_in  # noqa: E402

IDLE = re.compile(r"\\| Idle")
NAV_JS = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  return {origin: performance.timeOrigin, now: performance.now(),
          request: n.requestStart, response: n.responseEnd,
          dom: n.domContentLoadedEventEnd, load: n.loadEventEnd,
          resources: res.length,
          bytes: res.reduce((a, r) => a + (r.transferSize || 0), 0)};
}"""


def api(hub) -> httpx.Client:
    return httpx.Client(
        base_url=hub.url, headers={"Authorization": f"token {hub.token}"}, timeout=60
    )


def stop(hub, name: str, timeout: float) -> None:
    with api(hub) as c:
        c.delete(f"hub/api/users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = c.get(f"hub/api/users/{name}")
            if r.status_code != 200 or not r.json()["servers"]:
                break
            time.sleep(0.25)
        c.delete(f"hub/api/users/{name}")


def one(browser, hub, name: str, timeout: float, context=None) -> dict:
    """One person: sign in, Start, launcher; then a notebook's first cell. With
    ``context``: that browser profile (its cache kept, its cookies cleared)."""
    with api(hub) as c:
        c.post(f"hub/api/users/{name}")
    hub.used.append(name)
    ms = int(timeout * 1000)
    own = context is None
    if own:
        context = browser.new_context(viewport=VIEWPORT)
    else:
        context.clear_cookies()
    page = context.new_page()
    page.set_default_timeout(ms)
    out: dict = {"user": name}
    try:
        # next=home: upstream JupyterHub otherwise starts the server on sign-in
        page.goto(hub.url + "hub/login?next=%2Fhub%2Fhome")
        sign_in(page, name, hub.password)
        page.wait_for_url("**/hub/home", timeout=30_000)
        start = page.locator("#start")
        start.wait_for(state="visible", timeout=30_000)
        t0 = time.time()
        start.click(no_wait_after=True)
        # Start leads to the spawn page's options form when there is something to
        # choose (Labspace with its services: profile, project): press its Start too
        page.locator("#spawn_form, .jp-Launcher").first.wait_for(state="visible", timeout=ms)
        form = page.locator("#spawn_form")
        if form.count() and form.first.is_visible():
            out["form"] = round(time.time() - t0, 3)
            form.locator("[type=submit]").first.click(no_wait_after=True)
        page.locator(".jp-Launcher").first.wait_for(state="visible", timeout=ms)
        t1 = time.time()
        out["click_to_usable"] = round(t1 - t0, 3)
        nav = page.evaluate(NAV_JS)
        origin = nav["origin"] / 1000  # epoch s when the lab page's navigation began
        out["lab_page"] = {
            "spawn": round(origin + nav["request"] / 1000 - t0, 3),  # click -> lab request
            "html": round((nav["response"] - nav["request"]) / 1000, 3),
            "dom": round((nav["dom"] - nav["request"]) / 1000, 3),
            "load": round((nav["load"] - nav["request"]) / 1000, 3),
            "launcher": round(t1 - origin - nav["request"] / 1000, 3),  # lab request -> launcher
            "resources": nav["resources"],
            "bytes": nav["bytes"],
        }
        out.update(cell(page, t1, ms))
    except Exception as e:  # a failed turn is a figure too (not usable)  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        shot = Path(tempfile.gettempdir()) / f"bench-usable-{name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot))
            out["screenshot"] = str(shot)
    finally:
        if own:
            context.close()
        else:
            page.close()
        stop(hub, name, timeout)
    return out


def cell(page, t_launcher: float, ms: int) -> dict:
    """Open a notebook from the launcher, run ``1+1``; times from the launcher visible."""
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    editor.wait_for(state="visible", timeout=ms)
    t_open = time.time()
    editor.click()
    page.keyboard.type("1+1")
    # as a person would see it: the notebook's kernel idle (a cell run before the
    # notebook has its kernel is dropped, not queued), then Shift+Enter
    page.locator(".jp-StatusBar-Widget, .jp-StatusBar").get_by_text(IDLE).first.wait_for(
        state="visible", timeout=ms
    )
    t_kernel = time.time()
    page.keyboard.press("Shift+Enter")
    page.locator(".jp-NotebookPanel .jp-OutputArea-output").filter(has_text="2").first.wait_for(
        state="visible", timeout=ms
    )
    t_out = time.time()
    return {
        "notebook_open": round(t_open - t_launcher, 3),
        "kernel_idle": round(t_kernel - t_launcher, 3),
        "first_cell": round(t_out - t_launcher, 3),
    }


def run(hubs, rounds: int, timeout: float, deadline: float, cached: bool = False) -> dict:
    """``rounds`` rounds of one turn per hub, order rotated each round; with
    ``cached``, one browser profile per hub (a returning person: JupyterLab's
    assets in the browser's cache), else a fresh one each turn."""
    from playwright.sync_api import sync_playwright

    out: dict = {"hubs": {h.label: [] for h in hubs}, "order": [], "cached": cached}
    tag = secrets.token_hex(2)
    with sync_playwright() as pw:
        browser = launch(pw)
        contexts = {
            h.label: browser.new_context(viewport=VIEWPORT) if cached else None for h in hubs
        }
        try:
            # one unmeasured turn per hub (JupyterLab's first build of caches, the browser's start)
            for h in hubs:
                h.wait_pool_full(180)
                warm = one(browser, h, f"k{tag}w{h.code}", timeout, contexts[h.label])
                out.setdefault("warm_up", {})[h.label] = warm
            for rnd in range(rounds):
                if time.monotonic() > deadline:
                    out["stopped_early"] = rnd
                    break
                order = figures.rotated(hubs, rnd)
                out["order"].append([h.label for h in order])
                for h in order:
                    full, waited = h.wait_pool_full(180)
                    name = f"k{tag}r{rnd}{h.code}{len(h.used)}"
                    r = one(browser, h, name, timeout, contexts[h.label])
                    r["pool_full"] = full
                    out["hubs"][h.label].append(r)
                    print(
                        f"  browser r{rnd} {h.label}: click→usable {r.get('click_to_usable')} "
                        f"first cell {r.get('first_cell')} {r.get('error', '')}",
                        flush=True,
                    )
        finally:
            browser.close()
    return out
