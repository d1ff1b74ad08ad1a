"""The data service on a real hub with the docker backend (tier 4): the issue's
first "Done when", as users and an admin meet it over the REST APIs.

One hub serves the module, with two host datasets under a ``data.roots`` root:
``genomes`` (group ``lab-a`` may read) and ``lab-a-scratch`` (``lab-a`` may
write). Ana (in lab-a) gets ``/data/genomes`` read-only (a write fails with
EROFS) and ``/data/lab-a-scratch`` writable; Oli (outside lab-a) gets neither.
An admin revokes the genomes grant through the data service's API; while Ana's
workspace runs it is listed as holding a revoked grant, and at her next start
the dataset is gone. The audit shows both of her starts and the grant change,
in order. ``LABSPACE_DATASETS`` in a container names what was granted and
nothing secret; the read key of ``survey`` (an s3 dataset lab-a may read) is
a 0600 file of the workspace's user at /run/labspace, and nowhere in the
home, in what Docker keeps about the container, in the audit or the hub's log.

The tests run in file order on the shared hub (each says what it needs).
Needs Docker and ``make images``; skipped without them (failed under CI=true).
Every container and volume the module may create is removed by name at the end.
"""

from __future__ import annotations

import json
import re
import secrets

import docker_env
import pytest
from docker_env import DockerObjects, run, start, stop, wait_ready
from harness import free_port, lab_datasets, service_client, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REASON = "genomes licence ended for lab-a (ticket 4711)"
# the read key of an s3 dataset, given to the hub as labspace.yaml names it (an
# environment variable); no S3 server is asked in this module: what matters here
# is how the key reaches the container, and where it never goes
SURVEY_READ = {"access_key_id": "AKIADOCKERREAD", "secret_access_key": secrets.token_hex(20)}
SECRET = SURVEY_READ["secret_access_key"]
CREDENTIALS_FILE = "/run/labspace/data-credentials.ini"


SURVEY = {
    "id": "survey",
    "title": "Field survey",
    "kind": "s3",
    "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "labspace-test", "prefix": "survey/"},
    "credentials": {"read": {"env": "SURVEY_READ"}},
    "grants": [{"group": "lab-a", "level": "read"}],
}


@pytest.fixture(scope="module")
def world(need, module_hub_factory, tmp_path_factory):
    """The module's hub (docker backend, the two datasets), users Ana (in lab-a)
    and Oli, and API tokens for them and for the admin."""
    why = docker_env.problem()
    need("Docker", why is None, why or "")
    root = tmp_path_factory.mktemp("datasets")
    ana, oli = (f"{n}{secrets.token_hex(3)}" for n in ("ana", "oli"))
    objects = DockerObjects()
    for name in (ana, oli):
        objects.containers.add(f"labspace-{name}")
        objects.volumes.add(f"labspace-home-{name}")
        objects.container_prefixes.add(f"labspace--home-init--{name}--")

    def edit(settings):
        settings["backend"] = {
            "type": "docker",
            "image": docker_env.WORKSPACE_IMAGE,
            "docker": {"network": "host"},
        }
        settings["data"] = {
            "enabled": True,
            "port": free_port(),
            "roots": [str(root)],
            "datasets": [*lab_datasets(root), SURVEY],
        }

    hub = api = None
    try:
        hub, api = module_hub_factory(edit, {"SURVEY_READ": json.dumps(SURVEY_READ)})
        for name in (ana, oli):
            api.create_user(name)
        api.add_to_group("lab-a", ana)
        users = {"ana": ana, "oli": oli, "admin": "admin"}
        tokens = {who: api.token(name, "data e2e") for who, name in users.items()}
        with service_client(hub.url, tokens["admin"], "data") as admin:
            # the hub is up before its services answer their API (503 while starting)
            wait_for(lambda: admin.get("datasets").status_code == 200, 90, 1, what="the data API")
        yield {"hub": hub, "api": api, "root": root, "ana": ana, "oli": oli, "tokens": tokens}
    finally:
        if api is not None:
            api.stop_all()
        if hub is not None:
            hub.stop()
        left = objects.cleanup()
        assert not left, f"left behind after the hub stopped: {left}"


def data(world, who: str):
    return service_client(world["hub"].url, world["tokens"][who], "data")


def mounts_of(container) -> dict[str, dict]:
    return {m["Destination"]: m for m in container.attrs["Mounts"]}


