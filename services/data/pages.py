"""The data service's pages, in the hub's look (the catalog's ``page.html`` shape).

- ``<prefix>`` "My data" (``custom:labspace-data:read``): the datasets the
  signed-in person may use, where each appears in their workspace, read or write;
- ``<prefix>admin`` "Data admin" (``custom:labspace-data:admin``): datasets,
  grants, the audit trail and running workspaces holding revoked grants.

The pages are shells: their scripts (``static/``) call the service's REST API
with the page's XSRF token and put every value in with ``textContent``. The
server side only renders the navigation, the prefix, the XSRF token and the
hub's backend (the local backend cannot make a read-only view: My data says so).
``routes(prefix)`` gives the pages and the static files to ``app.make_app``.
"""

from __future__ import annotations

from pathlib import Path

from tornado import web

from labspace.services.kit import web as kit

from .handlers import ADMIN, READ
from .rules import BACKEND_KINDS, ID_PATTERN, KINDS

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
DEFAULT_NAV = [
    {"title": "My data", "url": "/services/data/", "admin": False},
    {"title": "Data admin", "url": "/services/data/admin", "admin": True},
]
BACKENDS = ("local", "docker", "kubernetes")
ERROR_HEADINGS = {403: "This page is not for you", 404: "No such page"}


def static_version(name: str) -> str:
    """A short hash of a static file's content, so a changed script is fetched anew."""
    return web.StaticFileHandler.get_content_version(str(STATIC / name))[:12]


class PageHandler(kit.ServiceHandler):
    """A page of the data service: the hub's navigation around a template."""

    def get_template_path(self) -> str:
        return str(TEMPLATES)

    def may(self, scope: str) -> bool:
        """``scope``, or admin, which includes read (as the custom scopes declare)."""
        return self.can(scope) or self.can(ADMIN)

    def nav(self) -> list[dict[str, str]]:
        base_url = self.settings["base_url"]
        admin = bool(self.user.get("admin")) or self.may(ADMIN)
        links = list(self.settings.get("nav") or DEFAULT_NAV)
        prefix = self.settings["prefix"]  # the nav's links are relative to base_url
        admin_url = "/" + prefix.removeprefix(base_url).lstrip("/") + "admin"
        if self.may(ADMIN) and not any(x["url"] == admin_url for x in links):
            links.append({"title": "Data admin", "url": admin_url, "admin": True})
        return [
            {"title": x["title"], "url": base_url + x["url"].lstrip("/")}
            for x in links
            if admin or not x.get("admin")
        ]

    def backend(self) -> str:
        """The hub's backend (``data_backend`` of the application settings)."""
        backend = self.settings.get("data_backend") or ""
        return backend if backend in BACKENDS else ""

    def page(self, template: str, script: str = "", **kw) -> None:
        xsrf = self.xsrf_token
        self.set_header("Cache-Control", "no-store")
        self.render(
            template,
            prefix=self.settings["prefix"],
            hub_prefix=self.settings["hub_prefix"],
            base_url=self.settings["base_url"],
            user_name=self.user["name"],
            groups=sorted(self.groups),
            is_admin=self.may(ADMIN),
            nav=self.nav(),
            here=self.request.path,
            backend=self.backend(),
            kinds=BACKEND_KINDS.get(self.backend(), KINDS),
            id_pattern=ID_PATTERN.replace("-]", r"\-]"),  # a literal - in the browser's v-mode
            xsrf=xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
            css=f"static/data.css?v={static_version('data.css')}",
            common=f"static/common.js?v={static_version('common.js')}",
            script=f"static/{script}?v={static_version(script)}" if script else "",
            **kw,
        )

    def error_page(self, status_code: int, message: str) -> None:
        """An error in the hub's look for a signed-in person (else the kit's short page)."""
        if not self.current_user:
            return super().error_page(status_code, message)
        heading = ERROR_HEADINGS.get(status_code, "Something went wrong")
        self.page(
            "error.html",
            page="error",
            status_code=status_code,
            heading=heading,
            message=message,
            may_read=self.may(READ),
        )


class MyDataPage(PageHandler):
    @web.authenticated
    def get(self):
        if not self.may(READ):
            raise web.HTTPError(403, f"This needs the scope {READ}")
        self.page("mydata.html", "mydata.js", page="mine")


class AdminPage(PageHandler):
    @web.authenticated
    def get(self):
        self.need(ADMIN)
        self.page("admin.html", "admin.js", page="admin")


class StaticHandler(web.StaticFileHandler):
    """The pages' scripts and style (a versioned URL may be kept for long)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")


def routes(prefix: str) -> list[tuple]:
    """The pages and their static files, under ``prefix`` (``/services/data/``)."""
    return [
        (prefix, MyDataPage),
        (prefix + "admin", AdminPage),
        (prefix + r"static/(.*)", StaticHandler, {"path": str(STATIC)}),
    ]
