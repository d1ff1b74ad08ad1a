"""The local backend's fork server: one preloaded Python that forks pool members.

``python -m labspace.warm.forkserver --socket PATH --lifeline FD`` is started
once by the hub (``spawners.local.LocalWarmProvider``), in a session of its own
and with an environment that holds nothing of the hub's secrets or of any
user. It imports what a workspace server needs (``labspace.warm.member``) and
then answers the hub on a unix socket in a 0700 folder, one length-prefixed
JSON request per connection, from the hub's own OS user only:

- ``{"op": "fork", "id": ID}``: fork a member. The child waits on a socketpair
  for its claim and listens on no port. Answer ``{"ok": true, "pid": PID}``.
- ``{"op": "claim", "id": ID, "claim": {"argv", "env", "cwd"}}``: hand the
  member its workspace; answer ``{"ok": true, "pid": PID}`` once the child has
  the claim, which then becomes the workspace (``member.become``).
- ``{"op": "destroy", "id": ID}``: end an unclaimed member (unknown: done).
- ``{"op": "list"}``: the members, ``[{"id", "pid", "state", "created"}]``.

A bad request is answered ``{"ok": false, "error": "..."}``. The server reaps
every child it forked, claimed ones too (``LocalProcessSpawner.poll`` sees a
zombie as alive). When the hub goes (the lifeline pipe, whose other end only
the hub holds, reads end of file; or SIGTERM; or its parent changes) it kills
the unclaimed members and exits; claimed members are users' workspaces, in
sessions of their own, and live on as cold-started ones do. It keeps its pid
and its unclaimed members' pids in the folder (``forkserver.json``,
``members.json``), so that the next hub run can remove what a killed one left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 4 << 20  # a claim is an environment: far below this
REQUEST_TIMEOUT = 10.0  # s for one request's bytes to arrive or leave
ACK_TIMEOUT = 10.0  # s for a member to confirm its claim
STATE_FILE = "forkserver.json"
MEMBERS_FILE = "members.json"
SOCKET_NAME = "forkserver.sock"


# -- framing (both ends) ----------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack("!I", len(data)) + data


def recv_message(sock: socket.socket) -> dict[str, Any] | None:
    """One message from ``sock`` (None: the peer closed before one began)."""
    head = _recv_exactly(sock, 4, allow_eof=True)
    if head is None:
        return None
    (size,) = struct.unpack("!I", head)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes (at most {MAX_MESSAGE})")
    message = json.loads(_recv_exactly(sock, size))
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


def _recv_exactly(sock: socket.socket, n: int, allow_eof: bool = False) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            if allow_eof and got == 0:
                return None
            raise ConnectionError("peer closed mid-message")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def short_path(path: str, keep: list[int]) -> str:
    """``path`` for bind/connect: a unix socket's path is at most 107 bytes, so
    a longer one is reached through an open handle on its folder (Linux)."""
    if len(os.fsencode(path)) < 100:
        return path
    folder, name = os.path.split(path)
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    keep.append(fd)
    return f"/proc/self/fd/{fd}/{name}"


def proc_starttime(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), to tell it from a later
    process given the same pid; None: no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def say(message: str) -> None:
    """A log line on stderr (the hub's log), in Jupyter's format. Not the
    logging module: its configuration would be inherited by the members."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    print(f"[I {stamp} LabspaceForkServer] {message}", file=sys.stderr, flush=True)


# -- the server --------------------------------------------------------------


@dataclass
class Child:
    id: str
    pid: int
    created: float
    sock: socket.socket | None  # our end of the member's socketpair, until claimed
    state: str = "ready"  # ready | claimed


class MemberSeed:
    """What a freshly forked member carries out of the server's loop."""

    def __init__(self, sock: socket.socket):
        self.sock = sock


class ForkServer:
    """Forks members on request; see the module docstring for the protocol."""

    def __init__(self, socket_path: str, lifeline: int | None):
        self.socket_path = os.path.abspath(socket_path)
        self.folder = os.path.dirname(self.socket_path)
        self.lifeline = lifeline
        self.parent = os.getppid()
        self.children: dict[int, Child] = {}  # by pid
        self.stopping = False
        self.in_member = False
        self._fds: list[int] = []
        self.listener: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()

    # -- setting up --

    def open(self) -> None:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        st = os.stat(self.folder)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise SystemExit(
                f"fork server: {self.folder} must be a folder of this user with mode 0700"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.listener.bind(short_path(self.socket_path, self._fds))
        finally:
            os.umask(old)
        self.listener.listen(16)
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self._write_json(
            STATE_FILE,
            {
                "pid": os.getpid(),
                "starttime": proc_starttime(os.getpid()),
                "socket": self.socket_path,
            },
        )
        self._write_members()

    def _on_signal(self, signum, frame) -> None:
        if signum != signal.SIGCHLD:
            self.stopping = True

    def _write_json(self, name: str, data: Any) -> None:
        path = os.path.join(self.folder, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def _still_ours(self) -> bool:
        """The folder's files are this server's (not taken over by a newer one)."""
        try:
            with open(os.path.join(self.folder, STATE_FILE)) as f:
                return json.load(f).get("pid") == os.getpid()
        except (OSError, ValueError, AttributeError):
            return False

    def _write_members(self) -> None:
        if not self._still_ours():
            return
        self._write_json(
            MEMBERS_FILE,
            [
                {"id": c.id, "pid": c.pid, "starttime": proc_starttime(c.pid)}
                for c in self.children.values()
                if c.state == "ready"
            ],
        )

    # -- the loop --

    def run(self) -> int | MemberSeed:
        """Serve until the hub goes. In the server: its exit status; in a
        member just forked: its ``MemberSeed`` (the caller becomes it)."""
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "listener")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        if self.lifeline is not None:
            sel.register(self.lifeline, selectors.EVENT_READ, "lifeline")
        say(f"ready (pid {os.getpid()})")
        while not self.stopping:
            for key, _ in sel.select(timeout=1.0):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 512)
                elif key.data == "lifeline":
                    if not os.read(self.lifeline, 512):
                        say("the hub is gone (lifeline closed)")
                        self.stopping = True
                elif key.data == "listener":
                    seed = self._accept()
                    if seed is not None:
                        sel.close()
                        return seed
            self.reap()
            if os.getppid() != self.parent:
                say("the hub is gone (new parent)")
                self.stopping = True
        sel.close()
        self.shutdown()
        return 0

    def _accept(self) -> MemberSeed | None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return None
        with conn:
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                uid = struct.unpack(
                    "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                )[1]
                if uid != os.getuid():
                    return None
                request = recv_message(conn)
                if request is None:
                    return None
                answer = self.handle(request)
            except (OSError, ValueError) as e:
                answer = {"ok": False, "error": f"bad request: {e}"}
            if isinstance(answer, MemberSeed):
                return answer
            with contextlib.suppress(OSError):
                conn.sendall(encode(answer))
        return None

    def handle(self, request: dict[str, Any]) -> dict[str, Any] | MemberSeed:
        op = request.get("op")
        member_id = request.get("id")
        if op == "list":
            members = [
                {"id": c.id, "pid": c.pid, "state": c.state, "created": c.created}
                for c in self.children.values()
            ]
            return {"ok": True, "pid": os.getpid(), "members": members}
        if not isinstance(member_id, str) or not member_id:
            return {"ok": False, "error": f"{op}: 'id' must be a non-empty string"}
        if op == "fork":
            if any(c.id == member_id and c.state != "ending" for c in self.children.values()):
                return {"ok": False, "error": f"fork: member {member_id} exists"}
            return self.fork(member_id)
        child = next(
            (c for c in self.children.values() if c.id == member_id and c.state != "ending"),
            None,
        )
        if op == "destroy":
            if child is not None and child.state == "ready":
                self.kill(child)
            return {"ok": True}
        if op == "claim":
            if child is None or child.state != "ready":
                return {"ok": False, "error": f"claim: no member {member_id} waiting"}
            return self.claim(child, request.get("claim"))
        return {"ok": False, "error": f"unknown op {op!r} (fork, claim, destroy, list)"}

    # -- members --

    def fork(self, member_id: str) -> dict[str, Any] | MemberSeed:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the member: leave everything of the server behind
            self.in_member = True
            ours.close()
            self._leave_server()
            return MemberSeed(theirs)
        theirs.close()
        self.children[pid] = Child(member_id, pid, time.time(), ours)
        self._write_members()
        return {"ok": True, "pid": pid}

    def _leave_server(self) -> None:
        """In a new member: close the server's sockets and pipes, restore the
        signal handlers (become() resets them again)."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.listener.close()
        for child in self.children.values():
            if child.sock is not None:
                child.sock.close()
        self.children.clear()
        for fd in [self._wake_r, self._wake_w, *self._fds]:
            os.close(fd)
        if self.lifeline is not None:
            os.close(self.lifeline)

    def claim(self, child: Child, claim: Any) -> dict[str, Any]:
        from labspace.warm.member import BadClaim, check_claim

        try:
            check_claim(claim)
        except BadClaim as e:
            return {"ok": False, "error": str(e)}
        try:
            child.sock.settimeout(ACK_TIMEOUT)
            child.sock.sendall(encode(claim))
            answer = recv_message(child.sock)
        except (OSError, ValueError) as e:
            answer = {"ok": False, "error": f"member {child.id} did not take its claim: {e}"}
        if not answer or not answer.get("ok"):
            self.kill(child)
            return answer or {"ok": False, "error": f"member {child.id} ended"}
        child.state = "claimed"
        child.sock.close()
        child.sock = None
        self._write_members()
        return {"ok": True, "pid": child.pid}

    def kill(self, child: Child) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        if child.sock is not None:
            child.sock.close()
            child.sock = None
        child.state = "ending"

    def reap(self) -> None:
        """Collect every child that ended (no zombies)."""
        changed = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self.children.pop(pid, None)
            if child is not None:
                changed = True
                if child.sock is not None:
                    child.sock.close()
        if changed:
            self._write_members()

    def shutdown(self, grace: float = 5.0) -> None:
        """Kill the unclaimed members, wait for them (bounded), leave."""
        if self.in_member:
            return
        waiting = [c for c in self.children.values() if c.state != "claimed"]
        for child in waiting:
            self.kill(child)
        deadline = time.monotonic() + grace
        while any(c.pid in self.children for c in waiting) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.02)
        if self._still_ours():  # else a newer fork server has the folder
            for path in (
                self.socket_path,
                *(os.path.join(self.folder, n) for n in (MEMBERS_FILE, STATE_FILE)),
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        say(f"stopped ({len(waiting)} unclaimed member(s) ended)")


def wait_for_claim(seed: MemberSeed) -> dict[str, Any]:
    """In a member: block until the claim comes (end of file: the fork server
    is gone, and so is this member), confirm it, and return it."""
    from labspace.warm.member import BadClaim, check_claim

    sock = seed.sock
    sock.settimeout(None)
    try:
        claim = recv_message(sock)
    except (OSError, ValueError):
        claim = None
    if claim is None:
        os._exit(0)
    try:
        check_claim(claim)
    except BadClaim as e:
        with contextlib.suppress(OSError):
            sock.sendall(encode({"ok": False, "error": str(e)}))
        os._exit(2)
    sock.sendall(encode({"ok": True, "pid": os.getpid()}))
    sock.close()
    return claim


# -- the hub's end -------------------------------------------------------------


class ForkServerError(RuntimeError):
    """The fork server refused a request or did not answer."""


async def request(socket_path: str, message: dict[str, Any], timeout: float = 15.0) -> dict:
    """Send one request to the fork server at ``socket_path`` and return its
    answer; ``ForkServerError`` when it refuses or does not answer in time."""
    import asyncio

    keep: list[int] = []
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(short_path(socket_path, keep)), timeout
        )
    except (OSError, TimeoutError) as e:
        raise ForkServerError(f"fork server at {socket_path} unreachable: {e}") from e
    finally:
        for fd in keep:
            os.close(fd)
    try:
        writer.write(encode(message))
        await asyncio.wait_for(writer.drain(), timeout)
        head = await asyncio.wait_for(reader.readexactly(4), timeout)
        (size,) = struct.unpack("!I", head)
        if size > MAX_MESSAGE:
            raise ForkServerError(f"fork server answered {size} bytes")
        answer = json.loads(await asyncio.wait_for(reader.readexactly(size), timeout))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        raise ForkServerError(f"fork server did not answer {message.get('op')!r}: {e}") from e
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise ForkServerError(f"fork server refused {message.get('op')!r}: {error}")
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labspace.warm.forkserver")
    parser.add_argument("--socket", required=True, help="unix socket path, in a 0700 folder")
    parser.add_argument(
        "--lifeline", type=int, help="a pipe's read end: end of file means the hub is gone"
    )
    parser.add_argument(
        "--room", help="padding: room for a workspace's command line (member.show_as)"
    )
    args = parser.parse_args(argv)
    from labspace.warm import member

    started = time.monotonic()
    missing = member.preload()
    server = ForkServer(args.socket, args.lifeline)
    server.open()
    say(
        f"preloaded in {time.monotonic() - started:.1f}s"
        + (f" (not installed: {', '.join(missing)})" if missing else "")
    )
    outcome = server.run()
    if isinstance(outcome, MemberSeed):
        member.become(wait_for_claim(outcome))
    return outcome


if __name__ == "__main__":
    sys.exit(main())
