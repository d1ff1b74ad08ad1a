"""Golden tests of the settings -> traitlets mapping, the proxy lookup, the
``jupyterhub_config.py`` entry point and the state kept under ``data_dir``."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from pathlib import Path

import pytest
from test_settings import DEFAULTS
from traitlets.config import Config

import labspace
from labspace import needs
from labspace.hubconfig import ProxyNotFound, admin_role, build, configure, find_proxy
from labspace.settings import load
from labspace.state import State, StateError, ensure_secret, user_dir_name

PROXY = ["/opt/chp/bin/configurable-http-proxy"]
PACKAGE = Path(labspace.__file__).resolve().parent
ADMIN_PW = "admin-password-of-at-least-32-characters"
PROXY_NOT_FOUND = (
    "hub.proxy_command: configurable-http-proxy was not found on PATH nor in node_modules/.bin "
    "of {folder} (run `npm ci` in the Labspace folder, or `npm install -g "
    "configurable-http-proxy`, or set hub.proxy_command)"
)

# the `backend:` section of an empty labspace.yaml, as the spawner gets it
DEFAULT_BACKEND = DEFAULTS["backend"]


@pytest.fixture(autouse=True)
def keep_umask():
    """``configure`` sets the hub's private umask: give the test process its own back."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


@pytest.fixture
def base(tmp_path) -> Path:
    """The folder of the settings file, with symlinks resolved as data_dir is."""
    return tmp_path.resolve()


@pytest.fixture
def setup(base):
    """Write ``labspace.yaml``, load it, prepare its State: ``(settings, state)``."""

    def setup(text: str = "", environ: dict[str, str] | None = None):
        path = base / "labspace.yaml"
        path.write_text(text)
        settings = load(path, environ=environ or {})
        state = State(settings)
        state.prepare()
        return settings, state

    return setup


def secret(base: Path, name: str) -> str:
    return (base / "labspace-data" / "secrets" / name).read_text().strip()


