"""The data section of ``labspace.yaml``: its schema, the problems
``labspace config validate`` prints (one line each, naming the key and the fix),
what the service process gets (``LABSPACE_DATA_CONFIG``, secrets as 0600 files)
and what the hub gets (``hub_parts``)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from jupyterhub.scopes import scope_definitions

from labspace import settings as settings_mod
from labspace.services.data import config
from labspace.services.data.hubside import DataGrants
from labspace.services.kit.run import ServiceContext
from labspace.settings import load
from labspace.state import State

READ_KEY = {"access_key_id": "AKIDREAD", "secret_access_key": "read-s3cr3t-9f2"}
WRITE_KEY = {
    "access_key_id": "AKIDWRITE",
    "secret_access_key": "write-s3cr3t-7c1",
    "session_token": "tok-write-55",
}


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "datasets" / "genomes").mkdir(parents=True)
    (tmp_path / "datasets-2").mkdir()
    return tmp_path / "datasets"


def genomes(root, **kw):
    return {
        "id": "genomes",
        "title": "Reference genomes",
        "kind": "host",
        "source": str(root / "genomes"),
        "grants": [{"group": "lab-a", "level": "read"}, {"user": "alice", "level": "write"}],
        **kw,
    }


def s3(**kw):
    return {
        "id": "shared",
        "kind": "s3",
        "s3": {"endpoint": "http://127.0.0.1:9000", "bucket": "lab-data", "prefix": "shared/"},
        "grants": [{"group": "lab-a", "level": "write"}],
        **kw,
    }


def full(data: dict, backend: str = "docker") -> dict:
    return settings_mod.with_defaults({"data": data, "backend": {"type": backend}})


def test_defaults_and_a_valid_section(root):
    values = settings_mod.with_defaults({})
    assert values["data"] == {
        "enabled": True,
        "port": 8012,
        "db_url": "",
        "on_unreachable": "start-without-data",
        "roots": [],
        "datasets": [],
    }
    data = {"roots": [str(root)], "datasets": [genomes(root), s3()]}
    assert settings_mod.validate({"data": data, "backend": {"type": "docker"}}) == []


def test_every_key_has_a_description_and_the_section_refuses_unknown_keys():
    section = settings_mod.schema()["properties"]["data"]
    assert section["additionalProperties"] is False and section["default"] == {}
    assert section["properties"]["db_url"]["x-secret"] is True

    def walk(node, path):
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, path
        for name, sub in node.get("properties", {}).items():
            assert len(sub.get("description", "")) > 10, f"{path}.{name}"
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(section, "data")
    for name, sub in section["properties"].items():
        assert "default" in sub, name


SCHEMA_PROBLEMS = [
    pytest.param({"colour": 1}, "data.colour", id="unknown-key"),
    pytest.param({"roots": ["srv"]}, "data.roots[0]", id="relative-root"),
    pytest.param({"datasets": [{"id": "Genomes", "kind": "host"}]}, "data.datasets[0].id", id="id"),
    pytest.param({"datasets": [{"id": "g", "kind": "ftp"}]}, "data.datasets[0].kind", id="kind"),
    pytest.param(
        {"datasets": [{"id": "g", "kind": "host", "grants": [{"group": "a", "level": "own"}]}]},
        "data.datasets[0].grants[0].level",
        id="level",
    ),
    pytest.param(
        {"datasets": [{**s3(), "credentials": {"read": {"env": "A", "file": "/x"}}}]},
        "data.datasets[0].credentials.read",
        id="env-and-file",
    ),
    pytest.param({"on_unreachable": "wait"}, "data.on_unreachable", id="on-unreachable"),
]


@pytest.mark.parametrize("data, key", SCHEMA_PROBLEMS)
def test_schema_problems_name_the_key(data, key):
    problems = settings_mod.validate({"data": data})
    assert any(p.startswith(key) for p in problems), problems


def problems_of(data, backend="docker", environ=None):
    return config.problems(full(data, backend), environ or {})


def test_problems_one_line_each(root, tmp_path):
    sibling = tmp_path / "datasets-2"
    data = {
        "roots": [str(root)],
        "datasets": [
            genomes(root),
            genomes(root, title="again"),  # duplicate id
            {"id": "sib", "kind": "host", "source": str(sibling)},  # sibling prefix
            {"id": "claim", "kind": "pvc", "source": "ref"},  # docker cannot mount a pvc
            {
                "id": "twice",
                "kind": "volume",
                "source": "v",
                "grants": [{"group": "a", "level": "read"}, {"group": "a", "level": "write"}],
            },
            genomes(root, id="keyed", credentials={"read": {"env": "X"}}),  # not s3
            s3(credentials={"read": {"env": "SHARED_READ"}, "write": {"file": "/nonexistent"}}),
        ],
    }
    lines = problems_of(data)
    assert lines == [
        "data.datasets[1].id: 'genomes' is also data.datasets[0] (one each)",
        f"data.datasets[2].source: '{sibling}' is outside every allowed root ({root})",
        "data.datasets[3].kind: the docker backend cannot mount 'pvc' datasets "
        "(use one of host, volume, s3)",
        "data.datasets[4].grants[1]: group 'a' is also granted by data.datasets[4].grants[0] "
        "(one grant each; the strongest would win)",
        "data.datasets[5].credentials: only s3 datasets have credentials (this one is host; "
        "remove them)",
        "data.datasets[6].credentials.read.env: SHARED_READ is not set in the hub's environment "
        '(set it to JSON such as {"access_key_id": "...", "secret_access_key": "...", '
        '"session_token": "..."} (session_token optional) before starting the hub)',
        "data.datasets[6].credentials.write.file: /nonexistent does not exist (create it)",
    ]
    assert all("\n" not in line for line in lines)


def test_problems_of_credential_contents(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"access_key_id": "A"}))
    environ = {"R": json.dumps({**READ_KEY, "region": "x"})}
    data = {
        "datasets": [
            s3(credentials={"read": {"env": "R"}, "write": {"file": str(bad)}}),
            s3(id="other", credentials={"read": {"file": str(partial)}}),
        ]
    }
    lines = problems_of(data, environ=environ)
    assert [line.split(" (")[0] for line in lines] == [
        "data.datasets[0].credentials.read.env: R has an unknown key 'region'",
        f"data.datasets[0].credentials.write.file: {bad} does not hold JSON",
        f"data.datasets[1].credentials.read.file: {partial} has no secret_access_key",
    ]
    # a problem line never shows the secret
    assert not any("read-s3cr3t" in line for line in lines)


def test_good_credentials_have_no_problem(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps(WRITE_KEY))
    environ = {"SHARED_READ": json.dumps(READ_KEY)}
    data = {
        "datasets": [s3(credentials={"read": {"env": "SHARED_READ"}, "write": {"file": str(path)}})]
    }
    assert problems_of(data, environ=environ) == []


@pytest.mark.parametrize(
    "backend, kind, source, ok",
    [
        ("kubernetes", "pvc", "ref-claim", True),
        ("kubernetes", "nfs", "files:/exports", True),
        ("kubernetes", "volume", "v", False),
        ("local", "volume", "v", False),
        ("docker", "nfs", "files:/exports", False),
    ],
)
def test_kinds_per_backend(backend, kind, source, ok):
    lines = problems_of({"datasets": [{"id": "d", "kind": kind, "source": source}]}, backend)
    assert (lines == []) is ok, lines


def test_kubernetes_host_paths_are_not_followed_on_the_hub(root, tmp_path):
    """A kubernetes host dataset lies on the node: links on the hub's own disk
    say nothing about it, but '..' and other roots are still refused."""
    (root / "link-out").symlink_to(tmp_path)
    data = {
        "roots": [str(root)],
        "datasets": [{"id": "d", "kind": "host", "source": str(root / "link-out")}],
    }
    assert problems_of(data, "kubernetes") == []
    assert "symbolic link" in problems_of(data, "docker")[0]


def test_config_validate_prints_the_problems(root, tmp_path):
    """``labspace config validate`` prints each problem on its own line."""
    from click.testing import CliRunner

    from labspace import cli

    path = tmp_path / "labspace.yaml"
    path.write_text(
        f"backend: {{type: docker}}\ndata:\n  roots: [{root}]\n  datasets:\n"
        "    - {id: outside, kind: host, source: /etc}\n"
        "    - {id: claim, kind: pvc, source: ref}\n"
    )
    result = CliRunner().invoke(cli.main, ["config", "validate", str(path)])
    assert result.exit_code == 1
    text = result.output  # stdout and stderr, as a terminal shows them
    assert "data.datasets[0].source: '/etc' is outside every allowed root" in text
    assert "data.datasets[1].kind: the docker backend cannot mount 'pvc'" in text
    lines = [line for line in text.splitlines() if "data.datasets[" in line]
    assert len(lines) == 2, text


# -- the service's environment and the hub's parts ---------------------------------------


@pytest.fixture
def state(tmp_path, root, monkeypatch):
    def make(data: dict, environ: dict[str, str] | None = None) -> State:
        for name, value in (environ or {}).items():
            monkeypatch.setenv(name, value)
        path = tmp_path / "labspace.yaml"
        import yaml

        path.write_text(
            yaml.safe_dump(
                {"data": data, "backend": {"type": "docker"}, "data_dir": str(tmp_path / "d")}
            )
        )
        st = State(load(path))
        st.prepare()
        return st

    return make


def test_service_environment_keeps_secrets_in_0600_files(state, root, tmp_path):
    write_file = tmp_path / "write.json"
    write_file.write_text(json.dumps(WRITE_KEY))
    data = {
        "db_url": "postgresql://lab:pw-77aa91@db:5432/data",
        "roots": [str(root)],
        "datasets": [
            genomes(root),
            s3(credentials={"read": {"env": "SHARED_READ"}, "write": {"file": str(write_file)}}),
        ],
    }
    st = state(data, {"SHARED_READ": json.dumps(READ_KEY)})
    env = config.service_environment(st.settings, st)
    text = repr(env)
    for secret in ("pw-77aa91", "read-s3cr3t-9f2", "write-s3cr3t-7c1", "tok-write-55"):
        assert secret not in text
    cfg = json.loads(env["LABSPACE_DATA_CONFIG"])
    assert cfg["backend"] == "docker" and cfg["roots"] == [str(root)]
    assert [d["id"] for d in cfg["datasets"]] == ["genomes", "shared"]
    assert all("credentials" not in d for d in cfg["datasets"])
    assert cfg["datasets"][0]["grants"][0] == {"group": "lab-a", "level": "read"}
    secrets = st.data_dir / "secrets"
    assert cfg["credentials_file"] == str(secrets / "data-settings-credentials.json")
    for name in ("data-settings-credentials.json", "data-db-url"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600
    assert json.loads(Path(cfg["credentials_file"]).read_text()) == {
        "shared": {"read": READ_KEY, "write": WRITE_KEY}
    }
    ctx = ServiceContext("data", environ=env)
    assert ctx.db_url == "postgresql+psycopg://lab:pw-77aa91@db:5432/data"
    assert ctx.data_dir == st.data_dir


def test_credentials_taken_out_of_the_settings_are_gone(state, root):
    st = state(
        {"datasets": [s3(credentials={"read": {"env": "SHARED_READ"}})]},
        {"SHARED_READ": json.dumps(READ_KEY)},
    )
    cfg = json.loads(config.service_environment(st.settings, st)["LABSPACE_DATA_CONFIG"])
    kept = Path(cfg["credentials_file"])
    assert kept.exists()
    st = state({"datasets": [s3()]})
    cfg = json.loads(config.service_environment(st.settings, st)["LABSPACE_DATA_CONFIG"])
    assert cfg["credentials_file"] == "" and not kept.exists()


def test_hub_parts(state, root):
    st = state(
        {
            "port": 18012,
            "roots": [str(root)],
            "on_unreachable": "refuse",
            "datasets": [genomes(root)],
        }
    )
    parts = config.hub_parts(st.settings, st)
    (service,) = parts["services"]
    assert service["url"] == "http://127.0.0.1:18012"
    assert service["command"][1:] == ["-m", "labspace.services.data"]
    assert set(service["oauth_client_allowed_scopes"]) == {
        "custom:labspace-data:read",
        "custom:labspace-data:admin",
    }
    (role,) = parts["roles"]
    assert role["services"] == ["data"]
    # the least: list running servers and groups, stop a server; never start one
    assert role["scopes"] == ["list:users", "read:servers", "read:users:groups", "delete:servers"]
    assert all(s in scope_definitions for s in role["scopes"])
    assert "servers" not in role["scopes"] and "admin:users" not in role["scopes"]
    scopes = parts["custom_scopes"]
    assert scopes["custom:labspace-data:admin"]["subscopes"] == ["custom:labspace-data:read"]
    assert "subscopes" not in scopes["custom:labspace-data:read"]
    assert parts["user_scopes"] == ["access:services!service=data", "custom:labspace-data:read"]
    assert parts["admin_scopes"] == ["access:services!service=data", "custom:labspace-data:admin"]
    assert parts["nav"] == [{"title": "Data", "url": "/services/data/", "admin": False}]
    (hook,) = parts["spawner"]["before_start"]
    assert isinstance(hook, DataGrants)
    assert hook.on_unreachable == "refuse" and hook.roots == [str(root)]
    assert hook.backend == "docker"
    assert hook.caller.base_url == "http://127.0.0.1:18012/services/data/"
    assert hook.caller.token == service["api_token"]
    assert service["api_token"] not in repr(hook)


def test_hub_parts_disabled(state):
    st = state({"enabled": False})
    assert config.hub_parts(st.settings, st) == {}


def test_hub_config_merges_the_data_parts(state, root):
    """The hub's configuration (labspace.hubconfig) takes the hook and scopes."""
    from labspace.hubconfig import build

    st = state({"roots": [str(root)]})
    cfg = build(st.settings, st, ["configurable-http-proxy"])
    hooks = cfg["LabspaceSpawnerMixin"]["before_start"]
    assert any(isinstance(h, DataGrants) for h in hooks)
    names = [s["name"] for s in cfg["JupyterHub"]["services"]]
    assert "data" in names
    user = next(r for r in cfg["JupyterHub"]["load_roles"] if r["name"] == "user")
    assert "custom:labspace-data:read" in user["scopes"]