def env_of(container) -> dict[str, str]:
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def announced(container) -> dict[str, dict]:
    """``LABSPACE_DATASETS`` as the workspace's own processes see it, by id."""
    code, out = run(container, ["printenv", "LABSPACE_DATASETS"])
    assert code == 0, f"no LABSPACE_DATASETS in the workspace: {out}"
    listed = json.loads(out)
    assert isinstance(listed, list), listed
    return {d["id"]: d for d in listed}


def write_errno(container, path: str) -> str:
    """Open ``path`` for writing as the workspace's user: "ok" or the errno."""
    code = (
        "import sys\n"
        "try:\n"
        f"    open({path!r}, 'w').write('x')\n"
        "except OSError as e:\n"
        "    print(e.errno, e.strerror); sys.exit(0)\n"
        "print('ok')\n"
    )
    status, out = run(container, ["python3", "-c", code])
    assert status == 0, out
    return out


def start_and_get(world, objects: DockerObjects, name: str):
    r = start(world["api"], name)
    assert r.status_code in (201, 202), r.text
    wait_ready(world["api"], name)
    container = objects.container(f"labspace-{name}")
    assert container is not None and container.status == "running", name
    return container


@pytest.fixture
def objects():
    found = DockerObjects()
    yield found
    found.client.close()


def audit(world, **query) -> list[dict]:
    with data(world, "admin") as admin:
        r = admin.get("audit", params={"limit": 500, **query})
    assert r.status_code == 200, r.text
    return r.json()


def starts_of(events: list[dict], user: str) -> list[dict]:
    return [e for e in events if e["kind"] == "start" and e["user"] == user]


def levels(event: dict) -> dict[str, str]:
    return {d["id"]: d["level"] for d in event["datasets"]}


# -- Ana in lab-a, Oli outside ---------------------------------------------------


def test_lab_a_gets_genomes_read_only_and_scratch_writable(world, objects):
    ana, root = world["ana"], world["root"]
    with data(world, "ana") as c:
        r = c.get("me/datasets")
    assert r.status_code == 200, r.text
    mine = {d["id"]: d for d in r.json()}
    assert {k: d["level"] for k, d in mine.items()} == {
        "genomes": "read",
        "lab-a-scratch": "write",
        "survey": "read",
    }
    assert mine["genomes"]["mount_path"] == "/data/genomes"
    assert mine["lab-a-scratch"]["mount_path"] == "/data/lab-a-scratch"
    assert mine["survey"]["url"] == "s3://labspace-test/survey/"

    box = start_and_get(world, objects, ana)
    mounts = mounts_of(box)
    genomes, scratch = mounts.get("/data/genomes"), mounts.get("/data/lab-a-scratch")
    assert genomes and scratch, sorted(mounts)
    assert (genomes["Type"], genomes["Source"], genomes["RW"]) == (
        "bind",
        str(root / "genomes"),
        False,
    )
    assert (scratch["Type"], scratch["Source"], scratch["RW"]) == (
        "bind",
        str(root / "lab-a-scratch"),
        True,
    )
    # what the user's code meets: reads work, a write to the read grant is EROFS
    assert run(box, ["cat", "/data/genomes/README.txt"]) == (0, "reference genomes")
    assert write_errno(box, "/data/genomes/mine.txt") == "30 Read-only file system"
    assert not (root / "genomes" / "mine.txt").exists()
    assert write_errno(box, "/data/lab-a-scratch/from-ana.txt") == "ok"
    written = root / "lab-a-scratch" / "from-ana.txt"
    assert written.read_text() == "x" and written.stat().st_uid == 1000

    # LABSPACE_DATASETS names what was granted, at its level, with no secret in it
    shown = announced(box)
    assert {k: (v["level"], v["path"], v["kind"]) for k, v in shown.items()} == {
        "genomes": ("read", "/data/genomes", "host"),
        "lab-a-scratch": ("write", "/data/lab-a-scratch", "host"),
        "survey": ("read", "", "s3"),
    }
    survey = shown["survey"]
    assert (survey["url"], survey["profile"], survey["credentials_file"]) == (
        "s3://labspace-test/survey/",
        "labspace-survey",
        CREDENTIALS_FILE,
    )

    # the read key is a file of the workspace's user only, outside the home, and
    # nowhere in what Docker keeps about the container (environment, command, labels)
    assert run(box, ["stat", "-c", "%u %a", CREDENTIALS_FILE]) == (0, "1000 600")
    code, ini = run(box, ["cat", CREDENTIALS_FILE])
    assert code == 0 and f"aws_secret_access_key = {SECRET}" in ini, ini
    assert "[labspace-survey]" in ini and "aws_access_key_id = AKIADOCKERREAD" in ini
    assert run(box, ["grep", "-rlF", SECRET, "/home/jovyan"])[0] == 1  # 1: not found
    assert SECRET not in json.dumps(box.attrs)


