"""The data service's hub side: the ``DataGrants`` before_start hook.

Against the real data service, in-process on SQLite: the settings of a
``labspace.yaml`` go through ``config.hub_parts`` (the hook, the service's
token and ``LABSPACE_DATA_CONFIG``) and the service is started on what the hub
would give it, so the hook talks to what a hub's hook talks to. The spawners are
real ``LabspaceLocalSpawner``s built as JupyterHub builds them.

Covers: the person's grants become mounts (read-only for read), the s3
credential of the grant's level becomes a 0600 INI file outside the home, and
``LABSPACE_DATASETS`` says what is there without a secret; a person without a
grant gets nothing; the hub checks every dataset again against its own roots;
an unreachable service starts without datasets and says so (or refuses with
503), as does a service that refuses the hub's token.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest
import yaml
from harness import free_port
from offline import Group, build_spawner
from tornado import web
from traitlets.config import Config

from labspace.profiles import Mount, WorkspaceSpec
from labspace.services.data import app as service
from labspace.services.data import config, hubside
from labspace.services.data.hubside import UNREACHABLE_PROGRESS, DataGrants, plan
from labspace.services.kit import web as kit
from labspace.services.kit.run import ServiceContext
from labspace.settings import load
from labspace.spawners.local import LabspaceLocalSpawner
from labspace.state import State

READ_KEY = {"access_key_id": "AKIDREAD01", "secret_access_key": "read-s3cr3t-" + "r" * 16}
WRITE_KEY = {"access_key_id": "AKIDWRITE2", "secret_access_key": "write-s3cr3t-" + "w" * 16}
SECRETS = (READ_KEY["secret_access_key"], WRITE_KEY["secret_access_key"])
PREFIX = "/services/data/"


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "srv" / "datasets"
    for folder in ("genomes", "lab-a-scratch", "atlas"):
        (root / folder).mkdir(parents=True)
    (root / "genomes" / "hg38.fa").write_text(">chr1\nACGT\n")
    return root


def datasets(root: Path) -> list[dict]:
    return [
        {
            "id": "genomes",
            "title": "Reference genomes",
            "kind": "host",
            "source": str(root / "genomes"),
            "grants": [{"group": "lab-a", "level": "read"}],
        },
        {
            "id": "lab-a-scratch",
            "title": "Lab A scratch",
            "kind": "host",
            "source": str(root / "lab-a-scratch"),
            "grants": [{"group": "lab-a", "level": "write"}],
        },
        {
            "id": "atlas",
            "kind": "host",
            "source": str(root / "atlas"),
            "grants": [{"user": "carol", "level": "read"}],
        },
        {
            "id": "survey",
            "title": "Survey",
            "kind": "s3",
            "s3": {"endpoint": "http://127.0.0.1:9000", "bucket": "lab-data", "prefix": "survey/"},
            "credentials": {"read": {"env": "SURVEY_READ"}, "write": {"env": "SURVEY_WRITE"}},
            "grants": [{"group": "lab-a", "level": "read"}, {"user": "alice", "level": "write"}],
        },
    ]


@pytest.fixture
async def data_hub(tmp_path, root, monkeypatch):
    """``await data_hub(**data_settings) -> (hook, state)``: a labspace.yaml with
    those ``data:`` settings (local backend), the hook ``hub_parts`` builds from
    it, and the real data service started on what the hub gives it."""
    running = []

    async def make(**data):
        monkeypatch.setenv("SURVEY_READ", json.dumps(READ_KEY))
        monkeypatch.setenv("SURVEY_WRITE", json.dumps(WRITE_KEY))
        port = free_port()
        path = tmp_path / "labspace.yaml"
        values = {
            "data_dir": str(tmp_path / "hubdata"),
            "backend": {"type": "local"},
            "data": {"port": port, "roots": [str(root)], "datasets": datasets(root), **data},
        }
        path.write_text(yaml.safe_dump(values))
        state = State(load(path))
        state.prepare()
        parts = config.hub_parts(state.settings, state)
        (svc,) = parts["services"]
        (hook,) = parts["spawner"]["before_start"]
        for name, value in svc["environment"].items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", svc["api_token"])
        monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{free_port()}/hub/api")
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
        monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "data")
        monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-data")
        started = await service.start(ServiceContext("data"))
        server = kit.make_server(started.app)
        server.listen(port, address="127.0.0.1")
        running.append((server, started))
        return hook, state

    yield make
    for server, started in running:
        server.stop()
        await started.stop()


def spawner_for(state: State, name: str, groups=(), server=""):
    """A real local spawner of ``name`` in ``groups``, its profile applied."""
    cfg = Config()
    cfg.LabspaceSpawnerMixin.home_root = str(state.users_dir)
    spawner = build_spawner(LabspaceLocalSpawner, name, server, state.settings.values, cfg)
    spawner.user.groups = [Group(g) for g in groups]
    return spawner


async def start_hooks(spawner, hook):
    """What a start does up to the backend: profile, the hook, the spec it left."""
    spawner.before_start = [hook]
    await spawner._run_apply_user_options({})
    profile_spec = spawner.workspace_spec
    await spawner._run_before_start(profile_spec)
    env = spawner.get_env()
    return profile_spec, json.loads(env["LABSPACE_DATASETS"]), env


async def test_group_member_gets_mounts_and_the_read_credential(data_hub, root):
    hook, state = await data_hub()
    spawner = spawner_for(state, "bob", ["lab-a"])
    profile_spec, announced, env = await start_hooks(spawner, hook)
    spec = spawner.workspace_spec
    assert spec is not profile_spec and profile_spec.mounts == ()
    assert {m.name: (m.type, m.source, m.target, m.read_only) for m in spec.mounts} == {
        "data-genomes": ("host", str(root / "genomes"), "~/data/genomes", True),
        "data-lab-a-scratch": ("host", str(root / "lab-a-scratch"), "~/data/lab-a-scratch", False),
    }
    home = spawner.home_dir
    files_dir = spawner.files_dir
    assert not files_dir.startswith(home)
    by_id = {d["id"]: d for d in announced}
    assert set(by_id) == {"genomes", "lab-a-scratch", "survey"}  # not carol's atlas
    assert by_id["genomes"] == {
        "id": "genomes",
        "title": "Reference genomes",
        "kind": "host",
        "level": "read",
        "path": f"{home}/data/genomes",
    }
    assert by_id["lab-a-scratch"]["level"] == "write"
    assert by_id["survey"] == {
        "id": "survey",
        "title": "Survey",
        "kind": "s3",
        "level": "read",
        "path": "",
        "url": "s3://lab-data/survey/",
        "endpoint_url": "http://127.0.0.1:9000",
        "region": "",
        "profile": "labspace-survey",
        "credentials_file": f"{files_dir}/data-credentials.ini",
    }
    (ini,) = spec.files
    assert ini.content == (
        "[labspace-survey]\n"
        f"aws_access_key_id = {READ_KEY['access_key_id']}\n"
        f"aws_secret_access_key = {READ_KEY['secret_access_key']}\n"
    )
    # never a secret in the environment or a log-able repr of the spec
    for secret in SECRETS:
        assert secret not in json.dumps(env) and secret not in repr(spec)
    # the backend makes them: links in the home, the file 0600 outside it
    spawner.prepare_workspace()
    genomes = Path(home, "data", "genomes")
    assert genomes.is_symlink() and (genomes / "hg38.fa").read_text().startswith(">chr1")
    written = Path(files_dir, "data-credentials.ini")
    assert written.stat().st_mode & 0o777 == 0o600
    assert written.read_text() == ini.content
    await spawner.run_post_stop_hook()
    assert not written.exists()


async def test_a_user_grant_to_write_gets_the_write_credential(data_hub):
    hook, state = await data_hub()
    spawner = spawner_for(state, "alice")
    _, announced, _ = await start_hooks(spawner, hook)
    assert [(d["id"], d["level"]) for d in announced] == [("survey", "write")]
    (ini,) = spawner.workspace_spec.files
    assert WRITE_KEY["secret_access_key"] in ini.content
    assert READ_KEY["secret_access_key"] not in ini.content
    assert spawner.workspace_spec.mounts == ()


async def test_without_a_grant_nothing_appears(data_hub):
    hook, state = await data_hub()
    spawner = spawner_for(state, "mallory", ["lab-b"])
    profile_spec, announced, _ = await start_hooks(spawner, hook)
    assert announced == []
    assert spawner.workspace_spec is profile_spec  # nothing added, not even a file
    # nor through user_options: the hub refuses an option nobody handles
    with pytest.raises(web.HTTPError) as e:
        await spawner._run_apply_user_options({"datasets": ["genomes"]})
    assert e.value.status_code == 400


async def test_the_hub_checks_the_answer_against_its_own_roots(data_hub, root, caplog):
    """The service said scratch is fine; the hub's roots say otherwise: left out."""
    hook, state = await data_hub()
    narrow = DataGrants(
        hook.caller.base_url,
        hook.caller.token,
        roots=[str(root / "genomes")],
        backend="local",
    )
    spawner = spawner_for(state, "bob", ["lab-a"])
    with caplog.at_level(logging.ERROR, logger="JupyterHub.data"):
        _, announced, _ = await start_hooks(spawner, narrow)
    assert [m.name for m in spawner.workspace_spec.mounts] == ["data-genomes"]
    assert "lab-a-scratch" not in {d["id"] for d in announced}
    assert "Dataset 'lab-a-scratch' refused at mount time" in caplog.text
    assert "outside every allowed root" in caplog.text


