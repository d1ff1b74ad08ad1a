"""A standalone app's server serves its owner everything, anyone else the app only.

A standalone catalog app is a whole ``jupyterhub-singleuser`` server (its named
server ``<id>``). Sharing it through the hub gives the recipient access to that
server, which would mean the owner's home (writable), terminals and kernels.
Where the catalog's spawn hook set ``LABSPACE_STANDALONE_APP=<id>`` under
JupyterHub (``JUPYTERHUB_USER`` is the owner), the apps extension (apps.py)
installs two guards:

- :func:`guard_identity_provider`: JupyterHub's identity provider, which refuses
  (403) every request of a signed-in user other than the owner except those to
  the app's own routes ``/<id>`` and ``/<id>/...``: pages (lab, tree, Voilà) as
  well as APIs, websockets included, since every handler asks it who is calling;
- :class:`AppOnlyAuthorizer` (set at link time, before the server builds it):
  jupyter-server's authoriser for the handlers that
  ask (contents, files, kernels, terminals, sessions, the lifecycle API): the
  owner may do anything, anyone else nothing.
"""

from __future__ import annotations

import os

from jupyter_server.auth import Authorizer
from jupyter_server.utils import url_path_join as ujoin
from tornado import web

OWNER_ENV = "JUPYTERHUB_USER"


def owner() -> str:
    return os.environ.get(OWNER_ENV, "")


def app_route(handler, app_id: str) -> bool:
    """Whether a request is for the app itself: its proxy, on its own path."""
    from .handlers import AppAddSlashHandler, AppProxyHandler

    if not isinstance(handler, AppProxyHandler | AppAddSlashHandler):
        return False
    prefix = ujoin(handler.base_url, app_id)
    path = handler.request.path
    return path == prefix or path.startswith(prefix + "/")


class AppOnlyAuthorizer(Authorizer):
    """The owner may do anything; other users nothing the authoriser is asked about."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        allowed = bool(owner()) and user.username == owner()
        if not allowed:
            self.log.warning(
                "%s may not %s %s on %s's app server", user.username, action, resource, owner()
            )
        return allowed


def guard_identity_provider(provider, app_id: str) -> None:
    """Make ``provider`` (the server's JupyterHub identity provider, which every
    handler asks who is calling) refuse users other than the owner outside the
    app's own routes. Done on the instance at load time: JupyterHub's extension
    sets the provider's class itself."""
    get_user = provider.get_user

    async def get_app_user(handler):
        user = get_user(handler)
        if hasattr(user, "__await__"):
            user = await user
        if user is None or user.username == owner() or app_route(handler, app_id):
            return user
        provider.log.warning(
            "%s is not %s: only app %s is shared (%s refused)",
            user.username,
            owner(),
            app_id,
            handler.request.path,
        )
        raise web.HTTPError(403, f"Only the app {app_id} is shared with you")

    provider.get_user = get_app_user


def link(serverapp, app_id: str) -> bool:
    """At link time (before the server builds it): the authoriser of a standalone
    app's server under JupyterHub; True if set (not under JupyterHub: no owner)."""
    if not owner():
        return False
    serverapp.authorizer_class = AppOnlyAuthorizer
    return True


def load(serverapp, app_id: str) -> None:
    """At load time: guard the identity provider the server built."""
    if not owner():
        return
    guard_identity_provider(serverapp.identity_provider, app_id)
    serverapp.log.info(
        "labspace-apps: standalone app %s: users other than %s reach the app only",
        app_id,
        owner(),
    )
