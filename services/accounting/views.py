"""What the API and the pages both show, read (or done) once: the caller's summary,
projects, a project's detail, the ledger operations, the service's health.

Each function takes the handler (who asks, with what scopes) and returns plain
data; ``api.py`` writes it as JSON, ``pages.py`` renders it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from tornado import web

from . import charger, ledger, reports, usage
from .clock import month_start, now
from .config import READ_ALL
from .ledger import LedgerError, Leg
from .openapi import MAX_ID
from .pricing import dec, iso, parse_time, show
from .web import BaseHandler

log = logging.getLogger("labspace.accounting")


MAX_AMOUNT = Decimal("1000000000")
log = logging.getLogger("labspace.accounting")


def parse_amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise web.HTTPError(400, "'amount' must be a number above 0")
    try:
        amount = dec(value)
    except (InvalidOperation, ValueError):
        raise web.HTTPError(400, "'amount' must be a number above 0") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise web.HTTPError(400, f"'amount' must be above 0 and at most {MAX_AMOUNT}")
    return amount


def parse_range(handler: BaseHandler) -> tuple[datetime, datetime]:
    """``from``/``to`` query arguments (dates or times); default: this month."""
    today = now()
    start_text = handler.get_query_argument("from", "")
    end_text = handler.get_query_argument("to", "")
    try:
        start = parse_time(start_text) if start_text else month_start(today)
        end = parse_time(end_text) if end_text else today + timedelta(seconds=1)
    except ValueError:
        raise web.HTTPError(400, "'from' and 'to' must be dates like 2026-01-31") from None
    if end <= start:
        raise web.HTTPError(400, "'to' must be after 'from'")
    if end - start > timedelta(days=3660):
        raise web.HTTPError(400, "The range is too long (at most 10 years)")
    return start, end


async def my_summary(handler: BaseHandler) -> dict[str, Any]:
    name, projects, policy = handler.user["name"], handler.my_projects(), handler.policy

    def read(session):
        at = now()
        out = []
        for p in projects:
            account = ledger.get_account(session, "project", p)
            out.append(
                {
                    "name": p,
                    "balance": show(ledger.available(session, account)),
                    "lead": name in policy.leads_of(p),
                    "default": p == policy.default_project(name, projects),
                }
            )
        personal = None
        if not projects and not policy.refuse_without_project:
            account = usage.budget_account(session, "personal", name, policy, at)
            personal = {"balance": show(ledger.available(session, account))}
        start = month_start(at)
        return {
            "user": name,
            "currency": policy.currency,
            "projects": out,
            "personal": personal,
            "open_sessions": reports.sessions(session, user=name, status="open"),
            "this_month": reports.usage(
                session, "project", start, at + timedelta(seconds=1), user=name
            ),
            "daily": reports.usage(
                session, "day", at - timedelta(days=30), at + timedelta(seconds=1), user=name
            ),
        }

    return await handler.db.read(read)


async def project_list(handler: BaseHandler) -> list[dict[str, Any]]:
    policy = handler.policy
    everything = handler.can(READ_ALL)
    mine = set(handler.my_projects()) | set(policy.led_by(handler.user["name"]))

    def read(session):
        balances = ledger.balances(session, "project")
        holds = ledger.balances(session, "hold")
        names = set(mine)
        if everything:
            names |= {label.split(":", 1)[1] for label in balances}
            names |= set(policy.projects["groups"])
        at = now()
        used = {
            r["project"]: r
            for r in reports.usage(session, "project", month_start(at), at + timedelta(seconds=1))
        }
        return [
            {
                "name": p,
                "parent": policy.parent_of(p),
                "balance": show(balances.get(f"project:{p}", 0)),
                "reserved": show(holds.get(f"hold:project:{p}", 0)),
                "used_this_month": (used.get(p) or {}).get("cost", "0.00"),
                "member": p in handler.my_projects(),
                "lead": handler.user["name"] in policy.leads_of(p),
            }
            for p in sorted(names)
        ]

    return await handler.db.read(read)


def check_project(handler: BaseHandler, name: str) -> None:
    """403 for a project the caller may not read, 404 for a name that is no project."""
    if not handler.may_read_project(name):
        raise web.HTTPError(403, f"You are not in project {name}")
    if not handler.policy.is_project(name):
        raise web.HTTPError(404, f"No such project: {name}")


async def project_detail(handler: BaseHandler, name: str) -> dict[str, Any]:
    members_visible = handler.may_read_project(name, members=True)
    me = handler.user["name"]
    start, end = parse_range(handler)

    def read(session):
        account = ledger.get_account(session, "project", name, create=False)
        balance = ledger.available(session, account) if account else Decimal(0)
        by_user = reports.usage(session, "user", start, end, project=name)
        total = sum((Decimal(r["cost"]) for r in by_user), Decimal(0))
        return {
            "name": name,
            "parent": handler.policy.parent_of(name),
            "children": sorted(
                c for c, p in handler.policy.projects["parents"].items() if p == name
            ),
            "leads": handler.policy.leads_of(name),
            "balance": show(balance),
            "from": iso(start),
            "to": iso(end),
            "used": show(total),
            "members": by_user if members_visible else [r for r in by_user if r["user"] == me],
            "per_member": members_visible,
            "open_sessions": reports.sessions(session, project=name, status="open")
            if members_visible
            else [],
        }

    detail = await handler.db.read(read)
    if members_visible:
        members = await group_members(handler, name)
        have = {r["user"] for r in detail["members"]}
        detail["members"] += [
            {"user": u, "sessions": 0, "cost": "0.00", "charged": "0.00", "unbilled": "0.00"}
            for u in sorted(set(members) - have)
        ]
    return detail


async def group_members(handler: BaseHandler, group: str) -> list[str]:
    """The hub group's members (the service may read groups); [] if the hub
    cannot say right now."""
    hub = handler.service.hub
    if hub is None:
        return []
    try:
        status, data = await hub.request("GET", f"groups/{quote(group, safe='')}")
    except Exception as e:  # the page still shows who used the budget
        log.warning("Members of %s unknown: %s", group, e)
        return []
    return list((data or {}).get("users") or []) if status == 200 else []


OPERATIONS = ("topup", "assign", "move", "reverse", "renew")


def check_operation(policy, op: str, body: dict[str, Any]) -> dict[str, Any]:
    """The checked arguments of a ledger operation (400/403 with the reason)."""
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise web.HTTPError(400, "'reason' is required: say why (it is kept in the ledger)")
    if len(reason) > 1000:
        raise web.HTTPError(400, "'reason' is too long (at most 1000 characters)")
    out: dict[str, Any] = {"reason": reason.strip()}
    if op == "reverse":
        tx = body.get("transaction")
        if isinstance(tx, float) and tx.is_integer():
            tx = int(tx)  # 42.0 is 42 in JSON
        if isinstance(tx, bool) or not isinstance(tx, int) or not 1 <= tx <= MAX_ID:
            raise web.HTTPError(400, f"'transaction' must be a transaction id (1 to {MAX_ID})")
        return {**out, "transaction": tx}
    if op == "renew":
        return out
    out["amount"] = parse_amount(body.get("amount"))
    names = {"topup": ("project",), "assign": ("parent", "child"), "move": ("from", "to")}[op]
    for key in names:
        value = body.get(key)
        if not isinstance(value, str) or not policy.is_project(value):
            raise web.HTTPError(400, f"'{key}' must be a project (a group that is a project)")
        out[key] = value
    if op == "assign" and policy.parent_of(out["child"]) != out["parent"]:
        raise web.HTTPError(
            400,
            f"{out['child']} is not a child of {out['parent']} "
            "(accounting.projects.parents says who is whose parent)",
        )
    if op == "move" and out["from"] == out["to"]:
        raise web.HTTPError(400, "'from' and 'to' must be two different projects")
    return out


def run_operation(session, policy, op: str, args: dict[str, Any], actor: str) -> dict[str, Any]:
    at = now()
    project = lambda name: ledger.get_account(session, "project", name)  # noqa: E731
    if op == "reverse":
        tx = ledger.reverse(session, args["transaction"], actor, args["reason"], at)
    elif op == "renew":
        return {"renewed": usage.renew_all(session, policy, at)}
    else:
        source, target = {
            "topup": lambda: (
                ledger.get_account(session, "external", "topup"),
                project(args["project"]),
            ),
            "assign": lambda: (project(args["parent"]), project(args["child"])),
            "move": lambda: (project(args["from"]), project(args["to"])),
        }[op]()
        tx = ledger.post(
            session, op, [Leg(source, target, args["amount"])], actor, args["reason"], at=at
        )
    session.flush()  # the transaction's id
    balances = ledger.balances(session, "project")
    return {
        "transaction": tx.id,
        "kind": tx.kind,
        "at": iso(at),
        "balances": {k.split(":", 1)[1]: show(v) for k, v in balances.items()},
    }


async def operate(handler: BaseHandler, op: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        result = await handler.db.run(run_operation, handler.policy, op, args, handler.user["name"])
    except LedgerError as e:
        raise web.HTTPError(e.status, e.message) from None
    log.info("Ledger %s by %s: %s", op, handler.user["name"], args)
    return result


async def health(svc) -> dict[str, Any]:
    def read(session):
        status = charger.get_status(session)
        events = charger.unreachable_events(session)
        return status, [
            {"at": iso(e.at), "user": e.user, "server": e.server, "decision": e.reason}
            for e in events
        ]

    status, unreachable = await svc.db.read(read)
    return {
        "ok": True,
        "outbox_depth": svc.outbox["depth"],
        "outbox_oldest": svc.outbox["oldest"],
        "outbox_reported_at": svc.outbox["reported_at"],
        "last_reconcile": status.get("last_reconcile"),
        "unreachable": unreachable,
    }