@pytest.fixture
def no_proxy_anywhere(tmp_path, monkeypatch):
    """No configurable-http-proxy on PATH, nor where Labspace is installed (the
    repository's own, found from anywhere, is tests/test_needs.py's)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(needs, "install_folders", list)


def fake_proxy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "configurable-http-proxy"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


# -- build -------------------------------------------------------------------

# what the services add (tested in tests/test_hubservices.py and with each service)
SERVICE_TRAITS = {
    "JupyterHub": {"services", "load_roles", "custom_scopes", "template_vars", "extra_handlers"},
    "LabspaceSpawnerMixin": {
        "before_start",
        "after_stop",
        "check_options",
        "form_parts",
        "option_keys",
        "start_outcome",
    },
}


def without_services(values: dict) -> dict:
    """``values`` without what the accounting and catalog services add; each of
    those traits must be there (both services are on by default)."""
    out = {}
    for cls, traits in values.items():
        extra = SERVICE_TRAITS.get(cls, set())
        assert extra <= set(traits), f"{cls} lacks {extra - set(traits)}"
        out[cls] = {k: v for k, v in traits.items() if k not in extra | POOL_TRAITS}
    return out


POOL_TRAITS = {"pool_events"}  # with a warm pool only: test_pool_hooks_follow_the_pool


@pytest.mark.parametrize(
    ("text", "on"),
    [
        pytest.param("", True, id="local-auto"),
        pytest.param("backend: {warm_pool: {enabled: false}}", False, id="local-off"),
        pytest.param("backend: {type: docker}", False, id="docker-auto"),
        pytest.param("backend: {type: docker, warm_pool: {enabled: true}}", True, id="docker-on"),
        pytest.param("backend: {type: kubernetes}", False, id="kubernetes-auto"),
    ],
)
def test_pool_hooks_follow_the_pool(setup, text, on):
    """`enabled: auto` is resolved once, in the hub config: the spawners see
    true or false, and the pool's hooks (metrics, accounting) are wired only
    with a pool."""
    settings, state = setup(text)
    mixin = build(settings, state, PROXY)["LabspaceSpawnerMixin"]
    assert mixin["warm_pool"]["enabled"] is on
    hooks = mixin.get("pool_events", [])
    assert ("labspace.metrics.pool_event" in hooks) is on
    assert (
        any(
            getattr(h, "__name__", "") == "pool_event" and h != "labspace.metrics.pool_event"
            for h in hooks
        )
        is on
    )  # accounting's (a bound method)


def test_build_empty_file(setup, base):
    settings, state = setup("")
    data = base / "labspace-data"
    assert without_services(build(settings, state, PROXY)) == {
        "JupyterHub": {
            "ip": "127.0.0.1",
            "port": 8000,
            "hub_port": 8081,
            "base_url": "/",
            "cleanup_servers": True,
            "db_url": f"sqlite:///{data}/jupyterhub.sqlite",
            "cookie_secret_file": f"{data}/secrets/cookie-secret",
            "pid_file": f"{data}/jupyterhub.pid",
            "hub_ip": "127.0.0.1",
            "upgrade_db": True,
            "allow_named_servers": True,
            "redirect_to_server": False,
            "template_paths": [f"{PACKAGE}/templates"],
            "logo_file": f"{PACKAGE}/static/labspace-logo.svg",
            "authenticator_class": "shared-password",
            "spawner_class": "labspace-local",
        },
        "Application": {"log_level": "INFO"},
        "Authenticator": {
            "admin_users": {"admin"},
            "allow_all": False,
            "allowed_users": {"admin"},
            "auth_refresh_age": 300,
            "refresh_pre_spawn": True,
        },
        "Spawner": {"default_url": "/lab", "start_timeout": 120, "http_timeout": 60},
        "SharedPasswordAuthenticator": {"admin_password": secret(base, "admin-password")},
        "LabspaceSpawnerMixin": {
            "profiles": [],
            "backend_settings": DEFAULT_BACKEND,
            "spawn_concurrency": 0,
            "warm_pool": {**DEFAULT_BACKEND["warm_pool"], "enabled": True},
            "home_root": f"{data}/users",
        },
        "ConfigurableHTTPProxy": {
            "command": PROXY,
            "auth_token": secret(base, "proxy-auth-token"),
            "api_url": "http://127.0.0.1:8001",
            "pid_file": f"{data}/proxy.pid",
        },
    }


def test_build_realistic_file(setup, base):
    settings, state = setup(
        "data_dir: state\n"
        "hub:\n  ip: 0.0.0.0\n  port: 8443\n  hub_port: 18081\n  proxy_api_port: 18001\n"
        "  base_url: /jupyter/\n  public_url: https://hub.example.org/jupyter/\n"
        "  admin_users: [alice]\n  cleanup_servers: false\n  log_level: DEBUG\n"
        "backend:\n  default_url: /tree\n  start_timeout: 300\n  http_timeout: 90\n"
        "  spawn_concurrency: 3\n  env: {TZ: UTC}\n"
        "  mounts: [{name: ref, type: host, source: /srv/ref, target: /data/ref}]\n"
        "profiles:\n  - {slug: small, default: true, memory: {limit: 1G}}\n"
        "  - {slug: big, groups: [gpu-users], cpu: {limit: 8}}\n"
        f"auth:\n  admin_password: {ADMIN_PW}\n  allow_all: true\n  user_password: users-pw\n"
        "  refresh_interval: 0\n"
    )
    values = without_services(build(settings, state, PROXY))
    data = base / "state"
    assert values["JupyterHub"] == {
        "ip": "0.0.0.0",  # noqa: S104
        "port": 8443,
        "hub_port": 18081,
        "base_url": "/jupyter/",
        "cleanup_servers": False,
        "db_url": f"sqlite:///{data}/jupyterhub.sqlite",
        "cookie_secret_file": f"{data}/secrets/cookie-secret",
        "pid_file": f"{data}/jupyterhub.pid",
        "hub_ip": "127.0.0.1",
        "upgrade_db": True,
        "allow_named_servers": True,
        "redirect_to_server": False,
        "public_url": "https://hub.example.org/jupyter/",
        "template_paths": [f"{PACKAGE}/templates"],
        "logo_file": f"{PACKAGE}/static/labspace-logo.svg",
        "authenticator_class": "shared-password",
        "spawner_class": "labspace-local",
    }
    assert values["Application"] == {"log_level": "DEBUG"}
    assert values["Authenticator"] == {
        "admin_users": {"alice"},
        "allow_all": True,
        "allowed_users": {"alice"},
        "auth_refresh_age": 0,
        "refresh_pre_spawn": False,
    }
    assert values["Spawner"] == {"default_url": "/tree", "start_timeout": 300, "http_timeout": 90}
    assert values["SharedPasswordAuthenticator"] == {
        "admin_password": ADMIN_PW,
        "user_password": "users-pw",
    }
    assert values["ConfigurableHTTPProxy"]["api_url"] == "http://127.0.0.1:18001"
    assert "LabspaceLocalSpawner" not in values
    assert values["LabspaceSpawnerMixin"] == {
        "profiles": [
            {"slug": "small", "default": True, "memory": {"limit": "1G"}},
            {"slug": "big", "groups": ["gpu-users"], "cpu": {"limit": 8}},
        ],
        "backend_settings": {
            **DEFAULT_BACKEND,
            "default_url": "/tree",
            "start_timeout": 300,
            "http_timeout": 90,
            "spawn_concurrency": 3,
            "env": {"TZ": "UTC"},
            "mounts": [
                {"name": "ref", "type": "host", "source": "/srv/ref", "target": "/data/ref"}
            ],
        },
        "spawn_concurrency": 3,
        "warm_pool": {**DEFAULT_BACKEND["warm_pool"], "enabled": True},
        "home_root": f"{data}/users",
    }


@pytest.mark.parametrize(
    ("kind", "spawner"),
    [
        pytest.param("local", "labspace-local", id="local"),
        pytest.param("docker", "labspace-docker", id="docker"),
        pytest.param("kubernetes", "labspace-kubernetes", id="kubernetes"),
    ],
)
def test_backend_type_picks_spawner(setup, base, kind, spawner):
    settings, state = setup(f"backend:\n  type: {kind}\n")
    values = build(settings, state, PROXY)
    assert values["JupyterHub"]["spawner_class"] == spawner
    assert values["LabspaceSpawnerMixin"]["backend_settings"] == {**DEFAULT_BACKEND, "type": kind}
    # homes on the host (local; docker with home: bind) live under data_dir/users
    assert values["LabspaceSpawnerMixin"]["home_root"] == f"{base}/labspace-data/users"


def test_hub_config_applied_last(setup):
    settings, state = setup(
        "hub:\n  port: 8000\n  config:\n"
        "    JupyterHub:\n      port: 9999\n      shutdown_on_logout: true\n"
        "    Spawner:\n      start_timeout: 30\n      mem_limit: 2G\n"
        "    ConfigurableHTTPProxy:\n      command: [/usr/bin/chp]\n"
        "    Authenticator:\n      allowed_users: [zoe]\n"
    )
    values = build(settings, state, PROXY)
    # pass-through wins over the derived values ...
    assert values["JupyterHub"]["port"] == 9999
    assert values["Spawner"]["start_timeout"] == 30
    assert values["ConfigurableHTTPProxy"]["command"] == ["/usr/bin/chp"]
    assert values["Authenticator"]["allowed_users"] == ["zoe"]
    # ... adds what Labspace has no setting for ...
    assert values["JupyterHub"]["shutdown_on_logout"] is True
    assert values["Spawner"]["mem_limit"] == "2G"
    # ... and leaves the rest alone
    assert values["JupyterHub"]["hub_port"] == 8081
    assert values["Spawner"]["http_timeout"] == 60
    assert values["Authenticator"]["admin_users"] == {"admin"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            "postgresql://hub:pw@db:5432/hub", "postgresql+psycopg://hub:pw@db:5432/hub", id="pg"
        ),
        pytest.param(
            "postgres://hub:pw@db:5432/hub", "postgresql+psycopg://hub:pw@db:5432/hub", id="short"
        ),
        pytest.param(
            "postgresql+psycopg://hub:pw@db/hub", "postgresql+psycopg://hub:pw@db/hub", id="psycopg"
        ),
        pytest.param("sqlite:////srv/hub.sqlite", "sqlite:////srv/hub.sqlite", id="sqlite"),
    ],
)
@pytest.mark.parametrize("where", ["file", "env"])
def test_db_url(setup, given, expected, where):
    if where == "file":
        settings, state = setup(f"hub:\n  db_url: {given}\n")
    else:
        settings, state = setup("", environ={"LABSPACE_HUB_DB_URL": given})
    assert build(settings, state, PROXY)["JupyterHub"]["db_url"] == expected


def test_configured_admin_password(setup, base):
    settings, state = setup(f"auth:\n  admin_password: {ADMIN_PW}\n")
    values = build(settings, state, PROXY)
    assert values["SharedPasswordAuthenticator"]["admin_password"] == ADMIN_PW
    assert not state.admin_password_generated
    assert not (base / "labspace-data" / "secrets" / "admin-password").exists()


def test_generated_admin_password(setup, base):
    settings, state = setup("")
    first = build(settings, state, PROXY)
    stored = base / "labspace-data" / "secrets" / "admin-password"
    password = first["SharedPasswordAuthenticator"]["admin_password"]
    assert state.admin_password_generated
    assert state.admin_password_created  # made now: the only start that may print it
    assert stored.read_text() == password + "\n"
    assert len(password) >= 32  # what auth.admin_password requires of a given one
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    # a restart keeps the password and the proxy token
    again = setup("")
    second = build(*again, PROXY)
    assert second["SharedPasswordAuthenticator"]["admin_password"] == password
    assert not again[1].admin_password_created
    token = first["ConfigurableHTTPProxy"]["auth_token"]
    assert second["ConfigurableHTTPProxy"]["auth_token"] == token
    assert token != password


def test_allowed_users_include_admins(setup):
    settings, state = setup(
        "hub:\n  admin_users: [alice, bob]\nauth:\n  allowed_users: [carol, alice]\n"
    )
    values = build(settings, state, PROXY)
    assert values["Authenticator"]["allowed_users"] == {"alice", "bob", "carol"}
    assert values["Authenticator"]["admin_users"] == {"alice", "bob"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", None, id="unset"),
        pytest.param("auth:\n  user_password: ''\n", None, id="empty"),
        pytest.param("auth:\n  user_password: users-pw\n", "users-pw", id="given"),
    ],
)
def test_user_password_only_when_given(setup, text, expected):
    settings, state = setup(text)
    shared = build(settings, state, PROXY)["SharedPasswordAuthenticator"]
    assert shared.get("user_password") == expected
    assert ("user_password" in shared) == (expected is not None)


def test_theme_files_exist(setup):
    settings, state = setup("")
    hub = build(settings, state, PROXY)["JupyterHub"]
    (templates,) = hub["template_paths"]
    assert (Path(templates) / "page.html").is_file()
    assert Path(hub["logo_file"]).is_file()


def test_public_url_only_when_given(setup):
    settings, state = setup("")
    assert "public_url" not in build(settings, state, PROXY)["JupyterHub"]


# -- find_proxy --------------------------------------------------------------


def test_find_proxy_configured_wins(setup, base, no_proxy_anywhere):
    fake_proxy(base / "node_modules" / ".bin")
    settings, _ = setup("hub:\n  proxy_command: [/usr/bin/chp, --log-level, warn]\n")
    assert find_proxy(settings) == ["/usr/bin/chp", "--log-level", "warn"]


def test_find_proxy_next_to_settings(tmp_path, monkeypatch, no_proxy_anywhere):
    conf = tmp_path / "conf"
    local = fake_proxy(conf / "node_modules" / ".bin")
    fake_proxy(tmp_path / "node_modules" / ".bin")  # the current folder: never looked at
    on_path = tmp_path / "path-bin"
    fake_proxy(on_path)
    monkeypatch.setenv("PATH", str(on_path))
    (conf / "labspace.yaml").write_text("")
    assert find_proxy(load(conf / "labspace.yaml", environ={})) == [str(local)]


def test_find_proxy_not_in_current_folder(tmp_path, no_proxy_anywhere):
    """The hub runs in data_dir, the launcher wherever it was started: a proxy
    only one of them would find is none."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "labspace.yaml").write_text("")
    fake_proxy(tmp_path / "node_modules" / ".bin")
    with pytest.raises(ProxyNotFound):
        find_proxy(load(conf / "labspace.yaml", environ={}))


