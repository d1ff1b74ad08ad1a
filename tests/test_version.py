"""``labspace version`` without a hub: what it reads from the databases, what it
says when nothing (or something else) answers, and that it neither makes nor
changes a database, nor prints a database URL. A real hub answering it is in
tests/e2e/test_upgrade.py (after an upgrade, with a token)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from harness import LABSPACE, free_port

from labspace import __version__, cli, versions

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upgrade"


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def labspace_version(*args: str, cwd: Path) -> Done:
    """``labspace version ARGS`` in ``cwd``, in-process (``LABSPACE_*`` variables
    are cleared by conftest's ``no_labspace_env``)."""
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli.main, ["version", *args], prog_name="labspace")
    finally:
        os.chdir(here)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Done(result.exit_code, result.stdout, result.stderr)


def settings_file(tmp_path: Path, **values) -> Path:
    base = {"data_dir": str(tmp_path / "data"), "hub": {"port": free_port()}}
    path = tmp_path / "labspace.yaml"
    path.write_text(yaml.safe_dump({**base, **values}))
    return path


def load(data_dir: Path, name: str, sql: str | None = None) -> Path:
    data_dir.mkdir(mode=0o700, exist_ok=True)
    path = data_dir / f"{name}.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(sql if sql is not None else (FIXTURES / f"{name}.sql").read_text())
    conn.close()
    return path


def test_nothing_runs_and_no_database_is_made(tmp_path):
    config = settings_file(tmp_path)
    done = labspace_version("--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"labspace {__version__}"
    port = yaml.safe_load(config.read_text())["hub"]["port"]
    assert f"hub at http://127.0.0.1:{port}/: not running" in lines
    assert "hub database: no database yet (made at the first start)" in lines
    assert lines[-2].startswith("python 3.") and lines[-1].startswith("configurable-http-proxy")
    assert not (tmp_path / "data").exists()


def test_databases_behind_the_code_migrate_at_the_next_start(tmp_path):
    config = settings_file(tmp_path)
    data_dir = tmp_path / "data"
    for name in ("jupyterhub", "accounting", "catalog", "data"):
        load(data_dir, name)
    before = (data_dir / "accounting.sqlite").read_bytes()
    done = labspace_version("--config", str(config), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    dbs = json.loads(done.stdout)["databases"]
    assert dbs["accounting"] == {"revision": "0001", "newest": versions.newest("accounting")}
    assert dbs["catalog"]["revision"] == dbs["catalog"]["newest"] == "catalog_0001"
    assert dbs["hub"]["revision"] == "4621fec11365"  # JupyterHub 5.3's
    assert dbs["hub"]["newest"] == versions.newest("hub") != "4621fec11365"
    text = labspace_version("--config", str(config), cwd=tmp_path).stdout
    assert f"accounting database: 0001 ({dbs['accounting']['newest']} is newest: " in text
    assert "catalog database: catalog_0001 (newest)" in text
    assert (data_dir / "accounting.sqlite").read_bytes() == before  # read, not changed


def test_a_database_newer_than_the_code_says_restore_the_backup(tmp_path):
    config = settings_file(tmp_path)
    sql = "CREATE TABLE alembic_version (version_num VARCHAR(32)); "
    row = "INSERT INTO alembic_version VALUES ('0099');"  # noqa: S608 (a test's SQL)
    load(tmp_path / "data", "accounting", sql + row)
    done = labspace_version("--config", str(config), cwd=tmp_path)
    assert (
        "accounting database: 0099 (newer than this Labspace knows: made by a later "
        "release; to go back, restore the backup taken before it)"
    ) in done.stdout.splitlines()


def test_a_database_url_is_never_printed(tmp_path):
    url = "postgresql://labspace:pw-s3cret-9@127.0.0.1:1/accounting"
    config = settings_file(tmp_path, accounting={"enabled": True, "db_url": url})
    for args in ((), ("--json",)):
        done = labspace_version("--config", str(config), *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "pw-s3cret-9" not in done.stdout + done.stderr
    text = labspace_version("--config", str(config), cwd=tmp_path).stdout
    assert "accounting database: cannot be read" in text


class NotAHub(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def other_server():
    server = HTTPServer(("127.0.0.1", free_port()), NotAHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_something_else_on_the_port_is_not_taken_for_the_hub(tmp_path, other_server):
    config = settings_file(tmp_path)
    done = labspace_version("--config", str(config), "--url", other_server, cwd=tmp_path)
    assert f"hub at {other_server}: something else answers (HTTP 404)" in done.stdout


def test_a_bad_settings_file_is_named_not_replaced_by_defaults(tmp_path):
    """As the console script: exit 1, the key named, no traceback."""
    (tmp_path / "labspace.yaml").write_text("hub:\n  port: 0\n")
    done = subprocess.run(
        [*LABSPACE, "version"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "hub.port: 0 is too small" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
