"""The REST API (``api/``), described by ``openapi.py``.

Who reads what:

- ``custom:labspace-accounting:read``: prices, one's own usage and sessions,
  one's projects' balances (members) and per-member usage (leads);
- ``...:read-all``: anyone's usage, every project, the ledger, health;
- ``...:admin``: ledger operations (top-up, assign, move, reverse, allowances).
"""

from __future__ import annotations

from decimal import Decimal

from tornado import web

from labspace.services.kit import metrics as kit_metrics

from . import ledger, reports, usage
from .clock import now
from .config import ADMIN, READ, READ_ALL
from .ledger import LedgerError
from .openapi import document
from .pricing import estimate, iso, show
from .views import (
    OPERATIONS,
    check_operation,
    check_project,
    health,
    my_summary,
    operate,
    parse_range,
    project_detail,
    project_list,
)
from .web import Accounting, BaseHandler


class ApiHandler(BaseHandler):
    def get_login_url(self):
        raise web.HTTPError(403, "Authenticate with a hub token or the hub's login cookie")

    async def prepare(self):
        await super().prepare()
        if not self.current_user:
            raise web.HTTPError(403, "Authenticate with a hub token or the hub's login cookie")


class OpenAPIHandler(BaseHandler):
    def get(self):
        self.write_json(document(self.settings["prefix"]))


class PricesHandler(ApiHandler):
    async def get(self):
        self.need(READ)
        policy = self.policy

        def read(session):
            points = usage.load_prices(session)
            at = now()
            out = []
            for slug, name in policy.display_names().items():
                price = usage.price_now(points, slug, at)
                out.append(
                    {
                        "profile": slug,
                        "display_name": name,
                        "price_per_hour": show(price),
                        "min_period_cost": show(
                            (price or 0) * Decimal(str(policy.min_period_hours))
                        ),
                        "estimates": estimate(price or Decimal(0)),
                        "schedule": [
                            {
                                "effective_from": iso(p.effective_from),
                                "price_per_hour": show(p.price),
                            }
                            for p in points.get(slug, [])
                        ],
                    }
                )
            return out

        self.write_json(
            {
                "currency": policy.currency,
                "min_period_hours": policy.min_period_hours,
                "prices": await self.db.read(read),
            }
        )


class MeHandler(ApiHandler):
    """``api/me``: my balances, open sessions and this month's usage."""

    async def get(self):
        self.need(READ)
        self.write_json(await my_summary(self))


class UsageHandler(ApiHandler):
    """``api/usage?group_by=&from=&to=&user=&project=&format=json|csv``."""

    async def get(self):
        self.need(READ)
        group_by = self.get_query_argument("group_by", "day")
        if group_by not in reports.GROUPS:
            raise web.HTTPError(400, f"'group_by' must be one of {', '.join(reports.GROUPS)}")
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPError(400, "'format' must be json or csv")
        start, end = parse_range(self)
        user = self.get_query_argument("user", None)
        project = self.get_query_argument("project", None)
        if not self.can(READ_ALL):
            if project is not None and self.may_read_project(project, members=True):
                pass  # a lead reads the project's members
            elif user is None or user == self.user["name"]:
                user = self.user["name"]  # your own usage
            else:
                raise web.HTTPError(403, "Reading another user's usage needs read-all")
        rows = await self.db.read(reports.usage, group_by, start, end, user, project)
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="usage-{group_by}.csv"')
            self.finish(reports.to_csv(rows, (group_by, *reports.USAGE_COLUMNS)))
            return
        self.write_json(
            {
                "group_by": group_by,
                "from": iso(start),
                "to": iso(end),
                "currency": self.policy.currency,
                "rows": rows,
            }
        )


class SessionsHandler(ApiHandler):
    """``api/sessions?user=&project=&status=open|closed|all&limit=&format=``."""

    async def get(self):
        self.need(READ)
        user = self.get_query_argument("user", None)
        project = self.get_query_argument("project", None)
        status = self.get_query_argument("status", "all")
        if status not in ("open", "closed", "all"):
            raise web.HTTPError(400, "'status' must be open, closed or all")
        try:
            limit = int(self.get_query_argument("limit", "100"))
        except ValueError:
            raise web.HTTPError(400, "'limit' must be a whole number") from None
        if not 1 <= limit <= 10000:
            raise web.HTTPError(400, "'limit' must be from 1 to 10000")
        if not self.can(READ_ALL):
            if project is not None and self.may_read_project(project, members=True):
                pass
            elif user is None or user == self.user["name"]:
                user = self.user["name"]
            else:
                raise web.HTTPError(403, "Reading another user's sessions needs read-all")
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPError(400, "'format' must be json or csv")
        rows = await self.db.read(reports.sessions, user, project, status, limit)
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.finish(reports.to_csv(rows, reports.SESSION_COLUMNS))
            return
        self.write_json({"sessions": rows})


class ProjectsHandler(ApiHandler):
    """``api/projects``: the projects you may see, with balances."""

    async def get(self):
        self.need(READ)
        self.write_json({"projects": await project_list(self)})


class ProjectHandler(ApiHandler):
    """``api/projects/<name>``: balance, usage by member (leads) or your own (members)."""

    async def get(self, name: str):
        self.need(READ)
        check_project(self, name)
        self.write_json(await project_detail(self, name))


# -- ledger (admin) -------------------------------------------------------------


class LedgerHandler(ApiHandler):
    """``GET api/ledger?account=project:x&limit=``: recent transactions (read-all)."""

    async def get(self):
        self.need(READ_ALL)
        label = self.get_query_argument("account", "")
        try:
            limit = int(self.get_query_argument("limit", "100"))
        except ValueError:
            raise web.HTTPError(400, "'limit' must be a whole number") from None
        if not 1 <= limit <= 10000:
            raise web.HTTPError(400, "'limit' must be from 1 to 10000")

        def read(session):
            account = None
            if label:
                kind, _, name = label.partition(":")
                account = ledger.get_account(session, kind, name, create=False)
                if account is None:
                    raise LedgerError(404, f"No such account: {label}")
            return ledger.transaction_rows(session, limit, account)

        try:
            rows = await self.db.read(read)
        except LedgerError as e:
            raise web.HTTPError(e.status, e.message) from None
        self.write_json({"transactions": rows})


class OperationHandler(ApiHandler):
    """``POST api/ledger/<op>`` (admin)."""

    async def post(self, op: str):
        self.need(ADMIN)
        if op not in OPERATIONS:
            raise web.HTTPError(404, f"No such ledger operation: {op} ({', '.join(OPERATIONS)})")
        args = check_operation(self.policy, op, self.json_body())
        self.write_json(await operate(self, op, args), status=201 if op != "renew" else 200)


class HealthApiHandler(ApiHandler):
    async def get(self):
        self.need(READ_ALL)
        self.write_json(await health(self.service))


class MetricsHandler(Accounting, kit_metrics.MetricsHandler):
    @property
    def metrics(self):
        return self.service.metrics


def routes(prefix: str) -> list[tuple[str, type]]:
    api = prefix + "api/"
    return [
        (api + "openapi.json", OpenAPIHandler),
        (api + "prices", PricesHandler),
        (api + "me", MeHandler),
        (api + "usage", UsageHandler),
        (api + "sessions", SessionsHandler),
        (api + "projects", ProjectsHandler),
        (api + "projects/([^/]+)", ProjectHandler),
        (api + "ledger", LedgerHandler),
        (api + "ledger/([a-z]+)", OperationHandler),
        (api + "health", HealthApiHandler),
        *kit_metrics.routes(prefix, MetricsHandler),
    ]