def test_find_proxy_on_path(tmp_path, monkeypatch, no_proxy_anywhere):
    on_path = fake_proxy(tmp_path / "path-bin")
    monkeypatch.setenv("PATH", str(on_path.parent))
    (tmp_path / "labspace.yaml").write_text("")
    assert find_proxy(load(tmp_path / "labspace.yaml", environ={})) == [str(on_path)]


def test_find_proxy_not_found(tmp_path, no_proxy_anywhere):
    (tmp_path / "labspace.yaml").write_text("")
    with pytest.raises(ProxyNotFound) as info:
        find_proxy(load(tmp_path / "labspace.yaml", environ={}))
    assert str(info.value) == PROXY_NOT_FOUND.format(folder=tmp_path.resolve())


# -- configure (jupyterhub_config.py) ----------------------------------------


def test_configure_sets_values(base, monkeypatch, capsys):
    path = base / "labspace.yaml"
    path.write_text(
        "hub:\n  port: 8123\n  proxy_command: [/usr/bin/chp]\n"
        "  config:\n    Spawner:\n      mem_limit: 2G\n"
    )
    monkeypatch.setenv("LABSPACE_CONFIG", str(path))  # how `labspace up` passes it
    c = Config()
    settings = configure(c)
    assert settings.source == path
    expected = without_services(build(settings, State(settings), ["/usr/bin/chp"]))
    got = without_services({cls: dict(c[cls]) for cls in expected})
    assert got == expected
    assert c.JupyterHub.port == 8123
    assert c.Spawner.mem_limit == "2G"
    assert c.ConfigurableHTTPProxy.command == ["/usr/bin/chp"]
    assert (base / "labspace-data" / "users").is_dir()
    assert capsys.readouterr().err == ""  # no warnings for the embedded default


