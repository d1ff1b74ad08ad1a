"""One proxied app's process: start on demand, readiness, log lines, stop, restart.

jupyter-server-proxy keeps this state inside its request handlers and calls an
app ready on *any* HTTP answer. :class:`AppRuntime` owns it instead, so the
proxy handler and the lifecycle API share one process per app, and an app is
ready only when its readiness path answers the expected status.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from tempfile import mkdtemp
from typing import Any

import aiohttp
from jupyter_server_proxy.utils import call_with_asked_args
from simpervisor import SupervisedProcess

LOG_LINES = 1000  # per app, stdout and stderr together
MAX_LINE = 4000


class AppStartError(Exception):
    """An app did not become ready; ``str()`` says why, for the user."""


@dataclass
class AppConfig:
    """What the runtime needs to run one app (from an AppSpec or a jupyter-server-proxy
    ServerProcess)."""

    name: str
    title: str
    command: Any  # list of template strings, or a callable returning one
    environment: Any = field(default_factory=dict)
    timeout: float = 30.0
    ready_path: str = "/"
    ready_status: int | None = 200  # None: any status below 500
    unix_socket: bool | str = False
    port: int = 0
    cwd: str = ""  # absolute, or relative to the home folder
    icon: str = ""
    category: str = "Apps"
    source: str = "bundled"  # bundled | entry-point | config | catalog
    version: str = ""


def _render(value, args: dict):
    if isinstance(value, str):
        return value.format(**args)
    if isinstance(value, list | tuple):
        return [_render(v, args) for v in value]
    if isinstance(value, dict):
        return {_render(k, args): _render(v, args) for k, v in value.items()}
    raise ValueError(f"cannot render a {type(value).__name__}")


class LoggedProcess(SupervisedProcess):
    """A SupervisedProcess whose output goes to a ring buffer and that is not
    restarted when it exits: the next request to the app starts it again."""

    def __init__(self, name, *args, lines: collections.deque, **kwargs):
        super().__init__(name, *args, **kwargs)
        self.lines = lines
        self.exit_code: int | None = None
        self._reader: asyncio.Task | None = None

    async def start(self):
        await super().start()
        stream = self.proc._proc.stdout
        if stream is not None:
            self._reader = asyncio.ensure_future(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader):
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream's limit
                line = b"<line too long>\n"
            if not line:
                return
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n")[:MAX_LINE])

    async def _restart_process_if_needed(self):
        self.exit_code = await self.proc.wait()
        with contextlib.suppress(ValueError):
            from simpervisor.atexitasync import remove_handler

            remove_handler(self._handle_signal)
        self.running = False
        self.lines.append(f"[labspace] {self.name} exited with code {self.exit_code}")


class AppRuntime:
    """The process of one app; shared by its proxy handler and the lifecycle API."""

    def __init__(self, config: AppConfig, base_url: str, home: str, log: logging.Logger):
        self.config = config
        self.base_url = base_url
        self.home = home
        self.log = log
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.lock = asyncio.Lock()
        self.proc: LoggedProcess | None = None
        self.ready = False
        self._port: int | None = None
        self._unix_socket: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.running)

    @property
    def unix_socket(self) -> str | None:
        option = self.config.unix_socket
        if option and self._unix_socket is None:
            if option is True:
                # a private folder: only this user reaches the app
                self._unix_socket = os.path.join(mkdtemp(prefix="labspace-app-"), "socket")
            else:
                self._unix_socket = str(option)
        return self._unix_socket

    @property
    def port(self) -> int:
        if self.config.unix_socket:
            return 0
        if self._port is None:
            if self.config.port:
                self._port = self.config.port
            else:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    self._port = sock.getsockname()[1]
        return self._port

    @property
    def process_args(self) -> dict:
        return {"port": self.port, "unix_socket": self.unix_socket or "", "base_url": self.base_url}

    def render(self, value):
        """Call a callable option, then fill {port}, {unix_socket} and {base_url}."""
        if callable(value):
            value = call_with_asked_args(value, self.process_args)
        return _render(value, self.process_args)

    def state(self) -> dict:
        return {
            "id": self.name,
            "title": self.config.title,
            "running": self.running,
            "ready": self.running and self.ready,
            "port": self.port or None,
            "unix_socket": bool(self.config.unix_socket),
            "pid": self.proc.proc.pid if self.running else None,
            "source": self.config.source,
            "version": self.config.version,
        }

    def tail(self, lines: int) -> list[str]:
        return list(self.lines)[-lines:] if lines > 0 else []

    def _cwd(self) -> str:
        cwd = os.path.join(self.home, self.config.cwd) if self.config.cwd else self.home
        return cwd if os.path.isdir(cwd) else self.home

    async def _is_ready(self) -> bool:
        path = _render(self.config.ready_path, self.process_args)
        if self.unix_socket:
            connector, url = aiohttp.UnixConnector(path=self.unix_socket), "http://localhost" + path
        else:
            connector, url = None, f"http://127.0.0.1:{self.port}{path}"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    expected = self.config.ready_status
                    ok = resp.status == expected if expected else resp.status < 500
                    self.log.debug("%s readiness %s: %s", self.name, path, resp.status)
                    return ok
            except (TimeoutError, aiohttp.ClientError, OSError):
                return False

    async def ensure_started(self) -> None:
        """Start the app unless it runs; return once it is ready or raise AppStartError."""
        if self.running and self.ready:
            return
        async with self.lock:
            if self.running and self.ready:
                return
            if self.running:  # started but never became ready: start afresh
                await self._stop_locked()
            await self._start_locked()

    async def _start_locked(self) -> None:
        cmd = self.render(self.config.command)
        env = {**os.environ, **self.render(self.config.environment or {})}
        self.lines.append(f"[labspace] starting {self.name}: {' '.join(cmd)}")
        self.ready = False
        proc = LoggedProcess(
            self.name,
            *cmd,
            lines=self.lines,
            env=env,
            cwd=self._cwd(),
            log=self.log,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await proc.start()
        except OSError as e:
            self.lines.append(f"[labspace] {self.name} could not start: {e}")
            raise AppStartError(f"{self.config.title} could not start: {e.strerror or e}") from e
        self.proc = proc
        self.log.info("Started app %s (pid %s)", self.name, proc.proc.pid)
        await self._wait_ready(proc)

    async def _wait_ready(self, proc: LoggedProcess) -> None:
        deadline = time.monotonic() + self.config.timeout
        interval = 0.05
        while time.monotonic() < deadline:
            if not proc.running:
                await asyncio.sleep(0.1)  # the last lines of its output
                raise AppStartError(
                    f"{self.config.title} exited with code {proc.exit_code} while starting"
                )
            if await self._is_ready():
                self.ready = True
                self.log.info("App %s is ready", self.name)
                return
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 0.5)
        expected = self.config.ready_status or "a status below 500"
        message = (
            f"{self.config.title} did not answer {self.config.ready_path} with {expected} "
            f"within {self.config.timeout:g} s"
        )
        self.lines.append(f"[labspace] {message}; stopping it")
        await self._stop_locked()
        raise AppStartError(message)

    async def _stop_locked(self) -> None:
        proc, self.proc, self.ready = self.proc, None, False
        if not (proc and proc.running):
            return
        with contextlib.suppress(ProcessLookupError):
            try:
                await asyncio.wait_for(proc.terminate(), 10)
            except TimeoutError:
                proc.proc.send_signal(9)
        self.log.info("Stopped app %s", self.name)

    async def stop(self) -> None:
        async with self.lock:
            await self._stop_locked()
            self.lines.append(f"[labspace] {self.name} stopped")

    async def restart(self) -> None:
        async with self.lock:
            await self._stop_locked()
            await self._start_locked()
