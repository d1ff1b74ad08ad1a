"""LabspaceHub starts the hub's managed services side by side (labspace/hubapp.py).

Real hub subprocess (``labspace up`` through the harness) with two managed
services of its own: ``first`` answers only once ``second`` has started (it
waits for the file ``second`` writes as it starts). JupyterHub alone starts
``first``, waits for it to answer, and only then would start ``second``: it
never comes up and the hub stops. Started side by side, both come up.
"""

from __future__ import annotations

import sys

import httpx
from harness import free_port

WAIT_AND_SERVE = """
import http.server, os, sys, time
port, wait_for, write = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if write:
    open(write, "w").close()
deadline = time.monotonic() + 60
while wait_for and not os.path.exists(wait_for) and time.monotonic() < deadline:
    time.sleep(0.1)
handler = http.server.SimpleHTTPRequestHandler
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"""


def service(name: str, port: int, wait_for: str, write: str) -> dict:
    return {
        "name": name,
        "url": f"http://127.0.0.1:{port}",
        "command": [sys.executable, "-c", WAIT_AND_SERVE, str(port), wait_for, write],
        "timeout": 20,  # JupyterHub gives up on a service that does not answer by then
    }


def test_managed_services_start_side_by_side(tmp_path, hub_factory, hub_settings):
    hub_settings["data"] = {"enabled": False}
    flag = str(tmp_path / "second-started")
    ports = free_port(), free_port()
    hub_settings["hub"]["config"]["JupyterHub"]["services"] += [
        service("first", ports[0], wait_for=flag, write=""),
        service("second", ports[1], wait_for="", write=flag),
    ]
    hub = hub_factory(hub_settings).start(timeout=90)
    for name in ("first", "second"):
        r = httpx.get(f"{hub.url}services/{name}/", timeout=10, follow_redirects=False)
        assert r.status_code != 503, (name, r.status_code)
    log = hub.log()
    assert log.index("Starting managed service second") < log.index("JupyterHub is now running")
    # it logs as JupyterHub did, so the hub sides' "JupyterHub.<name>" loggers reach its log
    started = next(line for line in log.splitlines() if "Starting managed service second" in line)
    assert " JupyterHub app:" in started and "LabspaceHub" not in log