def test_configure_bad_file(tmp_path, capsys):
    path = tmp_path / "labspace.yaml"
    path.write_text("hub:\n  prot: 8000\n  log_level: loud\n")
    c = Config()
    with pytest.raises(SystemExit) as info:
        configure(c, str(path))
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"{path}: 2 problems in Labspace settings\n"
        "  hub.prot: unknown key (did you mean 'port'?)\n"
        "  hub.log_level: 'loud' is not a valid choice (one of: DEBUG, INFO, WARNING, ERROR)\n"
    )
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not (tmp_path / "labspace-data").exists()
    assert "JupyterHub" not in c


def test_configure_no_proxy(tmp_path, capsys, no_proxy_anywhere):
    path = tmp_path / "labspace.yaml"
    path.write_text("")
    with pytest.raises(SystemExit) as info:
        configure(Config(), str(path))
    assert info.value.code == 2
    message = PROXY_NOT_FOUND.format(folder=tmp_path.resolve())
    assert capsys.readouterr().err == f"Labspace cannot start: {message}\n"


def test_configure_data_dir_not_creatable(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "labspace.yaml"
    path.write_text("data_dir: a-file/data\nhub:\n  proxy_command: [/usr/bin/chp]\n")
    with pytest.raises(SystemExit) as info:
        configure(Config(), str(path))
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"Labspace cannot start: data_dir: {tmp_path.resolve()}/a-file/data cannot be created: "
        "Not a directory (choose a writable folder)\n"
    )


