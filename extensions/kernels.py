"""Kernels on unix sockets in a private folder, not on loopback TCP ports.

A Jupyter kernel listens on five ZeroMQ ports. On TCP they are ports of
127.0.0.1, which the local backend and docker's ``network: host`` share between
every workspace; the IOPub port is a publisher that anyone who connects may read
(it carries every output of the notebook or dashboard). With ``transport: ipc``
the kernel listens on unix sockets instead; each kernel gets its own short
prefix in a folder only this user may open (0700), short enough for the 107
characters a socket path may have.

The apps extension (apps.py) makes :class:`PrivateKernelManager` the server's
kernel manager where the loopback is shared, unless the server's config names
one of its own.

With ``LABSPACE_PRESTART_KERNEL=1`` (set by the spawner: ``backend.warm_pool.kernel``)
:class:`PrestartingKernelManager` starts one kernel of the default kernel spec
when the person arrives (the first JupyterLab page the server renders), while
the browser loads JupyterLab's assets, and hands it to the first notebook opened
in the home folder, whose first cell then runs at once instead of after a kernel
start. A server nobody opens in a browser (a start from the API or the CLI, a
catalog app) starts no kernel: a class of 20 starting together does not pay for
20 kernels before anyone looks.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import uuid

from jupyter_server.services.kernels.kernelmanager import (
    AsyncMappingKernelManager,
    ServerKernelManager,
)
from traitlets import default

SECTIONS = ("MappingKernelManager", "AsyncMappingKernelManager")
PRESTART_VARIABLE = "LABSPACE_PRESTART_KERNEL"
SESSION_NAME_TIMEOUT = 10.0  # s for the spare kernel to take its notebook's name


@functools.cache
def socket_folder() -> str:
    """This server's private folder of kernel sockets (0700, removed with /tmp)."""
    return tempfile.mkdtemp(prefix="labspace-kernels-")


class PrivateKernelManager(ServerKernelManager):
    """jupyter-server's kernel manager with kernels on private unix sockets."""

    @default("transport")
    def _default_transport(self):
        return "ipc"

    @default("ip")
    def _ip_default(self):
        if self.transport != "ipc":
            return super()._ip_default()
        return os.path.join(socket_folder(), uuid.uuid4().hex[:12])


def use_private_kernels(config) -> bool:
    """Make :class:`PrivateKernelManager` the kernel manager of a server's
    ``config`` unless it names one; True when it did."""
    if any("kernel_manager_class" in config[s] for s in SECTIONS):
        return False
    name = f"{__name__}.{PrivateKernelManager.__name__}"
    config.AsyncMappingKernelManager.kernel_manager_class = name
    return True


