"""HTML pages in the hub's look: My usage, Projects, a project, Admin."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from decimal import Decimal

from tornado import web

from . import alerts, ledger
from .clock import now
from .config import ADMIN, READ, READ_ALL
from .pricing import show
from .views import (
    check_operation,
    check_project,
    health,
    my_summary,
    operate,
    project_detail,
    project_list,
)
from .web import BaseHandler

FLASH = "accounting-flash"  # the signed cookie that carries a form's outcome
FLASH_MINUTES = 5


def bar_chart(daily: list[dict], days: int = 30, width: int = 720, height: int = 160) -> str:
    """An inline SVG bar chart of cost per day (no scripts, no CDN)."""
    today = now().date()
    by_day = {r["day"][:10]: Decimal(r["cost"]) for r in daily}
    series = [
        (
            (today - timedelta(days=i)).isoformat(),
            by_day.get((today - timedelta(days=i)).isoformat(), Decimal(0)),
        )
        for i in reversed(range(days))
    ]
    top = max((v for _, v in series), default=Decimal(0)) or Decimal(1)
    bar = width / days
    plot = height - 20
    parts = [
        f'<svg class="ls-chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'aria-label="Cost per day over the last {days} days">'
    ]
    for i, (day, value) in enumerate(series):
        h = float(value / top) * (plot - 12)
        x = i * bar + 2
        parts.append(
            f'<rect x="{x:.1f}" y="{plot - h:.1f}" width="{bar - 4:.1f}" height="{h:.1f}">'
            f"<title>{html.escape(day)}: {show(value)}</title></rect>"
        )
        if i % 5 == 0 or i == days - 1:
            parts.append(f'<text x="{x:.1f}" y="{height - 4}">{html.escape(day[5:])}</text>')
    parts.append(f'<text x="0" y="10">max {show(top)}</text></svg>')
    return "".join(parts)


class PageHandler(BaseHandler):
    async def prepare(self):
        await super().prepare()
        if self.current_user and not self.can(READ):
            raise web.HTTPError(403, "Your account may not read accounting (scope " + READ + ")")


class UsagePage(PageHandler):
    @web.authenticated
    async def get(self):
        me = await my_summary(self)
        found = await self.db.read(
            alerts.for_user, self.policy, self.user["name"], now(), self.settings["prefix"]
        )
        self.render(
            "usage.html", me=me, alerts=found, chart=bar_chart(me["daily"]), **self.page_vars()
        )


class ProjectsPage(PageHandler):
    @web.authenticated
    async def get(self):
        self.render("projects.html", projects=await project_list(self), **self.page_vars())


class ProjectPage(PageHandler):
    @web.authenticated
    async def get(self, name: str):
        check_project(self, name)
        self.render("project.html", p=await project_detail(self, name), **self.page_vars())


class AdminPage(PageHandler):
    @web.authenticated
    async def get(self):
        self.need(READ_ALL)

        def read(session):
            return ledger.transaction_rows(session, 50)

        self.render(
            "admin.html",
            projects=await project_list(self),
            health=await health(self.service),
            transactions=await self.db.read(read),
            **self.flash(),
            **self.page_vars(),
        )

    def flash(self) -> dict:
        """The outcome of the last form post, from the service's own signed
        cookie (never from the URL: a link must not put words on this page)."""
        value = self.get_signed_cookie(FLASH, max_age_days=FLASH_MINUTES / 1440)
        if value is None:
            return {"message": "", "failed": False}
        self.clear_cookie(FLASH, path=self.settings["prefix"] + "admin")
        try:
            data = json.loads(value)
            return {"message": str(data["message"]), "failed": bool(data["failed"])}
        except (ValueError, KeyError, TypeError):
            return {"message": "", "failed": False}


class AdminOperation(PageHandler):
    """The admin page's forms (XSRF-checked form posts)."""

    @web.authenticated
    async def post(self, op: str):
        self.need(ADMIN)
        if op not in ("topup", "assign", "move", "reverse"):
            raise web.HTTPError(404, f"No such operation: {op}")
        body = {
            k: self.get_body_argument(k, "")
            for k in ("project", "parent", "child", "from", "to", "amount", "reason")
        }
        if op == "reverse":
            tx = self.get_body_argument("transaction", "")
            body["transaction"] = int(tx) if re.fullmatch(r"[0-9]{1,12}", tx) else -1
        try:
            args = check_operation(self.policy, op, body)
            result = await operate(self, op, args)
        except web.HTTPError as e:
            if e.status_code >= 500:
                raise
            self.back_to_admin(e.log_message or "Refused", failed=True)
            return
        self.back_to_admin(f"Recorded transaction {result['transaction']} ({op})")

    def back_to_admin(self, message: str, failed: bool = False) -> None:
        admin = self.settings["prefix"] + "admin"
        flash = json.dumps({"message": message, "failed": failed})
        self.set_signed_cookie(
            FLASH, flash, expires_days=None, path=admin, httponly=True, samesite="Lax"
        )
        self.redirect(admin)


def routes(prefix: str) -> list[tuple[str, type]]:
    return [
        (prefix, UsagePage),
        (prefix + "projects", ProjectsPage),
        (prefix + "projects/([^/]+)", ProjectPage),
        (prefix + "admin", AdminPage),
        (prefix + "admin/([a-z]+)", AdminOperation),
    ]