# -- state -------------------------------------------------------------------


def test_prepare_makes_an_open_data_dir_private(setup, base):
    """data_dir left readable by others (an older Labspace, a umask of 022):
    the next start makes it 0700 and its databases 0600."""
    data = base / "labspace-data"
    (data / "secrets").mkdir(parents=True)
    for path in (data, data / "secrets"):
        path.chmod(0o755)
    databases = ["jupyterhub.sqlite", "accounting.sqlite", "accounting-outbox.sqlite-wal"]
    for name in databases:
        (data / name).write_text("")
        (data / name).chmod(0o644)
    (data / "notes.txt").write_text("")
    (data / "notes.txt").chmod(0o644)
    setup("")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "secrets").stat().st_mode) == 0o700
    for name in databases:
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((data / "notes.txt").stat().st_mode) == 0o644  # not ours to judge
    assert sorted(p.name for p in data.iterdir()) == sorted(
        [*databases, "notes.txt", "secrets", "users"]
    )  # the write check leaves nothing behind


def test_new_data_dir_is_private(setup, base):
    setup("")
    assert stat.S_IMODE((base / "labspace-data").stat().st_mode) == 0o700


def test_configure_sets_a_private_umask(base, monkeypatch):
    (base / "labspace.yaml").write_text("hub:\n  proxy_command: [/usr/bin/chp]\n")
    os.umask(0o022)
    configure(Config(), str(base / "labspace.yaml"))
    assert os.umask(0o022) == 0o077


SSO = (
    "auth:\n  type: oidc\n  client_id: c\n  authorize_url: https://idp/a\n"
    "  token_url: https://idp/t\n  userdata_url: https://idp/u\n  groups_claim: groups\n"
)


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        pytest.param(SSO + "  admin_groups: [platform-admins]\n", ["platform-admins"], id="sso"),
        pytest.param(SSO, None, id="sso-no-admin-groups"),
        pytest.param("", None, id="shared-password"),
    ],
)
def test_admin_groups_hold_the_labspace_admin_role(setup, text, groups):
    """People who are hub admins through auth.admin_groups administer the services
    too: the labspace-admin role lists their groups next to hub.admin_users."""
    settings, _ = setup(text, environ={"LABSPACE_AUTH_CLIENT_SECRET": "s"} if text else None)
    role = admin_role(settings, ["custom:labspace-accounting:admin"])
    assert role["users"] == ["admin"]
    assert role.get("groups") == groups