class PrestartingKernelManager(AsyncMappingKernelManager):
    """jupyter-server's kernel manager with one kernel started ahead.

    ``prestart()`` (called once the server's loop runs) starts a kernel of the
    default kernel spec in the root folder, by the server itself, as an
    on-demand kernel is started: same spec, environment (the server's), working
    folder, kernel manager class (private sockets) and culling. The first
    ``start_kernel`` that asks for that spec in that folder without naming a
    kernel id (the first notebook or console opened in the home folder) gets
    it, waiting for it if it is still starting; every other request, and every
    one after it, starts a kernel as usual. It is not replaced once taken.

    What cannot be the same: it was started before anyone asked, so its
    process environment (``/proc``) lacks ``JPY_SESSION_NAME`` (an ipykernel is
    told the notebook's path at hand-over: ``os.environ`` and ``__session__``
    are as on demand; another kernel language is not), and it is listed in
    ``/api/kernels`` (JupyterLab's running kernels) before a notebook takes it.
    """

    _spare: asyncio.Task | None = None
    _spare_taken = False

    def kernel_model(self, kernel_id):
        """jupyter-server's model, or KeyError for a kernel still starting: it is
        listed before its ``last_activity`` is set, and JupyterLab lists kernels
        as it loads, just when the spare starts (a 500 otherwise);
        ``list_kernels`` leaves such a kernel out until it has started."""
        try:
            return super().kernel_model(kernel_id)
        except AttributeError:
            raise KeyError(kernel_id) from None

    def prestart(self) -> None:
        """Start the spare kernel in the background (the loop must run)."""
        if self._spare is None:
            self._spare = asyncio.ensure_future(self._start_spare())

    async def _start_spare(self) -> str:
        kernel_id = await super().start_kernel(
            kernel_name=self.default_kernel_name, path="", env={**os.environ}
        )
        self.log.info("Kernel %s started ahead of the first notebook", kernel_id)
        return kernel_id

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        spare = await self._take_spare(kernel_id, path, kwargs.get("kernel_name"))
        if spare is not None:
            await self._name_session(spare, kwargs.get("env"))
            return spare
        return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)

    async def _name_session(self, kernel_id: str, env: dict | None) -> None:
        """ipykernel reads ``JPY_SESSION_NAME`` (the notebook's path) once, at
        its start, into ``os.environ`` and ``__session__``: tell the spare, which
        started before the notebook was known, with one silent execution (no
        history, no output, before any of the user's code)."""
        name = (env or {}).get("JPY_SESSION_NAME")
        kernel = self.get_kernel(kernel_id)
        if not name or "ipykernel" not in " ".join(kernel.kernel_spec.argv):
            return
        code = (
            f"__import__('os').environ['JPY_SESSION_NAME'] = {name!r}\n"
            f"globals()['__session__'] = {name!r}\n"
        )
        client = kernel.client()
        client.start_channels()
        try:
            msg_id = client.execute(code, silent=True, store_history=False)
            deadline = asyncio.get_running_loop().time() + SESSION_NAME_TIMEOUT
            while True:
                left = deadline - asyncio.get_running_loop().time()
                reply = await client.get_shell_msg(timeout=max(0.01, left))
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        except Exception as e:  # noqa: BLE001 - the notebook still gets its kernel
            self.log.warning("Kernel %s: could not tell it its notebook (%s)", kernel_id, e)
        finally:
            client.stop_channels()

    async def _take_spare(self, kernel_id, path, kernel_name) -> str | None:
        """The spare kernel's id if this request may have it, else None."""
        task = self._spare
        if task is None or self._spare_taken or kernel_id is not None or path is None:
            return None
        if (kernel_name or self.default_kernel_name) != self.default_kernel_name:
            return None
        if self.cwd_for_path(path) != self.cwd_for_path(""):
            return None
        self._spare_taken = True
        try:
            spare = await task
        except Exception:  # noqa: BLE001 - the request starts its own kernel
            self.log.exception("The kernel started ahead failed; starting one on demand")
            return None
        if spare not in self:  # culled, or died
            return None
        self.log.info("Handing kernel %s, started ahead, to %s", spare, path or "/")
        return spare


def use_prestarted_kernel(serverapp) -> bool:
    """Make :class:`PrestartingKernelManager` the server's kernel manager, when
    ``LABSPACE_PRESTART_KERNEL=1`` and it would use jupyter-server's own
    (not a gateway's, not one the config names); True when it did. Call at
    link time, before the server makes its kernel manager."""
    if os.environ.get(PRESTART_VARIABLE) != "1":
        return False
    # (its default cannot be read yet: it depends on the gateway's config)
    gateway = os.environ.get("JUPYTER_GATEWAY_URL") or serverapp.config.GatewayClient.get("url")
    if serverapp.trait_has_value("kernel_manager_class") or gateway:
        serverapp.log.warning("%s: not with this server's own kernel manager", PRESTART_VARIABLE)
        return False
    serverapp.kernel_manager_class = PrestartingKernelManager
    return True


def prestart_on_arrival(serverapp) -> None:
    """At load time: start the spare kernel when the server first renders a
    JupyterLab page (jupyterlab_server's ``page_config_hook``, chained after
    any the server already has)."""
    manager = serverapp.kernel_manager
    if not isinstance(manager, PrestartingKernelManager):
        return
    settings = serverapp.web_app.settings
    before = settings.get("page_config_hook")

    def hook(handler, page_config):
        manager.prestart()  # once: later calls find it started
        return before(handler, page_config) if before else page_config

    settings["page_config_hook"] = hook
