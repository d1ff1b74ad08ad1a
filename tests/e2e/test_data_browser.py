"""The data service's pages in a real browser (Debian's Chromium through
Playwright) on a real hub with the local backend and the data service on.

One hub serves the module. Datasets under a ``data.roots`` root: ``genomes``
(lab-a reads), ``lab-a-scratch`` (lab-a writes), ``html-title`` (lab-a reads;
its title and description are HTML that must show as text) and ``archive``
(granted to lab-z only, which nobody is in), and the s3 dataset ``climate``
(Ann writes). Ann is in lab-a, Bea in no group.

- Ann's My data lists her three datasets with their level and where they
  appear (``~/data/<id>`` on the local backend), says that read-only cannot be
  enforced here, never shows ``archive``, and the HTML title runs no script;
  the admin page is refused to her.
- Bea's My data says she has no datasets and what to do.
- The admin adds a grant on the admin page (with a reason), sees it in the
  audit trail (filtered, and in the CSV download); an API refusal (a path
  outside the roots) is shown on the page; the API refuses the session cookie
  without the page's XSRF token.
- Ann's running workspace holds a grant the admin then removes on the page: it
  is listed as revoked-but-running, and the Stop button stops it.

Screenshots: tests/artifacts/data-*.png. The tests run in file order.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from pathlib import Path

import pytest
from browser import VIEWPORT, shoot, sign_in
from harness import free_port, lab_datasets, service_client, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "data-pages-pw"  # noqa: S105 (a test hub's shared user password)
HTML_TITLE = "<img src=x onerror=\"document.title='pwned'\">Sequencing <b>runs</b>"
HTML_DESCRIPTION = "<script>document.title='pwned'</script>raw & <i>unsafe</i>"
GRANT_REASON = "ticket 31: lab-b joins the genomes project"
CHANGE_REASON = "ticket 32: lab-b annotates the genomes"
REVOKE_REASON = "genomes licence ended for lab-a"


@pytest.fixture(scope="module")
def slow_machine_expect():
    """Playwright's expect waits 20 s in this module (5 s by default: a loaded
    2-core machine answers slower), and 5 s again after it."""
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def world(module_hub_factory, tmp_path_factory, chromium, slow_machine_expect):
    root = tmp_path_factory.mktemp("datasets")
    ann, bea = (f"{n}{secrets.token_hex(3)}" for n in ("ann", "bea"))
    datasets = lab_datasets(root)
    datasets[0]["size"] = "2G"  # the settings' size is shown (host datasets without one: measured)
    for extra in ("html-title", "archive", "notes"):
        (root / extra).mkdir()
        (root / extra / "README.txt").write_text(f"{extra}\n")
    datasets += [
        {
            "id": "html-title",
            "title": HTML_TITLE,
            "description": HTML_DESCRIPTION,
            "kind": "host",
            "source": str(root / "html-title"),
            "grants": [{"group": "lab-a", "level": "read"}],
        },
        {
            "id": "climate",
            "title": "Climate runs",
            "description": "Model output on the object store",
            "kind": "s3",
            "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "climate-bucket", "prefix": "runs/"},
            "grants": [{"user": ann, "level": "write"}],
        },
        {
            "id": "archive",
            "title": "Closed archive",
            "kind": "host",
            "source": str(root / "archive"),
            "grants": [{"group": "lab-z", "level": "read"}],
        },
    ]

    def edit(settings):
        settings["auth"] = {"user_password": PASSWORD}
        settings["data"] = {
            "enabled": True,
            "port": free_port(),
            "roots": [str(root)],
            "datasets": datasets,
        }

    hub, api = module_hub_factory(edit)
    for name in (ann, bea):
        api.create_user(name)
    api.add_to_group("lab-a", ann)
    token = api.token("admin", "data pages")
    with service_client(hub.url, token, "data") as admin:
        # the hub is up before its services answer their API (503 while starting)
        wait_for(lambda: admin.get("datasets").status_code == 200, 90, 1, what="the data API")
    return {"hub": hub, "api": api, "ann": ann, "bea": bea, "root": root, "token": token}


def signed_in(world, chromium, name: str):
    """A new browser page of ``name``, signed in to the hub."""
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(world["hub"].url + "hub/login")
    password = world["hub"].admin_password if name == "admin" else PASSWORD
    sign_in(page, name, password)
    page.wait_for_url(re.compile(r"/hub/"))
    return page


def test_my_data_lists_what_ann_may_use(world, chromium):
    from playwright.sync_api import expect

    page = signed_in(world, chromium, world["ann"])
    page.goto(world["hub"].url + "services/data/")
    cards = page.locator(".dataset-card")
    expect(cards).to_have_count(4)
    expect(page.locator("a.nav-link.active")).to_have_attribute("href", "/services/data/")
    expect(page.locator('a.nav-link[href="/services/data/admin"]')).to_have_count(0)
    genomes = page.locator('.dataset-card[data-dataset="genomes"]')
    expect(genomes.locator(".ds-title")).to_have_text("Reference genomes")
    expect(genomes.locator("[data-level]")).to_have_text("read only")
    expect(genomes.locator(".ds-path")).to_have_text("~/data/genomes")
    expect(genomes.locator(".ds-size")).to_have_text(re.compile(r"^2\.\d GB$"))
    scratch = page.locator('.dataset-card[data-dataset="lab-a-scratch"]')
    expect(scratch.locator("[data-level]")).to_have_text("read and write")
    expect(scratch.locator(".ds-path")).to_have_text("~/data/lab-a-scratch")
    # s3: its URL and how to open it in a notebook
    climate = page.locator('.dataset-card[data-dataset="climate"]')
    expect(climate.locator("[data-level]")).to_have_text("read and write")
    expect(climate.locator(".ds-url")).to_have_text("s3://climate-bucket/runs/")
    expect(climate.locator("pre")).to_contain_text(
        "from labspace.extensions.datasets import filesystem"
    )
    expect(climate.locator("pre")).to_contain_text('fs = filesystem("climate")')
    # the local backend: said plainly that read-only cannot be enforced here
    expect(page.locator("#local-note")).to_contain_text("Read-only is not enforced")
    expect(page.locator("#local-note")).to_contain_text("without root cannot make a read-only view")
    # the ungranted dataset is nowhere
    expect(page.locator('.dataset-card[data-dataset="archive"]')).to_have_count(0)
    expect(page.get_by_text("Closed archive")).to_have_count(0)
    # a title and description made of HTML are shown as text, and run nothing
    html = page.locator('.dataset-card[data-dataset="html-title"]')
    expect(html.locator(".ds-title")).to_have_text(HTML_TITLE)
    expect(html.locator(".ds-description")).to_have_text(HTML_DESCRIPTION)
    assert html.locator("img, b, script, i").count() == 0
    assert page.title() == "My data · Labspace"
    shoot(page, "data-my-data")
    assert not page.errors, page.errors

    # the admin page is not for her
    r = page.goto(world["hub"].url + "services/data/admin")
    assert r.status == 403
    refused = page.locator("#error")
    expect(refused).to_contain_text("This page is not for you")
    expect(refused).to_contain_text("custom:labspace-data:admin")
    expect(page.locator("nav.ls-nav")).to_contain_text(world["ann"])  # in the hub's look
    shoot(page, "data-admin-refused")
    page.context.close()


def test_my_data_without_datasets_says_what_to_do(world, chromium):
    from playwright.sync_api import expect

    page = signed_in(world, chromium, world["bea"])
    page.goto(world["hub"].url + "services/data/")
    empty = page.locator("#empty")
    expect(empty).to_contain_text("You have no datasets yet")
    expect(empty).to_contain_text("Ask an admin")
    expect(page.locator(".dataset-card")).to_have_count(0)
    expect(page.locator("#groups")).to_have_text("Your groups: none")
    shoot(page, "data-my-data-empty")
    assert not page.errors, page.errors
    page.context.close()


def test_admin_adds_a_grant_and_sees_it_in_the_audit(world, chromium):
    from playwright.sync_api import expect

    hub = world["hub"]
    page = signed_in(world, chromium, "admin")
    page.goto(hub.url + "services/data/admin")
    rows = page.locator("#datasets-table tbody tr[data-dataset]")
    expect(rows).to_have_count(5)
    expect(page.locator("a.nav-link.active")).to_have_attribute("href", "/services/data/admin")
    html_row = page.locator('#datasets-table tr[data-dataset="html-title"]')
    expect(html_row.locator(".ds-title")).to_have_text(HTML_TITLE)
    assert html_row.locator("img, b, script").count() == 0
    genomes = page.locator('#datasets-table tr[data-dataset="genomes"]')
    expect(genomes).to_contain_text("from labspace.yaml")
    shoot(page, "data-admin-datasets")

    # the API's refusal is shown: a host dataset outside data.roots
    page.locator("#f-id").fill("outside")
    page.locator("#f-title").fill("Outside the roots")
    page.locator("#f-source").fill("/etc")
    page.get_by_role("button", name="Add dataset").click()
    expect(page.locator("#alert")).to_have_class(re.compile("alert-danger"))
    expect(page.locator("#alert")).to_contain_text("source")
    expect(rows).to_have_count(5)

    # the session cookie alone, without the page's XSRF token, cannot change a grant
    r = page.request.post(
        hub.url + "services/data/api/datasets/genomes/grants",
        data='{"group": "lab-x", "level": "write"}',
    )
    assert r.status == 403, r.text()
    assert "xsrf" in r.json()["message"].lower()

    # add a grant on the Grants tab, with a reason
    page.locator('#datasets-table tr[data-dataset="genomes"]').get_by_role(
        "button", name="Grants"
    ).click()
    expect(page.locator("#tab-grants")).to_be_visible()
    expect(page.locator('#grants-table tr[data-subject="group:lab-a"]')).to_be_visible()
    page.locator("#a-type").select_option("group")
    page.locator("#a-name").fill("lab-b")
    page.locator("#a-level").select_option("read")
    page.get_by_role("button", name="Grant", exact=True).click()  # no reason yet: refused here
    expect(page.locator("#alert")).to_contain_text("Give a reason")
    page.locator("#g-reason").fill(GRANT_REASON)
    page.get_by_role("button", name="Grant", exact=True).click()
    expect(page.locator("#alert")).to_contain_text("group lab-b may use genomes (read)")
    row = page.locator('#grants-table tr[data-subject="group:lab-b"]')
    expect(row).to_be_visible()
    expect(row.locator("select")).to_have_value("read")
    expect(row).to_contain_text("admin")
    # every grant by group and user: what each may use, over all datasets
    lab_a = page.locator('#subjects-table tr[data-subject="group:lab-a"]')
    for dataset in ("genomes", "lab-a-scratch", "html-title"):
        expect(lab_a.locator(f'[data-dataset="{dataset}"]')).to_be_visible()
    expect(lab_a.locator('[data-dataset="lab-a-scratch"]')).to_contain_text("read and write")
    ann = page.locator(f'#subjects-table tr[data-subject="user:{world["ann"]}"]')
    expect(ann.locator('[data-dataset="climate"]')).to_contain_text("read and write")
    lab_b = page.locator('#subjects-table tr[data-subject="group:lab-b"]')
    expect(lab_b).to_contain_text("genomes")
    shoot(page, "data-admin-grants")

    # change its level with the row's select, with a reason of its own
    page.locator("#g-reason").fill(CHANGE_REASON)
    row.locator("select").select_option("write")
    expect(page.locator("#alert")).to_contain_text("group lab-b now has write access to genomes")
    expect(row.locator("select")).to_have_value("write")

    # the audit trail shows it, filtered by dataset; and in the CSV download
    page.get_by_role("button", name="Audit trail").click()
    page.locator("#q-dataset").select_option("genomes")
    page.locator("#audit-filter").get_by_role("button", name="Show").click()
    event = page.locator("#audit-table tbody tr", has_text=GRANT_REASON)
    expect(event).to_have_count(1)
    expect(event).to_contain_text("lab-b")
    expect(event).to_contain_text("read")
    expect(event).to_contain_text("admin")
    expect(page.locator("#audit-table tbody tr", has_text="html-title")).to_have_count(0)
    changed = page.locator("#audit-table tbody tr", has_text=CHANGE_REASON)
    expect(changed).to_contain_text("read → write")
    shoot(page, "data-admin-audit")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(info.value.path()).read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(text)))
    assert len(table) >= 2, text
    assert any(GRANT_REASON in line for line in table[1:]), text
    assert "html-title" not in text  # the download keeps the page's filter

    # a time filter: nothing recorded from 2099 on
    page.locator("#q-since").fill("2099-01-01T00:00")
    page.locator("#audit-filter").get_by_role("button", name="Show").click()
    expect(page.locator("#audit-table tbody")).to_have_text("Nothing recorded for these filters.")
    assert not page.errors, page.errors

    # the API agrees: lab-b holds write on genomes
    with service_client(hub.url, world["token"], "data") as admin:
        grants = admin.get("datasets/genomes/grants").json()
    assert {"subject_type": "group", "subject": "lab-b", "level": "write"}.items() <= next(
        g for g in grants if g["subject"] == "lab-b"
    ).items()
    page.context.close()


def test_admin_manages_datasets_and_s3_credentials(world, chromium):
    from playwright.sync_api import expect

    hub = world["hub"]
    page = signed_in(world, chromium, "admin")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(hub.url + "services/data/admin")
    rows = page.locator("#datasets-table tbody tr[data-dataset]")
    expect(rows).to_have_count(5)

    # add a host dataset with the form, then change its title (a PATCH of that field)
    page.locator("#f-id").fill("notes")
    page.locator("#f-title").fill("Lab notes")
    page.locator("#f-source").fill(str(world["root"] / "notes"))
    page.locator("#f-tags").fill("notes, lab")
    page.get_by_role("button", name="Add dataset").click()
    expect(page.locator("#alert")).to_have_text("notes saved")
    row = page.locator('#datasets-table tr[data-dataset="notes"]')
    expect(row.locator(".ds-title")).to_have_text("Lab notes")
    expect(page.locator("#editor-title")).to_have_text("Edit notes")
    page.locator("#f-title").fill("Lab notebooks")
    page.get_by_role("button", name="Save changes").click()
    expect(row.locator(".ds-title")).to_have_text("Lab notebooks")
    with service_client(hub.url, world["token"], "data") as admin:
        notes = admin.get("datasets/notes").json()
    assert (notes["title"], notes["tags"]) == ("Lab notebooks", ["notes", "lab"])

    # an s3 dataset's read credential: saved, said to be set, never shown again
    # (a dataset of labspace.yaml is changed there: viewed here, not edited or deleted)
    climate = page.locator('#datasets-table tr[data-dataset="climate"]')
    expect(climate.get_by_role("button", name="Delete")).to_have_count(0)
    climate.get_by_role("button", name="View").click()
    expect(page.locator("#editor-title")).to_contain_text("defined in labspace.yaml")
    expect(page.locator("#f-title")).to_be_disabled()
    expect(page.locator("#save")).to_be_hidden()
    expect(page.locator("#credentials")).to_be_visible()
    expect(page.locator("#credentials-state")).to_contain_text("Read credential: not set")
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    page.locator("#c-level").select_option("read")
    page.locator("#c-key").fill("climate-reader")
    page.locator("#c-secret").fill(secret)
    page.get_by_role("button", name="Save credential").click()
    expect(page.locator("#alert")).to_have_text("The read credential of climate is saved")
    expect(page.locator("#credentials-state")).to_contain_text("Read credential: set")
    expect(page.locator("#c-secret")).to_have_value("")
    expect(climate).to_contain_text("credentials: read set, write missing")
    assert secret not in page.content()
    shoot(page, "data-admin-credentials")

    # delete the new dataset (after the confirmation); the form is open again for new ones
    page.get_by_role("button", name="New dataset").click()
    expect(page.locator("#f-title")).to_be_enabled()
    page.locator('#datasets-table tr[data-dataset="notes"]').get_by_role(
        "button", name="Delete"
    ).click()
    expect(page.locator("#alert")).to_have_text("notes deleted")
    expect(rows).to_have_count(5)
    assert not page.errors, page.errors
    page.context.close()


def test_admin_stops_a_workspace_holding_a_revoked_grant(world, chromium):
    from playwright.sync_api import expect

    hub, api, ann = world["hub"], world["api"], world["ann"]
    api.start_server(ann, timeout=180)
    page = signed_in(world, chromium, "admin")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(hub.url + "services/data/admin#grants")
    page.locator("#g-dataset").select_option("genomes")
    row = page.locator('#grants-table tr[data-subject="group:lab-a"]')
    page.locator("#g-reason").fill(REVOKE_REASON)
    row.get_by_role("button", name="Remove").click()
    expect(page.locator("#alert")).to_contain_text("group lab-a may use genomes no more")
    expect(row).to_have_count(0)
    expect(page.locator("#holders-count")).to_have_text("1")  # counted at once, on every tab

    page.get_by_role("button", name=re.compile("Revoked but running")).click()
    holder = page.locator(f'#holders-table tr[data-holder="{ann}/"]')
    expect(holder).to_contain_text("genomes")
    expect(holder.locator("[data-level]").first).to_have_text("read only")
    expect(page.locator("#holders-count")).to_have_text("1")
    shoot(page, "data-admin-holders")
    holder.get_by_role("button", name="Stop").click()
    expect(page.locator("#alert")).to_contain_text(f"{ann}'s server is stopping", timeout=60_000)
    wait_for(lambda: not api.user(ann).json()["servers"], 60, what=f"{ann}'s server stopped")
    api.started.discard(ann)
    page.reload()
    page.get_by_role("button", name=re.compile("Revoked but running")).click()
    expect(page.locator("#holders-table tbody")).to_contain_text("No running workspace")

    # the revocation and the start are in the audit trail
    page.get_by_role("button", name="Audit trail").click()
    page.locator("#q-user").fill(ann)
    page.locator("#audit-filter").get_by_role("button", name="Show").click()
    expect(page.locator('#audit-table tr[data-kind="start"]').first).to_contain_text("genomes")
    assert not page.errors, page.errors
    page.context.close()

    # Ann's My data no longer lists genomes
    page = signed_in(world, chromium, ann)
    page.goto(hub.url + "services/data/")
    expect(page.locator(".dataset-card")).to_have_count(3)
    expect(page.locator('.dataset-card[data-dataset="genomes"]')).to_have_count(0)
    page.context.close()
