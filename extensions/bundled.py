"""The visualisation apps every workspace has, as jupyter-server-proxy servers.

Each function is a ``jupyter_serverproxy_servers`` entry point (see pyproject)
and returns jupyter-server-proxy's server dict, or None when the app is not
offered here. Labspace's server extension (apps.py) registers them with its own
handler, which waits until :data:`READINESS` says the app is ready.

None of them may listen where another user reaches it without logging in: the
loopback of the local backend and of docker's ``network: host`` is shared by
every workspace. So the Data Explorer listens on a unix socket in a private
folder; Dashboards are Voilà's server extension, inside the Jupyter server and
behind its login (``/<app>/`` redirects there, see :data:`INSIDE`); TensorBoard
can only listen on TCP, so it is offered only where the loopback is the
workspace's own (``LABSPACE_LOOPBACK=private``: kubernetes, a docker network
other than host).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .appspec import loopback_shared

HERE = Path(__file__).parent
ICONS = HERE / "icons"

# app id -> (readiness path as the app sees it, expected status); {base_url} is
# the workspace's base URL, for apps that see the full path (absolute_url)
READINESS: dict[str, tuple[str, int]] = {
    "data-explorer": ("{base_url}data-explorer/", 200),
    "tensorboard": ("{base_url}tensorboard/", 200),
}
# apps the Jupyter server serves itself: app id -> (path under the base URL, front page)
INSIDE = {"dashboards": ("voila/", "tree")}
# JupyterLab's launcher shows an entry's icon (kernelIconUrl) only in the kernel
# sections, so apps sit next to the notebooks, as jupyter-server-proxy's do
LAUNCHER_CATEGORY = "Notebook"
TITLES = {
    "data-explorer": "Data Explorer",
    "dashboards": "Dashboards",
    "tensorboard": "TensorBoard",
}


def _launcher(app_id: str) -> dict:
    icon = ICONS / f"{app_id}.svg"
    return {
        "title": TITLES[app_id],
        "icon_path": str(icon) if icon.is_file() else "",
        "category": LAUNCHER_CATEGORY,
    }


def data_explorer() -> dict | None:
    """Panel app over a Unix socket in a private folder: only the workspace's
    authenticated proxy reaches it. Panel and Bokeh serve their own JS/CSS."""
    if importlib.util.find_spec("panel") is None:
        return None
    return {
        "command": [
            sys.executable,
            "-m",
            "panel",
            "serve",
            str(HERE / "data_explorer.py"),
            "--unix-socket",
            "{unix_socket}",
            "--prefix",
            "{base_url}data-explorer",
            "--index",
            "data_explorer",
            # the workspace's proxy checks the Origin of every websocket already
            "--allow-websocket-origin",
            "*",
            "--log-level",
            "info",
        ],
        "unix_socket": True,
        "absolute_url": True,
        "timeout": 60,
        "launcher_entry": _launcher("data-explorer"),
        "new_browser_tab": True,
    }


def dashboards() -> dict | None:
    """Voilà serving every notebook under the home folder as an app: its server
    extension, inside the Jupyter server (no process, no port of its own)."""
    if importlib.util.find_spec("voila") is None:
        return None
    return {
        "command": [],
        "launcher_entry": _launcher("dashboards"),
        "new_browser_tab": True,
    }


def tensorboard() -> dict | None:
    """TensorBoard over ``~/logs`` (or the home), when installed and the loopback
    is the workspace's own: it cannot listen on a unix socket, and has no login."""
    if importlib.util.find_spec("tensorboard") is None or loopback_shared(os.environ):
        return None
    logdir = os.path.expanduser("~/logs")
    return {
        "command": [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--path_prefix",
            "{base_url}tensorboard",
            "--logdir",
            logdir if os.path.isdir(logdir) else os.path.expanduser("~"),
        ],
        "absolute_url": True,
        "timeout": 60,
        "launcher_entry": _launcher("tensorboard"),
        "new_browser_tab": True,
    }


BUNDLED = {"data-explorer": data_explorer, "dashboards": dashboards, "tensorboard": tensorboard}