async def test_a_link_swapped_out_of_the_root_after_saving_is_not_mounted(data_hub, root, tmp_path):
    hook, state = await data_hub()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    scratch = root / "lab-a-scratch"
    scratch.rmdir()
    scratch.symlink_to(outside)  # after the service saved it
    spawner = spawner_for(state, "bob", ["lab-a"])
    _, announced, _ = await start_hooks(spawner, hook)
    assert [m.name for m in spawner.workspace_spec.mounts] == ["data-genomes"]
    assert "lab-a-scratch" not in {d["id"] for d in announced}


# -- unreachable ------------------------------------------------------------------------


def down(on_unreachable: str) -> DataGrants:
    url = f"http://127.0.0.1:{free_port()}{PREFIX}"  # nothing listens there
    return DataGrants(url, "t0ken", on_unreachable, roots=[], backend="local", timeout=1, tries=1)


async def test_down_starts_without_datasets_and_says_so(tmp_path, caplog):
    state = bare_state(tmp_path)
    spawner = spawner_for(state, "bob", ["lab-a"])
    with caplog.at_level(logging.ERROR, logger="JupyterHub.data"):
        profile_spec, announced, _ = await start_hooks(spawner, down("start-without-data"))
    assert announced == []
    assert spawner.workspace_spec is profile_spec
    messages = [e["message"] for e in spawner._start_progress().events]
    assert UNREACHABLE_PROGRESS in messages
    assert UNREACHABLE_PROGRESS == (
        "The data service is not answering: this workspace starts without datasets"
    )
    assert "Data service unreachable at" in caplog.text and "no datasets" in caplog.text


