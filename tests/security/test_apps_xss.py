"""The Data Explorer shows names, never runs them (issue 10, finding 3).

A real hub on the local backend (the security world's), the admin's workspace,
and Chromium signed in as the admin. Three payloads that would each set a
``window`` flag if the page ran them as HTML: one in the ``?file=`` link (a
reflected attack: anyone may send the link), one in a file name and one in a
column name (stored: a shared dataset).
Each flag stays unset, and where the name is shown it is shown as text.
"""

from __future__ import annotations

import re
import urllib.parse

import httpx
import pytest
from browser import VIEWPORT, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

URL_PAYLOAD = "<img src=x onerror=window.__xss_url=1>"
FILE_PAYLOAD = "<img src=x onerror=window.__xss_file=1>.parquet"
COLUMN_PAYLOAD = "<img src=x onerror=window.__xss_column=1>"
FLAGS = ["__xss_url", "__xss_file", "__xss_column"]


@pytest.fixture
def workspace(security_world_factory):
    """The admin's running workspace, in the security world's hub, with the two
    booby-trapped files."""
    world = security_world_factory(start=["admin"])
    hub = world.hub
    base = hub.url.rstrip("/") + "/user/admin/"
    headers = {"Authorization": f"token {world.service_token}"}
    files = [
        (FILE_PAYLOAD, "not a parquet file"),
        ("columns.csv", f"{COLUMN_PAYLOAD},rain\n1,2\n3,4\n"),
    ]
    for name, content in files:
        body = {"type": "file", "format": "text", "content": content}
        path = urllib.parse.quote(name, safe="")
        r = httpx.put(f"{base}api/contents/{path}", json=body, headers=headers, timeout=30)
        assert r.status_code == 201, r.text
    yield hub, base
    world.api.stop_server("admin")


def explorer(page, base: str, file: str) -> None:
    page.goto(base + "data-explorer/?" + urllib.parse.urlencode({"file": file}))
    page.get_by_text("Data Explorer").first.wait_for()


def flags(page) -> dict:
    return page.evaluate(f"() => ({{{', '.join(f'{f}: window.{f}' for f in FLAGS)}}})")


def test_data_explorer_payloads_stay_text(workspace, chromium):
    from playwright.sync_api import expect

    hub, base = workspace
    context = chromium.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(hub.url + "hub/login")
        sign_in(page, "admin", hub.admin_password)
        page.wait_for_url(re.compile(r"/hub/"))

        # reflected: the link's path is not echoed, the notification says what failed
        explorer(page, base, URL_PAYLOAD)
        # (the notification itself; notyf repeats its text in a screen-reader announcer)
        notice = page.locator(".notyf__message", has_text="The file in this link cannot be opened")
        expect(notice).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1000)
        assert flags(page) == dict.fromkeys(FLAGS)
        assert "onerror=window.__xss_url" not in page.locator("body").inner_text()

        # stored, a file name: the error about the file names it as text
        explorer(page, base, "~/" + FILE_PAYLOAD)
        shown = page.get_by_text("Could not open ~/" + FILE_PAYLOAD, exact=False)
        expect(shown).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1000)
        assert flags(page) == dict.fromkeys(FLAGS)

        # stored, a column name: the table's header shows it as text
        explorer(page, base, "~/columns.csv")
        title = page.locator(".tabulator-col-title", has_text=COLUMN_PAYLOAD)
        expect(title).to_have_text(COLUMN_PAYLOAD, timeout=30_000)
        page.wait_for_timeout(1000)
        assert flags(page) == dict.fromkeys(FLAGS)
    finally:
        context.close()
