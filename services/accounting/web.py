"""The accounting service's handlers on the kit (``labspace.services.kit.web``).

The kit does the plumbing (hub identification, XSRF for token requests, the
body and path checks, one error shape, scope checks with ``scope_implies``);
this adds what accounting's handlers share: the service, its database and
policy, who may read which project, the page's variables, and the error page
in the service's own template.

Users are identified by ``HubOAuth`` (cookie or ``Authorization: token``) and
authorised by the custom scopes in their token (``custom:labspace-accounting:
read`` for their own data, ``read-all``, ``admin``), never by an admin flag.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from labspace.services.kit import web as kit

from .config import ADMIN, READ, READ_ALL
from .policy import Policy
from .service import Service


class Accounting:
    """What every accounting handler reads: the service, its database and policy."""

    @property
    def service(self) -> Service:
        return self.settings["service"]

    @property
    def db(self):
        return self.service.db

    @property
    def policy(self) -> Policy:
        return self.service.policy

    # NaN and Infinity parse: accounting's checks refuse them, naming the key at fault
    finite_numbers = False


class BaseHandler(Accounting, kit.ServiceHandler):
    """Pages and the API: the caller's projects and what they may read."""

    signin_message = "Sign in to the hub to use accounting"

    def error_page(self, status_code: int, message: str) -> None:
        self.render("error.html", status=status_code, message=message, **self.page_vars())

    def my_projects(self) -> list[str]:
        return self.policy.projects_of(self.groups)

    def may_read_user(self, name: str) -> bool:
        return self.can(READ_ALL) or (name == self.user["name"] and self.can(READ))

    def may_read_project(self, project: str, members: bool = False) -> bool:
        """Members read a project's totals; leads (and read-all) its members' usage."""
        if self.can(READ_ALL):
            return True
        if not self.can(READ):
            return False
        if members:
            return self.user["name"] in self.policy.leads_of(project)
        return project in self.my_projects() or self.user["name"] in self.policy.leads_of(project)

    def page_vars(self) -> dict[str, Any]:
        user = self.current_user or {}
        privileged = bool(user) and self.can(READ_ALL)
        nav = [
            (item["title"], self.settings["base_url"].rstrip("/") + item["url"])
            for item in self.settings["nav"]
            if privileged or not item.get("admin")
        ]
        return {
            "nav": nav,
            "prefix": self.settings["prefix"],
            "hub_prefix": self.settings["hub_prefix"],
            "user": user,
            "currency": self.policy.currency,
            "is_admin": bool(user) and self.can(ADMIN),
            "can_read_all": bool(user) and self.can(READ_ALL),
        }


class ApiHandler(BaseHandler, kit.APIHandler):
    """The REST API: JSON only, for a caller with a hub token or the hub's cookie."""

    signin_message = "Authenticate with a hub token or the hub's login cookie"

    def get_login_url(self):
        raise web.HTTPError(403, self.signin_message)


class InternalHandler(Accounting, kit.InternalHandler):
    """The hub side's endpoints: the service's own hub token (the spawner hooks,
    in the hub's process); where ``deliverer_may``, also the deliverer's secret."""

    deliverer_may = False

    def other_tokens(self) -> list[str]:
        return [self.service.deliverer_secret] if self.deliverer_may else []


class NotFoundHandler(BaseHandler, kit.NotFoundHandler):
    """Any other path under the prefix: a 404 in the service's error shape (its
    page on a page path)."""
