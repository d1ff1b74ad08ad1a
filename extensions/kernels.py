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
"""

from __future__ import annotations

import functools
import os
import tempfile
import uuid

from jupyter_server.services.kernels.kernelmanager import ServerKernelManager
from traitlets import default

SECTIONS = ("MappingKernelManager", "AsyncMappingKernelManager")


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
