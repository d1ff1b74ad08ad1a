"""The data service on a real hub with the local backend (tier 4): the issue's
second "Done when" and its safety rules, as users, an admin and the workspace's
own code meet them.

One hub serves the module (local backend, the data service and the catalog
on), with ``genomes`` (``lab-a`` may read), ``lab-a-scratch`` (``lab-a`` may
write) and ``survey``, an s3 dataset in a real S3 API server (moto's server
mode on 127.0.0.1, authentication enforced, tests/s3server.py): ``lab-a`` may
read it, Wri may write it. Its read credential comes from an environment
variable of the hub, its write credential from a file, as ``labspace.yaml``
names them.

- Ana (in lab-a) finds the host datasets as links under ``~/data/``; her
  workspace's code lists and reads ``survey`` and cannot write it; Wri's writes.
- The credentials reach a workspace as a 0600 profile file outside the home,
  for the grant's level only, gone at stop; no API answer, hub log, workspace
  environment or command line holds a secret value.
- With the data service stopped a start still succeeds, without datasets, and
  its progress says so; the next start has them again.
- Oli (no grant) cannot make a dataset appear: not through ``user_options``,
  another profile, or a catalog standalone app.
- A host path outside ``data.roots`` (elsewhere, ``..``, a sibling prefix, a
  link out) is refused when saved; one that became a link out of its root after
  it was saved is left out at the start by the hub's own check.

Tests run in file order on the shared hub; each starts what it needs.
"""

from __future__ import annotations

import configparser
import csv
import importlib.util
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from harness import (
    demo_app,
    free_port,
    lab_datasets,
    paused,
    progress,
    run_python,
    server_environ,
    service_answers,
    service_client,
    service_pid,
    wait_for,
    workspace_pids,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UNREACHABLE = "The data service is not answering: this workspace starts without datasets"
PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True},
    {"slug": "big", "display_name": "Big"},
    {"slug": "lab", "display_name": "Lab A", "groups": ["lab-a"]},
]
USERS = ("ana", "oli", "wri")


@pytest.fixture(scope="module")
def s3(need, tmp_path_factory):
    """The S3 API server of the module, with a bucket holding ``survey/readme.txt``."""
    missing = [m for m in ("moto", "boto3", "s3fs") if importlib.util.find_spec(m) is None]
    need("moto S3 server", not missing, f"{', '.join(missing)} missing (pip install -e '.[test]')")
    from s3server import S3Server

    with S3Server(tmp_path_factory.mktemp("s3"), bucket="labspace-test", prefix="survey/") as s3:
        s3.put("survey/readme.txt", b"field survey 2026\n")
        yield s3


def keys(s3) -> set[str]:
    """What the bucket holds, asked with the write key."""
    listed = s3.client(s3.write).list_objects_v2(Bucket=s3.bucket, Prefix="survey/")
    return {o["Key"] for o in listed.get("Contents", [])}


@pytest.fixture(scope="module")
def world(module_hub_factory, tmp_path_factory, s3):
    tmp = tmp_path_factory.mktemp("data-local")
    root = tmp / "datasets"
    write_file = tmp / "survey-write.json"
    write_file.write_text(json.dumps(s3.write))
    write_file.chmod(0o600)
    survey = {
        "id": "survey",
        "title": "Field survey",
        "kind": "s3",
        "source": "",
        "s3": {"endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": "survey/", "region": ""},
        "credentials": {"read": {"env": "SURVEY_READ"}, "write": {"file": str(write_file)}},
        "grants": [{"group": "lab-a", "level": "read"}, {"user": "wri", "level": "write"}],
    }

    def edit(settings):
        settings["profiles"] = PROFILES
        settings["data"] = {
            "enabled": True,
            "port": free_port(),
            "roots": [str(root)],
            "datasets": [*lab_datasets(root), survey],
        }
        settings["catalog"] = {
            "enabled": True,
            "port": free_port(),
            "apps": [demo_app("viewer", kind="standalone")],
        }

    hub, api = module_hub_factory(edit, {"SURVEY_READ": json.dumps(s3.read)})
    for name in USERS:
        api.create_user(name)
    api.add_to_group("lab-a", "ana")
    tokens = {name: api.token(name, "data e2e") for name in (*USERS, "admin")}
    w = {"hub": hub, "api": api, "root": root, "tokens": tokens, "s3": s3}
    wait_for(lambda: service_answers(hub.url, tokens["admin"], "data"), 90, 1, what="data API")
    try:
        yield w
    finally:
        for name in USERS:
            api.request("DELETE", f"users/{name}/servers/viewer")