def test_ensure_secret_tightens_mode(tmp_path):
    path = tmp_path / "secrets" / "token"
    value = ensure_secret(path)
    path.chmod(0o644)
    assert ensure_secret(path) == value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_ensure_secret_empty_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("\n")
    with pytest.raises(StateError) as info:
        ensure_secret(path)
    assert str(info.value) == f"{path}: is empty (delete it and a new secret is generated)"


def test_ensure_secret_unwritable(tmp_path):
    # a regular file where the folder should be: refused even for root
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    with pytest.raises(StateError) as info:
        ensure_secret(blocked / "secrets" / "token")
    assert str(info.value) == (
        f"{blocked / 'secrets'}: cannot be written: Not a directory (make data_dir writable)"
    )


SAFE = ["alice", "bob42", "x", "a" * 48]
TRICKY = [
    "a.b",
    "a-b",
    "A-B",
    "a_b",
    "a--b",
    "a-",
    "../etc",
    ".",
    "..",
    "ünïcode",
    "Alice",
    "1abc",
    "user-has",
    "user-has-dash",
    "user@example.org",
    "a" * 49,
    "a" * 200,
    "a" * 199 + "b",
]


@pytest.mark.parametrize("name", SAFE)
def test_user_dir_name_safe_unchanged(name):
    assert user_dir_name(name) == name


@pytest.mark.parametrize("name", TRICKY)
def test_user_dir_name_unsafe_slugged(name):
    folder = user_dir_name(name)
    assert re.fullmatch(r"[a-z][a-z0-9-]*-[0-9a-f]{8}", folder), folder
    assert len(folder) <= 48
    assert "--" not in folder
    assert user_dir_name(name) == folder  # stable across restarts


def test_user_dir_names_never_collide():
    names = SAFE + TRICKY
    # a user may pick the folder name another user's name was slugged to
    lookalikes = [user_dir_name(n) for n in TRICKY]
    lookalikes += ["alice-00000000", "x-cdb4ee2a-" + "0" * 8]
    folders = [user_dir_name(n) for n in names + lookalikes]
    assert len(set(names + lookalikes)) == len(names + lookalikes)  # the table itself
    assert len(set(folders)) == len(folders)


# -- where the hub is reached: hub.hub_ip, hub.connect_host, hub.proxy_api_url --

EVERY_ADDRESS = "0.0.0.0"  # noqa: S104 (what the chart binds)

# what the chart writes into labspace.yaml (helm/labspace/templates/hub/configmap.yaml)
CHART_HUB = """\
hub:
  hub_ip: 0.0.0.0
  connect_host: labspace-hub
  proxy_api_url: http://labspace-proxy-api:8001
  proxy_url: http://labspace-proxy-public:8000
  cleanup_servers: false
"""


def test_hub_address_defaults_keep_loopback(setup):
    settings, state = setup("")
    values = build(settings, state, PROXY)
    assert values["JupyterHub"]["hub_ip"] == "127.0.0.1"
    assert "hub_connect_url" not in values["JupyterHub"]
    assert "should_start" not in values["ConfigurableHTTPProxy"]
    urls = {s["name"]: s.get("url") for s in values["JupyterHub"]["services"]}
    assert urls["accounting"] == f"http://127.0.0.1:{settings.get('accounting.port')}"
    assert urls["catalog"] == f"http://127.0.0.1:{settings.get('catalog.port')}"
    (catalog,) = [s for s in values["JupyterHub"]["services"] if s["name"] == "catalog"]
    config = json.loads(catalog["environment"]["LABSPACE_CATALOG_CONFIG"])
    assert config["bind_ip"] == "127.0.0.1"
    assert "hub_api_url" not in config  # JupyterHub's own JUPYTERHUB_API_URL is local already


