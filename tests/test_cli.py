"""The ``labspace`` command as an operator runs it: in-process through click's
CliRunner, and as the installed console script for what only a real process
shows (exit status, streams, no traceback). ``labspace up`` is run up to the
point where it would start the hub; ``tests/e2e`` starts real hubs."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import click
import jupyterhub
import pytest
import yaml
from click.testing import CliRunner
from harness import free_port, workspace_pids

from labspace import __version__, cli, launcher, needs, reference
from labspace.settings import iter_keys, load
from labspace.state import State

LABSPACE = Path(sys.executable).with_name("labspace")
REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "settings.md"
ADMIN_PW = "admin-password-of-at-least-32-characters"
USER_PW = "user-pass-123"
DB_URL = "postgresql://hub:db-s3cret@db.example.org:5432/hub"
BAD = "hub:\n  port: 0\n  prot: 1\n"
BAD_LINES = [
    "  hub.prot: unknown key (did you mean 'port'?)",
    "  hub.port: 0 is too small (a whole number from 1 to 65535)",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No LABSPACE_* variables from the caller; run in an empty folder.

    ``labspace up --port`` hands the port on in ``os.environ``; set-then-delete
    makes monkeypatch restore the caller's state after the test, so the port
    cannot leak into later tests (or the hubs they start)."""
    monkeypatch.setenv(launcher.PORT_ENV, "")
    for name in list(os.environ):
        if name.startswith("LABSPACE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def invoke():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli.main, list(args), prog_name="labspace")

    return invoke


class FakeHub:
    """Stands in for the hub run by ``labspace up``; records what it was given."""

    def __init__(self):
        self.calls: list = []
        self.status = 0

    def run(self, prepared, echo):
        self.calls.append(prepared)
        return self.status


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    hub = FakeHub()
    monkeypatch.setattr(launcher, "run", hub.run)
    return hub


@pytest.fixture
def proxy_on_path(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    proxy = folder / "configurable-http-proxy"
    proxy.write_text("#!/bin/sh\nexit 0\n")
    proxy.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    return proxy


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def free_ports_yaml(port: int | None = None, catalog_port: int | None = None) -> str:
    """The hub and its services on free loopback ports, as ``labspace up`` checks them."""
    return (
        f"hub:\n  port: {port or free_port()}\n  hub_port: {free_port()}\n"
        f"  proxy_api_port: {free_port()}\n"
        f"accounting:\n  port: {free_port()}\n"
        f"catalog:\n  port: {catalog_port or free_port()}\n"
    )


def console(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABSPACE_")}
    return subprocess.run(
        [str(LABSPACE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


# -- config validate ---------------------------------------------------------


def test_validate_valid(invoke, tmp_path):
    path = write(tmp_path / "labspace.yaml", "hub:\n  port: 9000\n")
    result = invoke("config", "validate", str(path))
    assert result.exit_code == 0
    assert result.stdout == f"{path}: valid\n"
    assert result.stderr == ""


def test_validate_profiles(invoke, tmp_path):
    path = write(
        tmp_path / "labspace.yaml",
        "profiles:\n"
        "  - {slug: small, default: true, memory: {guarantee: 2G, limit: 1G}}\n"
        "  - {slug: small, default: true}\n",
    )
    result = invoke("config", "validate", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: 3 problems in Labspace settings",
        "  profiles[0].memory.guarantee: 2G is more than the limit 1G (at most the limit)",
        "  profiles[1].slug: 'small' is also profiles[0] (give each profile its own slug)",
        "  profiles[1].default: profiles[0] is the default already (mark one profile default)",
    ]
    assert result.stdout == ""
    fixed = write(path, "profiles:\n  - {slug: small, default: true}\n  - {slug: big}\n")
    assert invoke("config", "validate", str(fixed)).stdout == f"{fixed}: valid\n"


def test_validate_default_path(invoke, tmp_path, monkeypatch):
    write(tmp_path / "labspace.yaml", "")
    assert invoke("config", "validate").stdout == f"{tmp_path / 'labspace.yaml'}: valid\n"
    other = write(tmp_path / "other.yaml", "")
    monkeypatch.setenv("LABSPACE_CONFIG", str(other))
    assert invoke("config", "validate").stdout == f"{other}: valid\n"


def test_validate_invalid(invoke, tmp_path):
    path = write(tmp_path / "labspace.yaml", BAD)
    result = invoke("config", "validate", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{path}: 2 problems in Labspace settings", *BAD_LINES]
    assert result.stdout == ""


def test_validate_missing(invoke, tmp_path):
    result = invoke("config", "validate", "missing.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1] == (
        f"  (file): not found (create it, or run `labspace config init {tmp_path}/missing.yaml`)"
    )


def test_validate_warns(invoke, tmp_path, monkeypatch):
    monkeypatch.setenv("LABSPACE_AUTH_CLIENT_SECRET", "client-s3cret")
    path = write(tmp_path / "labspace.yaml", "auth:\n  type: github\n  client_id: labspace\n")
    result = invoke("config", "validate", str(path))
    assert result.exit_code == 0
    assert result.stdout == f"{path}: valid\n"
    assert result.stderr == (
        "warning: auth: no allow rule is set, so only hub.admin_users (admin) can sign in "
        "(set auth.allowed_groups, auth.allowed_users, auth.allowed_organizations "
        "or auth.allow_all)\n"
    )


def test_console_script_validate(tmp_path):
    bad = write(tmp_path / "bad.yaml", BAD)
    result = console("config", "validate", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{bad}: 2 problems in Labspace settings", *BAD_LINES]
    assert result.stdout == ""
    good = write(tmp_path / "good.yaml", "")
    result = console("config", "validate", str(good), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{good}: valid\n", "")


# -- config show -------------------------------------------------------------


@pytest.fixture
def with_secrets(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LABSPACE_HUB_DB_URL", DB_URL)
    return write(
        tmp_path / "labspace.yaml",
        f"hub:\n  port: 9000\nauth:\n  admin_password: {ADMIN_PW}\n  user_password: {USER_PW}\n",
    )


def test_show_hides_secrets(invoke, with_secrets):
    result = invoke("config", "show", str(with_secrets))
    assert result.exit_code == 0
    for secret in (ADMIN_PW, USER_PW, "db-s3cret"):
        assert secret not in result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["hub"]["db_url"] == "<hidden>"
    assert shown["auth"]["admin_password"] == "<hidden>"
    assert shown["auth"]["user_password"] == "<hidden>"
    assert shown["hub"]["port"] == 9000
    assert shown["backend"]["default_url"] == "/lab"  # defaults filled in
    assert shown["backend"]["image"] == "labspace/workspace:latest"
    assert shown["backend"]["docker"] == {"network": "host", "home": "volume", "uid": 1000}
    assert shown["profiles"] == []
    assert list(shown) == [
        "data_dir", "hub", "auth", "backend", "profiles", "accounting", "catalog", "data"
    ]  # fmt: skip


def test_show_json(invoke, with_secrets):
    as_yaml = yaml.safe_load(invoke("config", "show", str(with_secrets)).stdout)
    result = invoke("config", "show", "--json", str(with_secrets))
    assert result.exit_code == 0
    assert json.loads(result.stdout) == as_yaml
    assert ADMIN_PW not in result.stdout


def test_show_invalid(invoke, tmp_path):
    path = write(tmp_path / "labspace.yaml", BAD)
    result = invoke("config", "show", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == BAD_LINES
    assert result.stdout == ""


# -- config init -------------------------------------------------------------


def test_init_writes_valid_file(invoke, tmp_path):
    result = invoke("config", "init")
    assert result.exit_code == 0
    assert result.stdout == "Wrote labspace.yaml\n"
    written = tmp_path / "labspace.yaml"
    assert written.read_text() == reference.default_yaml()
    assert invoke("config", "validate", str(written)).exit_code == 0


def test_init_refuses_to_overwrite(invoke, tmp_path):
    path = write(tmp_path / "mine.yaml", "hub:\n  port: 9000\n")
    result = invoke("config", "init", "mine.yaml")
    assert result.exit_code == 1
    assert result.stderr == "mine.yaml: exists already (use --force to overwrite)\n"
    assert path.read_text() == "hub:\n  port: 9000\n"
    result = invoke("config", "init", "--force", "mine.yaml")
    assert result.exit_code == 0
    assert path.read_text() == reference.default_yaml()


def test_init_missing_folder(invoke, tmp_path):
    result = invoke("config", "init", "no/such/folder/labspace.yaml")
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert "no/such/folder" in result.stderr


# -- config reference --------------------------------------------------------


@pytest.mark.skipif(
    not REFERENCE.exists(), reason="docs/reference/settings.md is not committed yet"
)
def test_reference_matches_committed_docs(invoke):
    result = invoke("config", "reference")
    assert result.exit_code == 0
    assert result.stdout == REFERENCE.read_text(), (
        "docs/reference/settings.md is stale: "
        "run `labspace config reference > docs/reference/settings.md`"
    )


def test_reference_documents_every_key(invoke):
    result = invoke("config", "reference")
    assert result.exit_code == 0
    assert result.stdout.startswith("# Settings reference (`labspace.yaml`)\n")
    for path, _ in iter_keys():
        if "." in path:
            assert f"| `{path}` |" in result.stdout, path
        else:
            assert f"## `{path}`" in result.stdout, path
    assert "`LABSPACE_AUTH_ADMIN_PASSWORD_FILE`" in result.stdout


# -- version and help --------------------------------------------------------


def test_version(invoke):
    result = invoke("version")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"labspace {__version__}"
    assert f"jupyterhub {jupyterhub.__version__}" in lines
    assert lines[-2].startswith("python 3.")
    # run in an empty folder: no node_modules here, and none on PATH in a bare venv
    assert lines[-1].startswith("configurable-http-proxy ")


def test_version_names_the_proxy_it_would_run(invoke, tmp_path, proxy_command):
    (tmp_path / "labspace.yaml").write_text(f"hub:\n  proxy_command: [{proxy_command[0]}]\n")
    lines = invoke("version").stdout.splitlines()
    assert re.fullmatch(r"configurable-http-proxy \d+\.\d+\.\d+", lines[-1]), lines[-1]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


COMMANDS = list(_commands(cli.main))


def test_command_tree():
    # so that the help test below walks the real tree
    assert set(COMMANDS) >= {
        (),
        ("up",),
        ("version",),
        ("config",),
        ("config", "validate"),
        ("config", "show"),
        ("config", "init"),
        ("config", "reference"),
    }


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: "-".join(p) or "labspace")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(invoke, path, flag):
    result = invoke(*path, flag)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: {' '.join(['labspace', *path])} ")
    command = cli.main
    for name in path:
        command = command.commands[name]
    assert command.help.splitlines()[0] in result.stdout


# -- up ----------------------------------------------------------------------


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_up_refuses_bad_port(invoke, tmp_path, fake_hub, port):
    result = invoke("up", "--port", port)
    assert result.exit_code == 2
    assert "Error: Invalid value for '--port' / '-p'" in result.stderr
    assert fake_hub.calls == []
    assert list(tmp_path.iterdir()) == []  # no default file, no data_dir


def test_up_bad_file(invoke, tmp_path, fake_hub):
    path = write(tmp_path / "bad.yaml", BAD)
    result = invoke("up", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"{path}: 2 problems in Labspace settings", *BAD_LINES]
    assert fake_hub.calls == []
    assert not (tmp_path / "labspace-data").exists()


def test_up_missing_file_given(invoke, tmp_path, fake_hub):
    result = invoke("up", "--config", "missing.yaml")
    assert result.exit_code == 2
    assert "(file): not found" in result.stderr
    assert list(tmp_path.iterdir()) == []  # a file named on purpose is never invented


def test_up_no_proxy(invoke, tmp_path, fake_hub, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    # nor where Labspace is installed (this repository's node_modules)
    monkeypatch.setattr(needs, "install_folders", list)
    path = write(tmp_path / "labspace.yaml", "")
    result = invoke("up", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Labspace cannot start: hub.proxy_command: configurable-http-proxy was not found"
    )
    assert fake_hub.calls == []


def test_up_writes_default_file(invoke, tmp_path, fake_hub, proxy_on_path, monkeypatch):
    # the defaults' fixed ports may be taken on a developer's machine; busy ports
    # have a test of their own below
    monkeypatch.setattr(launcher, "busy_ports", lambda settings: [])
    result = invoke("up")
    written = tmp_path / "labspace.yaml"
    assert result.exit_code == 0
    assert result.stdout == (
        f"No settings file found: wrote the defaults to {written} (edit it, then restart).\n"
    )
    assert written.read_text() == reference.default_yaml()
    (prepared,) = fake_hub.calls
    assert prepared.settings.get("hub.port") == 8000
    assert prepared.settings.source == written
    assert (tmp_path.resolve() / "labspace-data" / "users").is_dir()


def test_up_port_and_status(invoke, tmp_path, fake_hub, proxy_on_path):
    path = write(tmp_path / "labspace.yaml", free_ports_yaml())
    port = free_port()
    fake_hub.status = 3
    result = invoke("up", "-c", str(path), "-p", str(port))
    assert result.exit_code == 3  # the hub's status
    assert result.stdout == ""  # the file existed: nothing written
    (prepared,) = fake_hub.calls
    assert prepared.settings.get("hub.port") == port  # --port overrides hub.port
    assert prepared.settings.env_sources == {"hub.port": "LABSPACE_HUB_PORT"}


def test_up_busy_port(invoke, tmp_path, fake_hub, proxy_on_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path / "labspace.yaml", free_ports_yaml(port))
        result = invoke("up", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}: 1 problem in Labspace settings",
        f"  hub.port: 127.0.0.1:{port} is not free (Address already in use); stop what uses "
        "it or choose another port (labspace up --port N)",
    ]
    assert fake_hub.calls == []


def test_up_busy_service_port(invoke, tmp_path, fake_hub, proxy_on_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path / "labspace.yaml", free_ports_yaml(catalog_port=port))
        result = invoke("up", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1] == (
        f"  catalog.port: 127.0.0.1:{port} is not free (Address already in use); stop what "
        "uses it or choose another port (set catalog.port)"
    )
    assert fake_hub.calls == []


def test_console_script_up_bad_file(tmp_path):
    path = write(tmp_path / "bad.yaml", BAD)
    result = console("up", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{path}: 2 problems in Labspace settings", *BAD_LINES]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_console_script_up_bad_file_leaves_no_hub_process(tmp_path):
    """``labspace up`` starts the hub's process before it checks the settings (it
    imports JupyterHub meanwhile); a failed check ends it: nothing runs in the
    folder afterwards."""
    path = write(tmp_path / "bad.yaml", BAD)
    result = console("up", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert [pid for pid in workspace_pids(tmp_path) if pid != os.getpid()] == []  # we run here too


def test_up_in_an_unwritable_folder_says_so(invoke, tmp_path, monkeypatch):
    # a regular file where the folder should be: no default settings can be written
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    monkeypatch.setattr(launcher.settings_mod, "DEFAULT_PATH", str(blocked / "labspace.yaml"))
    result = invoke("up")
    assert result.exit_code == 2
    assert "no settings file, and none can be written here" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def read_only(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` is read-only: a read-only bind
    mount in a mount namespace of its own as root (who may write anywhere
    else), the folder's mode otherwise."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return []
    if not Path("/usr/bin/unshare").exists():
        pytest.skip("unshare is not installed (util-linux)")
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "sh", str(folder)]


def test_console_script_up_read_only_data_dir(tmp_path, proxy_command):
    """A data_dir that cannot be written (here: the state of an earlier start on
    a read-only mount) is one line naming the folder and the fix."""
    data = tmp_path / "data"
    values = yaml.safe_load(free_ports_yaml())
    values["hub"]["proxy_command"] = proxy_command
    values["data_dir"] = str(data)
    values["accounting"]["enabled"] = values["catalog"]["enabled"] = False
    path = write(tmp_path / "labspace.yaml", yaml.safe_dump(values))
    settings = load(path, environ={})
    state = State(settings)
    state.prepare()
    state.admin_password(), state.proxy_token()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABSPACE_")}
    result = subprocess.run(
        [*read_only(data), str(LABSPACE), "up", "--config", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 2 and "mount" in result.stderr:
        pytest.skip(f"no read-only bind mount here: {result.stderr.strip()}")
    assert result.returncode == 2, result.stdout + result.stderr
    why = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert result.stderr.splitlines() == [
        f"Labspace cannot start: data_dir: {data} cannot be written: {why} "
        "(make it writable by this user, or set data_dir to a writable folder)"
    ]
    assert result.stdout == ""


def test_banner_prints_the_admin_password_only_when_it_is_made(tmp_path):
    """The start that generates the admin password prints it; later starts say
    where it is kept, never the password itself."""
    path = write(tmp_path / "labspace.yaml", "hub:\n  port: 8123\n")
    kept = tmp_path / "labspace-data" / "secrets" / "admin-password"
    first = State(load(path, environ={}))
    first.prepare()
    password = first.admin_password()
    assert launcher.banner(first.settings, first) == (
        "Labspace is running at http://127.0.0.1:8123/ — log in as 'admin' with password "
        f"{password} (kept in {kept})"
    )
    later = State(load(path, environ={}))
    later.prepare()
    assert later.admin_password() == password
    line = launcher.banner(later.settings, later)
    assert line == (
        "Labspace is running at http://127.0.0.1:8123/ — log in as 'admin' with the "
        f"password kept in {kept}"
    )
    assert password not in line