def data(world, who: str) -> httpx.Client:
    return service_client(world["hub"].url, world["tokens"][who], "data")


def home(world, name: str) -> Path:
    return world["hub"].workdir / "data" / "users" / name


def start(world, name: str, body: dict | None = None) -> httpx.Response:
    r = world["api"].request("POST", f"users/{name}/server", json=body)
    if r.status_code in (201, 202):
        world["api"].started.add(name)
    return r


def started(world, name: str, body: dict | None = None) -> dict[str, str]:
    """Start ``name``'s default server; returns its environment."""
    world["api"].start_server(name, 120, body)
    return server_environ(home(world, name))


def running(world, name: str) -> dict[str, str]:
    """The environment of ``name``'s default server, started unless it runs."""
    if name in world["api"].started:
        return server_environ(home(world, name))
    return started(world, name)


def stop(world, name: str) -> None:
    world["api"].stop_server(name)


def announced(env: dict[str, str]) -> dict[str, dict]:
    return {d["id"]: d for d in json.loads(env.get("LABSPACE_DATASETS", "[]"))}


# the workspace's own code on dataset "survey": list, read and try to write, both
# through the client (fsspec, what the Data Explorer uses) and through boto3 with
# the announced profile file
S3_CHECK = """
import json, os, boto3, botocore.exceptions
from labspace.extensions import datasets
out = {}
fs = datasets.filesystem("survey")
out["listed"] = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("%(bucket)s/survey/"))
out["read"] = fs.cat("%(bucket)s/survey/readme.txt").decode()
try:
    fs.pipe("%(bucket)s/survey/by-%(who)s-fsspec.txt", b"written")
    out["fsspec_write"] = "ok"
except PermissionError as e:
    out["fsspec_write"] = "denied"
(entry,) = [d for d in datasets.datasets() if d["id"] == "survey"]
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = entry["credentials_file"]
s3 = boto3.Session(profile_name=entry["profile"]).client("s3", endpoint_url=entry["endpoint_url"])
body = s3.get_object(Bucket="%(bucket)s", Key="survey/readme.txt")["Body"].read().decode()
out["boto_read"] = body
try:
    s3.put_object(Bucket="%(bucket)s", Key="survey/by-%(who)s-boto.txt", Body=b"written")
    out["boto_write"] = "ok"
except botocore.exceptions.ClientError as e:
    out["boto_write"] = e.response["Error"]["Code"]
print(json.dumps(out))
"""


# -- host datasets as links -------------------------------------------------------