def test_chart_hub_address_and_external_proxy(setup, base):
    settings, state = setup(CHART_HUB)
    values = build(settings, state, [])
    assert values["JupyterHub"]["hub_ip"] == EVERY_ADDRESS
    assert values["JupyterHub"]["hub_connect_url"] == "http://labspace-hub:8081"
    # the proxy runs in its own Deployment: the hub drives its API, starts nothing
    assert values["ConfigurableHTTPProxy"] == {
        "auth_token": secret(base, "proxy-auth-token"),
        "should_start": False,
        "api_url": "http://labspace-proxy-api:8001",
    }
    # the proxy pod reaches each service through the hub's Service; each listens on hub_ip
    for service in values["JupyterHub"]["services"]:
        if "url" not in service:  # the accounting deliverer only sends
            continue
        port = settings.get(f"{service['name']}.port")
        assert service["url"] == f"http://labspace-hub:{port}"
        env = service["environment"]
        config = json.loads(env["LABSPACE_" + service["name"].upper() + "_CONFIG"])
        assert config["bind_ip"] == EVERY_ADDRESS
        assert config["hub_api_url"] == "http://127.0.0.1:8081/hub/api"  # no Service hop
        if service["name"] == "catalog":  # it reaches workspaces through the proxy's Service
            assert config["proxy_url"] == "http://labspace-proxy-public:8000/"


def test_a_specific_hub_ip_is_where_services_are_reached(setup):
    settings, state = setup("hub:\n  hub_ip: 127.0.0.2\n")
    values = build(settings, state, PROXY)
    assert "hub_connect_url" not in values["JupyterHub"]
    (catalog,) = [s for s in values["JupyterHub"]["services"] if s["name"] == "catalog"]
    assert catalog["url"] == f"http://127.0.0.2:{settings.get('catalog.port')}"


def test_configure_with_external_proxy_needs_no_proxy_here(base, capsys, no_proxy_anywhere):
    path = base / "labspace.yaml"
    path.write_text(CHART_HUB)
    c = Config()
    configure(c, str(path))
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.hub_connect_url == "http://labspace-hub:8081"
    assert capsys.readouterr().err == ""


HEX64 = "0123456789abcdef" * 4
ENV_SECRETS = {
    "CONFIGPROXY_AUTH_TOKEN": "proxy-token-from-the-chart",
    "JPY_COOKIE_SECRET": HEX64,
    "JUPYTERHUB_CRYPT_KEY": HEX64[::-1],
}


def test_secrets_from_the_environment_are_kept(base):
    path = base / "labspace.yaml"
    path.write_text("auth:\n  type: github\n  client_id: x\n  client_secret: y\n")
    settings = load(path, environ={})
    state = State(settings, environ=ENV_SECRETS)
    state.prepare()
    files = {
        "CONFIGPROXY_AUTH_TOKEN": "proxy-auth-token",
        "JPY_COOKIE_SECRET": "cookie-secret",
        "JUPYTERHUB_CRYPT_KEY": "auth-state-key",
    }
    for name, file in files.items():
        assert secret(base, file) == ENV_SECRETS[name]
        mode = (base / "labspace-data" / "secrets" / file).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    values = build(settings, state, PROXY)
    assert values["ConfigurableHTTPProxy"]["auth_token"] == ENV_SECRETS["CONFIGPROXY_AUTH_TOKEN"]
    assert values["CryptKeeper"]["keys"] == [ENV_SECRETS["JUPYTERHUB_CRYPT_KEY"].encode()]
    # a new value (a rotated chart Secret) replaces the kept one
    State(settings, environ={"CONFIGPROXY_AUTH_TOKEN": "rotated"}).prepare()
    assert secret(base, "proxy-auth-token") == "rotated"


def test_crypt_keys_rotate(setup):
    settings, _ = setup("")
    keys = [HEX64, HEX64[::-1]]
    state = State(settings, environ={"JUPYTERHUB_CRYPT_KEY": ";".join(keys)})
    assert state.crypt_keys() == keys


def test_jupyterhub_reads_the_same_cookie_secret(setup, base, monkeypatch):
    """JupyterHub reads JPY_COOKIE_SECRET before cookie_secret_file: both hold one value."""
    from jupyterhub.app import JupyterHub

    settings, _ = setup("")
    State(settings, environ=ENV_SECRETS).prepare()
    monkeypatch.setenv("JPY_COOKIE_SECRET", ENV_SECRETS["JPY_COOKIE_SECRET"])
    hub = JupyterHub(cookie_secret_file=str(base / "labspace-data/secrets/cookie-secret"))
    hub.init_secrets()
    assert hub.cookie_secret == bytes.fromhex(secret(base, "cookie-secret"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param(
            "JPY_COOKIE_SECRET",
            "not-hex-at-all",
            "JPY_COOKIE_SECRET: not hexadecimal (an even number of hex digits, "
            "e.g. `openssl rand -hex 32`)",
            id="cookie",
        ),
        pytest.param(
            "JUPYTERHUB_CRYPT_KEY",
            "c2hvcnQ=",
            "JUPYTERHUB_CRYPT_KEY: not a 32-byte key in hex (64 hex digits, "
            "e.g. `openssl rand -hex 32`)",
            id="crypt",
        ),
    ],
)
def test_bad_secret_in_the_environment_is_named_not_shown(base, capsys, name, value, message):
    path = base / "labspace.yaml"
    path.write_text("hub:\n  proxy_command: [/usr/bin/chp]\n")
    c = Config()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(name, value)
        with pytest.raises(SystemExit) as info:
            configure(c, str(path))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"Labspace cannot start: {message}\n"
    assert value not in err


