"""A docker warm pool member's listener: ``python -m labspace.warm.container``.

Runs inside a pool container (``spawners.docker_warm``) as the workspace user:
it preloads the workspace server (``labspace.warm.member.preload``), then
waits on a unix socket in a folder only root and this user reach (the hub's
``<data_dir>/warm/<member>/sock``, bind-mounted at ``/run/labspace-pool``) for
one claim. Nothing of anyone is in the container until then: no token, no
user environment, no home (an empty placeholder), no port.

The protocol is one JSON line per connection, one JSON line back:

- ``{"op": "ping"}`` -> ``{"ok": true, "pid": ..., "missing": [...]}``
  (the hub's "ready" check);
- ``{"op": "claim", "claim": {"argv", "env", "cwd", "umask"?}}`` ->
  ``{"ok": true, "pid": ...}``, then the socket is closed and removed and this
  process becomes the workspace (``labspace.warm.member.become``); a bad claim
  gets ``{"ok": false, "error": "claim.env: ..."}`` and the member exits (2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from typing import Any

from labspace.warm import member

CONNECTION_TIMEOUT_S = 10.0
MAX_MESSAGE = 1024 * 1024


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labspace.warm.container")
    parser.add_argument("--socket", required=True, help="the unix socket to wait on")
    args, _room = parser.parse_known_args([a for a in argv if not a.startswith("--room=")])
    return args


def read_message(conn: socket.socket) -> Any:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_MESSAGE:
            raise ValueError("message too long")
    return json.loads(data or b"null")


def reply(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def serve(path: str, missing: list[str]) -> dict[str, Any]:
    """Answer pings until a good claim comes; return it (socket closed)."""
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(4)
    try:
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(CONNECTION_TIMEOUT_S)
                try:
                    message = read_message(conn)
                except (OSError, ValueError) as e:
                    reply_safely(conn, {"ok": False, "error": f"bad message: {e}"})
                    continue
                op = message.get("op") if isinstance(message, dict) else None
                if op == "ping":
                    reply_safely(conn, {"ok": True, "pid": os.getpid(), "missing": missing})
                    continue
                if op != "claim":
                    reply_safely(conn, {"ok": False, "error": "op: expected ping or claim"})
                    continue
                claim = message.get("claim")
                try:
                    member.check_claim(claim)
                except member.BadClaim as e:
                    reply_safely(conn, {"ok": False, "error": str(e)})
                    print(f"labspace warm member: refused: {e}", file=sys.stderr, flush=True)
                    os._exit(member.EXIT_BAD_CLAIM)
                reply_safely(conn, {"ok": True, "pid": os.getpid()})
                return claim
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


def reply_safely(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        reply(conn, message)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    missing = member.preload()
    claim = serve(args.socket, missing)
    member.become(claim)


if __name__ == "__main__":
    main()
