"""``labspace data ...`` against a real hub running the data service (tier 3):
the CLI as an admin and as users run it, over the hub's proxy, with their own
API tokens.

One hub (local backend) serves the module, with the issue's two host datasets
(``harness.lab_datasets``: lab-a may read ``genomes`` and write
``lab-a-scratch``). Ann is in lab-a, Oli is not. The tests run in file order on
the shared hub; each uses users and grants of its own or says what it needs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from harness import environ, free_port, lab_datasets, service_client, wait_for, workspace_pids

from labspace.extensions import datasets

pytestmark = [pytest.mark.e2e]

LABSPACE = str(Path(sys.executable).parent / "labspace")


@pytest.fixture(scope="module")
def world(module_hub_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    ann, oli = (f"{n}{secrets.token_hex(3)}" for n in ("ann", "oli"))

    def edit(settings):
        settings["data"] = {
            "enabled": True,
            "port": free_port(),
            "roots": [str(root)],
            "datasets": lab_datasets(root),
        }

    hub, api = module_hub_factory(edit)
    for name in (ann, oli):
        api.create_user(name)
    api.add_to_group("lab-a", ann)
    tokens = {who: api.token(name, "data cli") for who, name in (("ann", ann), ("oli", oli))}
    tokens["admin"] = api.token("admin", "data cli")
    with service_client(hub.url, tokens["admin"], "data") as admin:
        # the hub is up before its services answer their API (503 while starting)
        wait_for(lambda: admin.get("datasets").status_code == 200, 90, 1, what="the data API")
    return {"hub": hub, "api": api, "ann": ann, "oli": oli, "tokens": tokens}


def cli(world, who: str, *args: str) -> subprocess.CompletedProcess:
    """``labspace <args>`` as ``who`` runs it (LABSPACE_URL and LABSPACE_TOKEN)."""
    env = {**os.environ, "LABSPACE_URL": world["hub"].url, "LABSPACE_TOKEN": world["tokens"][who]}
    env["COLUMNS"] = "200"  # a wide terminal: table rows stay on one line
    return subprocess.run([LABSPACE, *args], capture_output=True, text=True, env=env, timeout=60)


def listed(world, who: str) -> dict[str, str]:
    done = cli(world, who, "data", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {d["id"]: d["level"] for d in json.loads(done.stdout)}


def test_each_person_lists_what_they_may_use(world):
    done = cli(world, "admin", "data", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0].split() == [
        "id",
        "title",
        "kind",
        "level",
        "mount_path",
        "size",
    ]
    assert "genomes" in done.stdout and "lab-a-scratch" in done.stdout
    assert "~/data/genomes" in done.stdout  # the local backend: a link in the home
    assert listed(world, "ann") == {"genomes": "read", "lab-a-scratch": "write"}
    assert listed(world, "oli") == {}


def test_a_dataset_without_a_grant_is_a_404_line(world):
    done = cli(world, "oli", "data", "show", "genomes")
    assert done.returncode == 1
    assert done.stderr.startswith("error: 404: ") and done.stderr.count("\n") == 1
    assert world["tokens"]["oli"] not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_grant_audit_revoke(world):
    oli = world["oli"]
    reason = f"joins the genome study ({secrets.token_hex(2)})"
    done = cli(
        world, "admin", "data", "grant", "genomes", "--user", oli, "--level", "read",
        "--reason", reason,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"genomes: user {oli} may read (from their next start)\n"
    assert listed(world, "oli") == {"genomes": "read"}

    done = cli(world, "admin", "data", "show", "genomes", "--json")
    grants = {
        (g["subject_type"], g["subject"]): g["level"] for g in json.loads(done.stdout)["grants"]
    }
    assert grants == {("group", "lab-a"): "read", ("user", oli): "read"}

    done = cli(world, "admin", "data", "revoke", "genomes", "--user", oli, "--reason", "study over")
    assert done.returncode == 0, done.stderr
    assert listed(world, "oli") == {}

    done = cli(world, "admin", "data", "audit", "--user", oli, "--csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["kind"], r["actor"], r["before"], r["after"], r["reason"]) for r in rows] == [
        ("grant", "admin", "read", "", "study over"),
        ("grant", "admin", "", "read", reason),
    ]  # newest first
    done = cli(world, "admin", "data", "audit", "--user", oli)
    assert "none -> read" in done.stdout and "read -> none" in done.stdout


def test_users_cannot_change_grants_or_read_the_audit(world):
    for args in (
        ("grant", "genomes", "--user", world["oli"], "--level", "write", "--reason", "me"),
        ("revoke", "genomes", "--group", "lab-a", "--reason", "why not"),
        ("audit",),
    ):
        done = cli(world, "ann", "data", *args)
        assert done.returncode == 1, done.stdout
        assert done.stderr.startswith("error: 403: "), done.stderr


def workspace_datasets(world, name: str) -> str:
    """``LABSPACE_DATASETS`` of ``name``'s running local workspace (its process's
    environment, its working folder the home)."""
    home = Path(world["hub"].settings["data_dir"]) / "users" / name
    for pid in workspace_pids(home):
        with contextlib.suppress(OSError):
            found = environ(pid).get(datasets.ENV)
            if found:
                return found
    raise AssertionError(f"no workspace process of {name} with {datasets.ENV}")


def test_a_start_is_in_the_audit_and_the_workspace_opens_its_datasets(world, monkeypatch):
    """Ann's workspace start is recorded with her datasets and levels, the CLI
    shows it to the admin, and in the workspace ``labspace.extensions.datasets``
    reads what the hub announced and opens the folders."""
    world["api"].start_server(world["ann"], timeout=180)
    try:
        monkeypatch.setenv(datasets.ENV, workspace_datasets(world, world["ann"]))
        given = {d["id"]: (d["kind"], d["level"]) for d in datasets.datasets()}
        assert given == {"genomes": ("host", "read"), "lab-a-scratch": ("host", "write")}
        assert datasets.filesystem("genomes").ls("", detail=False) == ["README.txt"]
        assert datasets.filesystem("genomes").cat("README.txt") == b"reference genomes\n"
        done = cli(world, "admin", "data", "audit", "--user", world["ann"], "--json")
        assert done.returncode == 0, done.stderr
        starts = [e for e in json.loads(done.stdout) if e["kind"] == "start"]
        assert starts, done.stdout
        got = {d["id"]: d["level"] for d in starts[0]["datasets"]}
        assert got == {"genomes": "read", "lab-a-scratch": "write"}
        done = cli(world, "admin", "data", "audit", "--user", world["ann"])
        assert "genomes (read), lab-a-scratch (write)" in done.stdout
    finally:
        world["api"].stop_server(world["ann"])