def test_each_service_listens_on_hub_ip_not_on_its_url_host(setup):
    """The runner of every service (``ServiceContext.bind_ip``) listens on
    ``hub.hub_ip``: the URL's host, the hub's Service, names no address of the pod;
    it calls the hub's API on the pod (``api_url``), not out through that Service."""
    from labspace.services.kit.run import ServiceContext

    settings, state = setup(CHART_HUB)
    for service in build(settings, state, [])["JupyterHub"]["services"]:
        if "url" not in service:
            continue
        env = {
            **service["environment"],
            "JUPYTERHUB_SERVICE_URL": service["url"],
            "JUPYTERHUB_API_URL": "http://labspace-hub:8081/hub/api",  # what JupyterHub sets
        }
        ctx = ServiceContext(service["name"], env)
        assert ctx.bind_ip == EVERY_ADDRESS
        assert ctx.api_url == "http://127.0.0.1:8081/hub/api"
    # a runner started without the hub's word: an IP in its URL, else loopback
    assert ServiceContext("x", {"JUPYTERHUB_SERVICE_URL": "http://127.0.0.2:1"}).bind_ip == (
        "127.0.0.2"
    )
    assert ServiceContext("x", {"JUPYTERHUB_SERVICE_URL": "http://hub:1"}).bind_ip == "127.0.0.1"


# -- labspace up with the proxy run apart (labspace.launcher) -------------------


def test_up_with_proxy_apart_checks_no_proxy_and_no_proxy_port(base, no_proxy_anywhere):
    """``labspace up`` in the chart's hub pod: no configurable-http-proxy there,
    and the proxy's ports (here held by someone else) are not its to check."""
    from harness import free_port

    from labspace import launcher

    busy = [socket.socket(), socket.socket()]
    for s in busy:
        s.bind(("127.0.0.1", 0))
        s.listen()
    port, api_port = (s.getsockname()[1] for s in busy)
    hub_port = free_port()
    path = base / "labspace.yaml"
    path.write_text(
        f"hub:\n  port: {port}\n  proxy_api_port: {api_port}\n  hub_port: {hub_port}\n"
        "  proxy_api_url: http://labspace-proxy-api:8001\n  cleanup_servers: false\n"
        "accounting: {enabled: false}\ncatalog: {enabled: false}\n"
    )
    try:
        prepared = launcher.prepare(str(path))
        own = path.with_name("own-proxy.yaml")
        own.write_text(path.read_text().replace("proxy_api_url: ", "proxy_command: [/bin/true] #"))
        with pytest.raises(launcher.LaunchError) as info:  # its own proxy: both checked
            launcher.prepare(str(own))
    finally:
        for s in busy:
            s.close()
    assert f"hub.port: 127.0.0.1:{port} is not free" in str(info.value)
    assert f"hub.proxy_api_port: 127.0.0.1:{api_port} is not free" in str(info.value)
    # a pod's log is kept and shared: the new admin password is not in it
    assert launcher.banner(prepared.settings, prepared.state) == (
        f"Labspace is running at http://127.0.0.1:{hub_port}/hub/ behind the proxy whose API "
        "is http://labspace-proxy-api:8001 (set hub.public_url to the address users open) — "
        f"log in as 'admin' with the password kept in {prepared.state.admin_password_file}"
    )
    assert prepared.state.admin_password_created


def test_up_names_the_public_url_with_proxy_apart(setup):
    from labspace import launcher

    settings, _ = setup(CHART_HUB + "  public_url: https://hub.example.org/\n")
    assert launcher.where(settings) == "https://hub.example.org/"
    assert settings.hub_local_url() == "http://127.0.0.1:8081/hub/"