async def test_down_refuse_is_a_503(tmp_path):
    spawner = spawner_for(bare_state(tmp_path), "bob", ["lab-a"])
    with pytest.raises(web.HTTPError) as e:
        await start_hooks(spawner, down("refuse"))
    assert e.value.status_code == 503
    assert "data service is not answering" in e.value.log_message


async def test_a_wrong_token_is_unreachable_not_an_empty_grant(data_hub, caplog):
    """A 403 from the service is not "no datasets": the hub says it could not ask."""
    hook, state = await data_hub(on_unreachable="refuse")
    wrong = DataGrants(hook.caller.base_url, secrets.token_hex(8), "refuse", backend="local")
    with pytest.raises(web.HTTPError) as e:
        await start_hooks(spawner_for(state, "bob", ["lab-a"]), wrong)
    assert e.value.status_code == 503


async def test_a_service_still_starting_is_unreachable(tmp_path):
    """The kit answers 503 while a service starts: the start does not wait on it."""

    class Starting(web.RequestHandler):
        def post(self):
            self.set_status(503)
            self.finish({"status": 503, "message": "starting"})

    port = free_port()
    server = web.Application([(PREFIX + "api/internal/start", Starting)]).listen(
        port, address="127.0.0.1"
    )
    try:
        hook = DataGrants(f"http://127.0.0.1:{port}{PREFIX}", "t", backend="local", tries=2)
        spawner = spawner_for(bare_state(tmp_path), "bob")
        _, announced, _ = await start_hooks(spawner, hook)
        assert announced == []
        assert UNREACHABLE_PROGRESS in [e["message"] for e in spawner._start_progress().events]
    finally:
        server.stop()