def test_grants_appear_as_links_under_data(world):
    env = started(world, "ana")
    root, data_dir = world["root"], home(world, "ana") / "data"
    for dataset in ("genomes", "lab-a-scratch"):
        link = data_dir / dataset
        assert link.is_symlink(), sorted(os.listdir(data_dir)) if data_dir.exists() else None
        assert os.path.realpath(link) == str(root / dataset)
    assert not (data_dir / "survey").exists()  # s3 is reached through its API, not a link

    # the user reads through the workspace's own API; scratch takes a write
    headers = {"Authorization": f"token {world['tokens']['ana']}"}
    url = f"{world['hub'].url}user/ana/api/contents/data/"
    r = httpx.get(url + "genomes/README.txt", headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "reference genomes\n"
    body = {"type": "file", "format": "text", "content": "from ana"}
    r = httpx.put(url + "lab-a-scratch/ana.txt", json=body, headers=headers, timeout=60)
    assert r.status_code == 201, r.text
    assert (root / "lab-a-scratch" / "ana.txt").read_text() == "from ana"

    shown = announced(env)
    assert {k: v["level"] for k, v in shown.items()} == {
        "genomes": "read",
        "lab-a-scratch": "write",
        "survey": "read",
    }
    assert shown["genomes"]["path"] == str(data_dir / "genomes")
    assert shown["survey"]["url"] == f"s3://{world['s3'].bucket}/survey/"
    assert shown["survey"]["endpoint_url"] == world["s3"].endpoint
    assert shown["survey"]["profile"] == "labspace-survey"


# -- s3 by level ------------------------------------------------------------------


def test_s3_read_grant_reads_and_cannot_write(world):
    env = running(world, "ana")
    s3 = world["s3"]
    out = run_python(S3_CHECK % {"bucket": s3.bucket, "who": "ana"}, env, home(world, "ana"))
    assert out["listed"] == ["readme.txt"], out
    assert out["read"] == out["boto_read"] == "field survey 2026\n"
    assert (out["fsspec_write"], out["boto_write"]) == ("denied", "AccessDenied"), out
    assert not [k for k in keys(s3) if "by-ana" in k]


def test_s3_write_grant_writes(world):
    env = started(world, "wri")
    assert {k: v["level"] for k, v in announced(env).items()} == {"survey": "write"}
    s3 = world["s3"]
    out = run_python(S3_CHECK % {"bucket": s3.bucket, "who": "wri"}, env, home(world, "wri"))
    assert out["read"] == out["boto_read"] == "field survey 2026\n"
    assert (out["fsspec_write"], out["boto_write"]) == ("ok", "ok"), out
    assert {"survey/by-wri-fsspec.txt", "survey/by-wri-boto.txt"} <= keys(s3)


# -- secrets ----------------------------------------------------------------------


def profile_file(world, env: dict[str, str]) -> tuple[Path, configparser.ConfigParser]:
    entry = announced(env)["survey"]
    path = Path(entry["credentials_file"])
    parsed = configparser.ConfigParser()
    parsed.read_string(path.read_text())
    return path, parsed


DATA_PATHS = ("datasets", "datasets/survey", "datasets/survey/grants", "me/datasets")
DATA_PATHS += ("audit", "audit?format=csv", "holders", "openapi.json")


def api_answers(world) -> list[str]:
    """Every answer of the data API and the hub API a person or an admin may
    read about the datasets, the grants, the audit and the servers."""
    texts = []
    for who in ("admin", "ana", "wri"):
        with data(world, who) as c:
            texts += [c.get(path).text for path in DATA_PATHS]
    for name in USERS:
        texts.append(world["api"].user(name).text)
    texts.append(world["api"].request("GET", "users?include_stopped_servers=1").text)
    return texts


def test_credentials_reach_the_workspace_only_as_a_private_file(world):
    s3 = world["s3"]
    envs = {name: running(world, name) for name in ("ana", "wri")}
    files = {}
    for name, level in (("ana", "read"), ("wri", "write")):
        path, parsed = profile_file(world, envs[name])
        files[name] = path
        assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
        assert not path.is_relative_to(home(world, name)), path
        section = parsed["labspace-survey"]
        given = getattr(s3, level)
        assert section["aws_access_key_id"] == given["access_key_id"], name
        assert section["aws_secret_access_key"] == given["secret_access_key"], name
    assert files["ana"] != files["wri"]

    # no secret value anywhere else a person, an admin or a log reader sees
    secrets_ = [s3.read["secret_access_key"], s3.write["secret_access_key"]]
    log = world["hub"].log()  # the hub's, its services' and the workspaces' output
    assert re.search(r"\[I [^\]]* data\] 200 GET /services/data/api/", log)
    assert "ana gets datasets " in log  # the hub side's line about the start
    places = {"hub log": log}
    for i, text in enumerate(api_answers(world)):
        places[f"API answer {i}"] = text
    for name, env in envs.items():
        places[f"{name}'s environment"] = json.dumps(env)
        for pid in workspace_pids(home(world, name)):
            places[f"command line of {pid}"] = Path(f"/proc/{pid}/cmdline").read_text()
        for file in home(world, name).rglob("*"):
            if file.is_file() and not file.is_symlink():
                places[str(file)] = file.read_text(errors="replace")
    leaks = [where for where, text in places.items() for s in secrets_ if s in text]
    assert not leaks, leaks

    # the audit CSV is a table with a header row
    with data(world, "admin") as c:
        r = c.get("audit", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert any(row["kind"] == "start" and row["user"] == "wri" for row in rows), rows[:5]

    # a stopped workspace leaves no credential behind
    for name in ("ana", "wri"):
        stop(world, name)
        assert not files[name].exists(), files[name]


def test_downgraded_grant_gets_the_read_key_at_the_next_start(world):
    """Wri's write grant becomes read through the API: his running workspace is
    listed as holding more than he has now; his next start gets the read key."""
    api, s3 = world["api"], world["s3"]
    if "wri" not in api.started:
        started(world, "wri")
    reason = "survey frozen for the 2026 report"
    with data(world, "admin") as admin:
        body = {"user": "wri", "level": "read", "reason": reason}
        r = admin.post("datasets/survey/grants", json=body)
        assert r.status_code == 200, r.text
        assert (r.json()["subject"], r.json()["level"]) == ("wri", "read")
        r = admin.get("holders")
        assert r.status_code == 200, r.text
        held = [(h["user"], h["dataset"], h["held"], h["now"]) for h in r.json()]
        assert held == [("wri", "survey", "write", "read")], r.json()
        # (labspace.yaml's seeding of the grant is recorded too, by actor "settings")
        events = admin.get("audit", params={"user": "wri"}).json()
        (change,) = [e for e in events if e["kind"] == "grant" and e["actor"] == "admin"]
        assert (change["subject"], change["before"], change["after"], change["reason"]) == (
            "user:wri",
            "write",
            "read",
            reason,
        )
    stop(world, "wri")
    env = started(world, "wri")
    assert announced(env)["survey"]["level"] == "read"
    _, parsed = profile_file(world, env)
    assert parsed["labspace-survey"]["aws_access_key_id"] == s3.read["access_key_id"]
    out = run_python(S3_CHECK % {"bucket": s3.bucket, "who": "wri2"}, env, home(world, "wri"))
    assert (out["fsspec_write"], out["boto_write"]) == ("denied", "AccessDenied"), out
    with data(world, "admin") as admin:
        assert admin.get("holders").json() == []
    stop(world, "wri")


# -- the data service down ----------------------------------------------------------


def test_start_without_the_data_service_says_so(world):
    hub, token = world["hub"], world["api"].client.headers["Authorization"].split()[1]
    if "ana" in world["api"].started:
        stop(world, "ana")
    with paused(service_pid(hub, "data")), ThreadPoolExecutor(1) as pool:
        events = pool.submit(progress, hub.url, token, "ana", 180)
        env = started(world, "ana")
        shown = [e["message"] for e in events.result()]
    assert UNREACHABLE in shown, shown
    assert events.result()[-1].get("ready") is True
    assert announced(env) == {}
    data_dir = home(world, "ana") / "data"
    assert not (data_dir / "genomes").exists(), "a link from an earlier start is still there"
    assert "Data service unreachable at ana's start" in hub.log()
    stop(world, "ana")

    # it answers again: the next start has the datasets again
    wait_for(lambda: service_answers(hub.url, world["tokens"]["admin"], "data"), 60)
    env = started(world, "ana")
    assert set(announced(env)) == {"genomes", "lab-a-scratch", "survey"}
    assert (data_dir / "genomes").is_symlink()
    stop(world, "ana")


# -- no grant, no dataset -------------------------------------------------------------


def test_without_a_grant_no_way_makes_a_dataset_appear(world):
    api, oli_home = world["api"], home(world, "oli")
    with data(world, "oli") as c:
        assert c.get("me/datasets").json() == []
        assert c.get("datasets/genomes").status_code == 404

    # user_options: no such option, nothing starts
    for body, key in (
        ({"datasets": ["genomes"]}, "datasets"),
        ({"profile": "small", "mounts": ["genomes"]}, "mounts"),
    ):
        r = start(world, "oli", body)
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith(f"Unknown option '{key}'"), r.text
        assert api.user("oli").json()["servers"] == {}
    # a profile of lab-a's: refused; another profile open to him: no dataset
    r = start(world, "oli", {"profile": "lab"})
    assert r.status_code == 403, r.text
    env = started(world, "oli", {"profile": "big"})
    assert env["LABSPACE_PROFILE"] == "big"
    assert announced(env) == {}
    assert not (oli_home / "data" / "genomes").exists()
    headers = {"Authorization": f"token {world['tokens']['oli']}"}
    r = httpx.get(
        f"{world['hub'].url}user/oli/api/contents/data/genomes", headers=headers, timeout=60
    )
    assert r.status_code == 404, r.text

    # a catalog standalone app (a named server of his): no dataset either
    body = {"app": "viewer", "datasets": ["genomes"]}
    r = api.request("POST", "users/oli/servers/viewer", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("Unknown option 'datasets'"), r.text
    assert "viewer" not in api.user("oli").json()["servers"]
    catalog = service_client(world["hub"].url, world["tokens"]["oli"], "catalog")
    with catalog:
        r = catalog.post("apps/viewer/launch", json={})
        assert r.status_code in (200, 202), r.text
        launch = r.json()

        def running():
            state = catalog.get(f"launches/{launch['id']}").json()
            assert state["state"] != "failed", state
            return state["state"] == "running"

        wait_for(running, 180, 1, what="oli's viewer app")
        app_env = server_environ(home(world, "oli"), "viewer")
        assert app_env.get("LABSPACE_STANDALONE_APP") == "viewer"
        assert announced(app_env) == {}
        assert not (oli_home / "data" / "genomes").exists()
        r = catalog.post(f"launches/{launch['id']}/stop")
        assert r.status_code == 200, r.text
    wait_for(lambda: "viewer" not in api.user("oli").json()["servers"], 120, what="viewer stop")
    stop(world, "oli")


# -- paths under data.roots, when saved and again at the start -------------------------

BAD_SOURCES = {
    "outside": "/etc",
    "dotdot": "{root}/genomes/../../escape",
    "sibling": "{root}2/genomes",
    "relative": "datasets/genomes",
    "link out": "{root}/link-out",
}


def test_a_path_out_of_the_roots_is_refused_when_saved_and_at_the_start(world, tmp_path):
    root, api = world["root"], world["api"]
    (root / "link-out").symlink_to("/etc", target_is_directory=True)
    with data(world, "admin") as admin:
        for why, source in BAD_SOURCES.items():
            body = {"id": "bad", "kind": "host", "source": source.format(root=root)}
            r = admin.post("datasets", json=body)
            assert r.status_code == 400, (why, r.text)
            assert r.json()["message"].startswith("source: "), (why, r.text)
        assert admin.get("datasets/bad").status_code == 404

        # saved while it was a folder under the root, a link out of it by the start
        moved = root / "moved"
        moved.mkdir()
        r = admin.post("datasets", json={"id": "moved", "kind": "host", "source": str(moved)})
        assert r.status_code == 201, r.text
        body = {"group": "lab-a", "level": "read", "reason": "e2e"}
        assert admin.post("datasets/moved/grants", json=body).status_code == 200
        moved.rmdir()
        moved.symlink_to(tmp_path, target_is_directory=True)
        try:
            env = started(world, "ana")
            assert "moved" not in announced(env)
            assert set(announced(env)) == {"genomes", "lab-a-scratch", "survey"}
            assert not (home(world, "ana") / "data" / "moved").exists()
            # the grant stands, but the service checks the folder again at the start
            # and leaves it out, of the answer and of the audit: the audit says
            # what the server really got (the hub's own check is test_data_hubside's)
            with data(world, "ana") as c:
                assert "moved" in {d["id"] for d in c.get("me/datasets").json()}
            assert "Dataset moved left out of a start: source: " in world["hub"].log()
            r = admin.get("audit", params={"user": "ana", "limit": 1})
            (last,) = r.json()
            assert last["kind"] == "start" and "moved" not in {d["id"] for d in last["datasets"]}
            stop(world, "ana")
        finally:
            assert admin.delete("datasets/moved").status_code == 204
    assert api.user("ana").json()["servers"] == {}
