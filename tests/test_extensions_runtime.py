"""An app's process as the workspace runs it: ready only when the readiness path
answers the expected status, a clear error with the log when it does not, log
lines kept, stop and restart. Uses the real demo app (labspace.extensions.demo_app)."""

from __future__ import annotations

import logging
import os
import sys

import httpx
import pytest

from labspace.extensions.runtime import AppConfig, AppRuntime, AppStartError

DEMO = [sys.executable, "-m", "labspace.extensions.demo_app"]


def runtime(tmp_path, **options) -> AppRuntime:
    config = AppConfig(
        name="demo",
        title="Demo",
        command=options.pop("command", [*DEMO, "--port={port}"]),
        ready_path="/healthz",
        timeout=options.pop("timeout", 15),
        **options,
    )
    return AppRuntime(config, "/user/a/", str(tmp_path), logging.getLogger("test"))


@pytest.fixture
async def stop_after():
    started: list[AppRuntime] = []
    yield started.append
    for rt in started:
        await rt.stop()


async def test_ready_only_when_path_answers(tmp_path, stop_after):
    rt = runtime(tmp_path, command=[*DEMO, "--port={port}", "--delay=1"])
    stop_after(rt)
    await rt.ensure_started()
    state = rt.state()
    assert state["running"] and state["ready"] and state["pid"]
    r = httpx.get(f"http://127.0.0.1:{rt.port}/healthz")
    assert r.status_code == 200
    assert any("demo app listening" in line for line in rt.tail(10))


async def test_wrong_status_is_not_ready(tmp_path):
    rt = runtime(tmp_path, ready_status=204, timeout=2)
    with pytest.raises(AppStartError, match=r"Demo did not answer /healthz with 204 within 2 s"):
        await rt.ensure_started()
    assert not rt.running
    assert "stopping it" in rt.tail(1)[0]


async def test_exit_while_starting_shows_its_output(tmp_path):
    rt = runtime(tmp_path, command=[*DEMO, "--port=not-a-number"])
    with pytest.raises(AppStartError, match=r"Demo exited with code 2 while starting"):
        await rt.ensure_started()
    assert any("invalid int value" in line for line in rt.tail(20))


async def test_missing_command(tmp_path):
    rt = runtime(tmp_path, command=["/nonexistent/app", "{port}"])
    with pytest.raises(AppStartError, match="Demo could not start"):
        await rt.ensure_started()


async def test_stop_and_restart(tmp_path, stop_after):
    rt = runtime(tmp_path)
    stop_after(rt)
    await rt.ensure_started()
    first = rt.state()["pid"]
    await rt.restart()
    second = rt.state()["pid"]
    assert second != first and rt.state()["ready"]
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    await rt.stop()
    assert not rt.state()["running"] and rt.state()["pid"] is None
    assert rt.tail(1) == ["[labspace] demo stopped"]
    await rt.ensure_started()  # the next request starts it again
    assert rt.state()["ready"]


async def test_unix_socket_in_private_folder(tmp_path, stop_after):
    rt = runtime(tmp_path, command=[*DEMO, "--unix-socket={unix_socket}"], unix_socket=True)
    stop_after(rt)
    await rt.ensure_started()
    folder = os.path.dirname(rt.unix_socket)
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert rt.state()["port"] is None


async def test_environment_and_cwd(tmp_path, stop_after):
    (tmp_path / "work").mkdir()
    rt = runtime(tmp_path, environment={"DEMO_GREETING": "hi from {base_url}"}, cwd="work")
    stop_after(rt)
    await rt.ensure_started()
    page = httpx.get(f"http://127.0.0.1:{rt.port}/").text
    assert "hi from /user/a/" in page and str(tmp_path / "work") in page


def test_log_lines_are_bounded(tmp_path):
    rt = runtime(tmp_path)
    for i in range(2000):
        rt.lines.append(str(i))
    assert rt.tail(3) == ["1997", "1998", "1999"] and len(rt.tail(5000)) == 1000
