"""The service kit's runner and context (labspace.services.kit.run), on a real
process: a service answers at once (503 while it starts, so the hub is never held
up), serves once started, and stops within 2 s of SIGTERM or SIGINT, even when
its parent ignored SIGINT (a shell script or a service wrapper does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from labspace.services.kit.run import ServiceContext
from tests.harness import free_port

HERE = Path(__file__).resolve().parent


def start(tmp_path: Path, **config) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = {"stopped_file": str(tmp_path / "stopped"), **config}
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/demo/",
        "LABSPACE_DEMO_CONFIG": json.dumps(config),
    }
    env.pop("JUPYTERHUB_COOKIE_SECRET", None)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "kit_service.py")],
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, f"http://127.0.0.1:{port}/services/demo/ping"


def first_answer(proc: subprocess.Popen, url: str, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def stop_within(proc: subprocess.Popen, sig: int, seconds: float) -> float:
    began = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=seconds + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running {seconds + 5} s after signal {sig}") from None
    took = time.monotonic() - began
    assert took < seconds, f"took {took:.2f} s to stop"
    return took


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_answers_503_while_starting_then_serves_then_stops_within_2s(tmp_path, sig):
    proc, url = start(tmp_path, start_delay=5)
    try:
        r = first_answer(proc, url)
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "1"
        assert r.json() == {
            "status": 503,
            "message": "The demo service is starting; try again in a moment",
        }
        # the service's own URL, which JupyterHub asks: anything but a 5xx lets the hub go on
        page = httpx.get(url.rsplit("/", 1)[0] + "/", timeout=2)
        assert page.status_code == 200
        assert "The demo service is starting" in page.text
        assert page.headers["Refresh"] == "2"
        deadline = time.monotonic() + 20
        while r.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
            r = httpx.get(url, timeout=2)
        assert r.status_code == 200 and r.json() == {"ok": True}
        stop_within(proc, sig, 2.0)
        assert proc.returncode == 0
        assert (tmp_path / "stopped").read_text() == "stopped\n"  # its stop() ran
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_signal_while_starting_stops_it_at_once(tmp_path):
    proc, url = start(tmp_path, start_delay=30)
    try:
        assert first_answer(proc, url).status_code == 503
        stop_within(proc, signal.SIGTERM, 2.0)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("how", ["stop_delay", "blocking_stop"])
def test_a_slow_stop_is_cut_short(tmp_path, how):
    proc, url = start(tmp_path, **{how: 30})
    try:
        deadline = time.monotonic() + 20
        while first_answer(proc, url).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        stop_within(proc, signal.SIGTERM, 2.5)
        assert not (tmp_path / "stopped").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_context_keeps_its_cookie_secret_and_reads_secrets_from_files(tmp_path):
    (tmp_path / "url").write_text("postgres://u:p@127.0.0.1:5432/x\n")
    env = {"LABSPACE_DEMO_CONFIG": json.dumps({"data_dir": str(tmp_path)})}
    first = ServiceContext("demo", env).cookie_secret()
    assert ServiceContext("demo", env).cookie_secret() == first  # a restart keeps it
    kept = tmp_path / "secrets" / "demo-cookie-secret"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert ServiceContext("demo", env).db_url == f"sqlite:///{tmp_path / 'demo.sqlite'}"
    env["LABSPACE_DEMO_DB_URL_FILE"] = str(tmp_path / "url")  # not read: the config names files
    assert ServiceContext("demo", env).db_url == f"sqlite:///{tmp_path / 'demo.sqlite'}"
    config = {"data_dir": str(tmp_path), "db_url_file": str(tmp_path / "url")}
    assert "db_url_file" in json.dumps(config) and "u:p" not in json.dumps(config)
    ctx = ServiceContext("demo", {"LABSPACE_DEMO_CONFIG": json.dumps(config)})
    assert ctx.db_url == "postgresql+psycopg://u:p@127.0.0.1:5432/x"


def test_context_refuses_a_config_that_is_not_a_json_object():
    with pytest.raises(SystemExit, match="LABSPACE_DEMO_CONFIG must be a JSON object"):
        _ = ServiceContext("demo", {"LABSPACE_DEMO_CONFIG": "[1]"}).config
    with pytest.raises(SystemExit, match="LABSPACE_DEMO_CONFIG is not JSON"):
        _ = ServiceContext("demo", {"LABSPACE_DEMO_CONFIG": "{"}).config