def bare_state(tmp_path) -> State:
    path = tmp_path / "labspace.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "hubdata")}))
    state = State(load(path))
    state.prepare()
    return state


def test_hook_settings_are_checked():
    with pytest.raises(ValueError, match="data.on_unreachable"):
        DataGrants("http://x/", "t", "wait")
    with pytest.raises(ValueError, match="backend.type"):
        DataGrants("http://x/", "t", backend="podman")
    assert "t0ken" not in repr(DataGrants("http://x/", "t0ken"))


# -- the plan, pure ---------------------------------------------------------------------

ROOT = "/srv/datasets"


def answer(**kw):
    return {
        "id": "d",
        "title": "D",
        "kind": "host",
        "level": "read",
        "source": f"{ROOT}/d",
        "sub_path": "",
        "mount_path": "/data/d",
        **kw,
    }


BAD_ANSWERS = [
    pytest.param(answer(source="/etc"), id="outside"),
    pytest.param(answer(source=f"{ROOT}/../etc"), id="dotdot"),
    pytest.param(answer(source=f"{ROOT}2/d"), id="sibling-prefix"),
    pytest.param(answer(level="admin"), id="unknown-level"),
    pytest.param(answer(level=None), id="no-level"),
    pytest.param(answer(kind="pvc", source="claim"), id="kind-docker-cannot-mount"),
    pytest.param(answer(mount_path="/home/jovyan"), id="over-the-home"),
    pytest.param(answer(mount_path="/etc/x"), id="system-folder"),
    pytest.param(answer(id="../x"), id="bad-id"),
]


@pytest.mark.parametrize("bad", BAD_ANSWERS)
def test_plan_leaves_out_what_the_rules_refuse(bad):
    mounts, files, entries = plan([bad, answer(id="ok")], [ROOT], "docker", None, "/run/labspace")
    assert [m.name for m in mounts] == ["data-ok"]
    assert [e["id"] for e in entries] == ["ok"]
    assert files == ()


def test_plan_for_each_kind_on_kubernetes():
    s3 = {"endpoint": "", "bucket": "b-1", "prefix": "p/", "region": "eu-west-1"}
    got = [
        answer(id="ref", kind="pvc", source="ref-claim", sub_path="genomes"),
        answer(id="lab", kind="nfs", source="nfs:/e", sub_path="a", level="write"),
        answer(id="pub", kind="s3", source="", mount_path="/data/pub", s3=s3),
    ]
    mounts, files, entries = plan(got, [ROOT], "kubernetes", None, "/run/labspace")
    assert mounts == (
        Mount("data-ref", "pvc", "ref-claim", "/data/d", True, "genomes"),
        Mount("data-lab", "nfs", "nfs:/e", "/data/d", False, "a"),
    )
    assert files == ()  # an s3 dataset without credentials: anonymous, no file
    assert entries[2]["profile"] == "" and entries[2]["credentials_file"] == ""
    assert entries[2]["url"] == "s3://b-1/p/" and entries[2]["region"] == "eu-west-1"


def test_a_credential_that_could_write_another_section_is_left_out(caplog):
    s3 = {"endpoint": "", "bucket": "b-1", "prefix": "", "region": ""}
    evil = {"access_key_id": "A", "secret_access_key": "x\n[labspace-other]\naws_access_key_id=B"}
    got = [answer(kind="s3", source="", s3=s3, credentials=evil)]
    with caplog.at_level(logging.ERROR, logger="JupyterHub.data"):
        mounts, files, entries = plan(got, [], "local", "/home/u", "/rt")
    assert files == () and entries[0]["profile"] == ""
    assert "not a one-line text" in caplog.text and "labspace-other" not in caplog.text


def test_a_dataset_over_a_profile_mount_is_left_out():
    spec = WorkspaceSpec("p", "P", mounts=(Mount("ref", "host", "/srv/ref", "/data/d"),))
    mounts, _, _ = plan([answer()], [ROOT], "docker", None, "/run/labspace")
    out = hubside.with_datasets(spec, mounts, ())
    assert out.mounts == spec.mounts