def test_outsider_gets_neither(world, objects):
    oli = world["oli"]
    with data(world, "oli") as c:
        assert c.get("me/datasets").json() == []
        for dataset in ("genomes", "lab-a-scratch"):
            r = c.get(f"datasets/{dataset}")
            assert r.status_code == 404, r.text

    box = start_and_get(world, objects, oli)
    assert not [m for m in mounts_of(box) if m.startswith("/data")], mounts_of(box)
    for path in ("/data/genomes", "/data/lab-a-scratch"):
        code, out = run(box, ["test", "-e", path])
        assert code != 0, f"{path} is there for an outsider"
    assert json.loads(env_of(box).get("LABSPACE_DATASETS", "[]")) == []
    assert run(box, ["test", "-e", CREDENTIALS_FILE])[0] != 0
    stop(world["api"], oli)


# -- revocation -----------------------------------------------------------------


def test_revoked_grant_is_held_until_the_next_start(world, objects):
    api, ana = world["api"], world["ana"]
    if not api.user(ana).json()["servers"]:  # run alone: Ana's first start
        start_and_get(world, objects, ana)
    with data(world, "admin") as admin:
        r = admin.delete("datasets/genomes/grants/group/lab-a", params={"reason": REASON})
        assert r.status_code == 204, r.text
        r = admin.get("datasets/genomes/grants")
        assert r.status_code == 200, r.text
        assert [g for g in r.json() if g["subject"] == "lab-a"] == []

        # the running workspace still holds it: the admin sees it and may stop it
        r = admin.get("holders")
        assert r.status_code == 200, r.text
        held = [(h["user"], h["server"], h["dataset"], h["held"], h["now"]) for h in r.json()]
        assert held == [(ana, "", "genomes", "read", None)], r.json()

        # the admin page's button: stop that workspace through the data service
        r = admin.post(f"holders/{ana}/stop", json={"server": ""})
        assert r.status_code == 202, r.text
    wait_for(lambda: not api.user(ana).json()["servers"], 60, what=f"{ana} stopped")
    api.started.discard(ana)

    # the next start has no genomes; the scratch grant is untouched
    box = start_and_get(world, objects, ana)
    mounts = mounts_of(box)
    assert "/data/genomes" not in mounts, sorted(mounts)
    assert mounts["/data/lab-a-scratch"]["RW"] is True
    assert run(box, ["test", "-e", "/data/genomes"])[0] != 0
    assert set(announced(box)) == {"lab-a-scratch", "survey"}
    with data(world, "admin") as admin:
        assert admin.get("holders").json() == []
    with data(world, "ana") as c:
        assert sorted(d["id"] for d in c.get("me/datasets").json()) == ["lab-a-scratch", "survey"]
    stop(api, ana)


def test_audit_shows_both_starts_and_the_change(world):
    ana, oli = world["ana"], world["oli"]
    events = audit(world)  # newest first
    ana_starts = starts_of(events, ana)
    assert len(ana_starts) >= 2, events
    before, after = ana_starts[-1], ana_starts[0]
    assert levels(before) == {"genomes": "read", "lab-a-scratch": "write", "survey": "read"}
    assert levels(after) == {"lab-a-scratch": "write", "survey": "read"}, after
    assert before["server"] == after["server"] == ""
    (oli_start,) = starts_of(events, oli)
    assert oli_start["datasets"] == []

    # (the grants labspace.yaml seeds are recorded too, by actor "settings")
    changes = [e for e in events if e["kind"] == "grant" and e["actor"] != "settings"]
    (change,) = changes
    assert (change["actor"], change["dataset"], change["reason"]) == ("admin", "genomes", REASON)
    assert (change["subject"], change["before"], change["after"]) == ("group:lab-a", "read", None)
    # in order: the first start, the revocation, the second start
    assert events.index(after) < events.index(change) < events.index(before)

    # the filters give the same story
    assert starts_of(audit(world, user=ana), ana) == ana_starts
    assert change in audit(world, dataset="genomes")
    assert {e["actor"] for e in events if e["kind"] == "grant"} == {"settings", "admin"}
    assert [(e["kind"], e["user"]) for e in audit(world, user=oli)] == [("start", oli)]
    # the audit and the hub's log (the data service's own lines included) hold no secret
    log = world["hub"].log()
    assert re.search(r"\[I [^\]]* data\] 200 GET /services/data/api/audit", log)
    assert SECRET not in json.dumps(events) and SECRET not in log
