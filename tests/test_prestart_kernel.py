"""A kernel started ahead of the first notebook (``LABSPACE_PRESTART_KERNEL=1``,
``extensions/kernels.py``), in a real jupyter-server with the apps extension
(no hub; token auth), driven as JupyterLab does: ``POST /api/sessions`` then
an ``execute_request`` on the kernel's websocket.

The first notebook in the home folder gets the kernel the server started
ahead when JupyterLab's page was first served (its id was in
``/api/kernels`` before the session), with the same
environment and working folder as a kernel started on demand but for
``JPY_SESSION_NAME``; the next notebook gets a new kernel.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import psutil
import pytest
from harness import jupyter_server, wait_for
from tornado.websocket import websocket_connect

TOKEN = "test-token-prestart-0123"
HEADERS = {"Authorization": f"token {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with jupyter_server(home, TOKEN, {"LABSPACE_PRESTART_KERNEL": "1"}) as running:
        yield running


def kernels(url: str) -> list[dict]:
    return httpx.get(url + "/api/kernels", headers=HEADERS, timeout=30).json()


def open_notebook(url: str, path: str) -> tuple[str, float, dict]:
    """Open ``path`` as JupyterLab does and run one cell: the kernel's id, the
    seconds from the session request to the cell's execute_reply, and the
    reply (with what the kernel knows of its notebook)."""
    began = time.monotonic()
    r = httpx.post(
        url + "/api/sessions",
        headers=HEADERS,
        json={"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}},
        timeout=120,
    )
    assert r.status_code == 201, r.text
    kernel = r.json()["kernel"]["id"]
    reply = asyncio.run(run_cell(url, kernel, "1 + 1", SESSION_NAME))
    return kernel, time.monotonic() - began, reply["content"]


# what ipykernel knows of its notebook (JPY_SESSION_NAME at its start)
SESSION_NAME = {
    "session": "__session__",
    "env": "__import__('os').environ.get('JPY_SESSION_NAME')",
}


async def run_cell(
    url: str, kernel: str, code: str, expressions: dict | None = None, timeout: float = 120
) -> dict:
    ws_url = url.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels?token={TOKEN}"
    ws = await asyncio.wait_for(websocket_connect(ws_url), timeout)
    try:
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "test",
                "session": uuid.uuid4().hex,
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": expressions or {},
            },
            "channel": "shell",
        }
        await ws.write_message(json.dumps(request))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
            assert raw is not None, "the kernel's websocket closed"
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_reply":
                assert message["content"]["status"] == "ok", message["content"]
                return message
        raise TimeoutError("no execute_reply")
    finally:
        ws.close()


def kernel_process(server, kernel: str) -> psutil.Process:
    for child in psutil.Process(server["proc"].pid).children(recursive=True):
        if any(f"kernel-{kernel}.json" in arg for arg in child.cmdline()):
            return child
    raise AssertionError(f"no process of kernel {kernel}")


def test_the_first_notebook_gets_the_kernel_started_ahead(server):
    url = server["url"]
    # nobody has opened JupyterLab yet: no kernel (an API start pays for none)
    time.sleep(1)
    assert kernels(url) == []
    # the person arrives: the first JupyterLab page starts one, in the background
    page = httpx.get(url + "/lab", headers=HEADERS, timeout=30)
    assert page.status_code == 200, page.text[:300]
    ahead = wait_for(lambda: kernels(url), 60, what="the kernel started ahead")
    assert len(ahead) == 1 and ahead[0]["name"] == "python3"

    # a notebook in another folder: its kernel starts there, on demand
    (server["home"] / "sub").mkdir()
    elsewhere, _, _ = open_notebook(url, "sub/other.ipynb")
    assert elsewhere != ahead[0]["id"]
    first, _, cell = open_notebook(url, "first.ipynb")
    assert first == ahead[0]["id"]
    second, _, other_cell = open_notebook(url, "second.ipynb")  # not refilled: a new kernel
    assert second not in (first, elsewhere)
    # the kernel knows its notebook, as one started for it does; its first
    # cell is cell 1 (telling it used no execution count)
    for reply, name in ((cell, "first.ipynb"), (other_cell, "second.ipynb")):
        assert reply["execution_count"] == 1
        for value in reply["user_expressions"].values():
            assert value["data"]["text/plain"] == repr(str(server["home"] / name))
    assert {k["id"] for k in kernels(url)} == {first, second, elsewhere}
    assert kernel_process(server, elsewhere).cwd() == str(server["home"] / "sub")

    # the same environment and folder as a kernel started on demand
    mine, theirs = kernel_process(server, first), kernel_process(server, second)
    assert mine.cwd() == theirs.cwd() == str(server["home"])
    on_demand = theirs.environ()
    assert on_demand.pop("JPY_SESSION_NAME") == str(server["home"] / "second.ipynb")
    assert mine.environ() == on_demand
    assert mine.cmdline()[:-1] == theirs.cmdline()[:-1]  # but its connection file
    assert "Handing kernel" in server["log"].read_text()
