"""The OpenAPI 3.1 document of the REST API (served at ``api/openapi.json``).

It says what the service answers: every status code an operation may give
(400 bad input, 403 missing scope, 405 with ``Allow``, 413 over 1 MiB, 503 a busy
database), and the bounds the handlers check on every parameter.
"""

from __future__ import annotations

from typing import Any

READ = "custom:labspace-accounting:read"
READ_ALL = "custom:labspace-accounting:read-all"
ADMIN = "custom:labspace-accounting:admin"
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL

ERROR = {
    "description": "Refused: `{status, message}`; the message says why and what to do",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
NOT_ALLOWED = {
    **ERROR,
    "description": "This method is not answered here; `Allow` lists the ones that are",
    "headers": {"Allow": {"schema": {"type": "string"}, "required": True}},
}
BUSY = {
    **ERROR,
    "description": "The database is busy (SQLite's write lock is held); try again shortly",
    "headers": {"Retry-After": {"schema": {"type": "string"}}},
}
# dates (2026-01-31) or times (2026-01-31T10:00:00Z, an offset, or none: UTC); empty: the default
TIME = {
    "type": "string",
    "pattern": r"^$|^(?!0000)\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$",
}
LIMIT = {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}


def _q(name: str, description: str, schema: Any = None) -> dict[str, Any]:
    if isinstance(schema, list):
        schema = {"type": "string", "enum": schema}
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


RANGE = [
    _q("from", "Start (ISO 8601 date or time, inclusive); default: start of this month", TIME),
    _q("to", "End (exclusive, after `from`, at most 10 years on); default: now", TIME),
]


def _get(
    summary: str, scope: str, params=(), csv: bool = False, extra: dict | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    responses = {"200": {"description": "OK", "content": content}, "403": ERROR}
    if params:
        responses["400"] = ERROR
    return {
        "get": {
            "summary": summary,
            "description": f"Needs `{scope}`.",
            "security": [{"hub": [scope]}],
            "parameters": list(params),
            "responses": {**responses, **(extra or {}), "405": NOT_ALLOWED, "503": BUSY},
        }
    }


def _op(
    summary: str, required: list[str], props: dict[str, Any], ok: str = "201"
) -> dict[str, Any]:
    reason = {
        "type": "string",
        "minLength": 1,
        "maxLength": 1000,
        "pattern": r"[^\s\u001c-\u001f\u0085]",  # not only white space
        "description": "Why (kept in the ledger): not only white space",
    }
    return {
        "post": {
            "summary": summary,
            "description": f"Needs `{ADMIN}`. Recorded in the ledger with your name and reason.",
            "security": [{"hub": [ADMIN]}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": [*required, "reason"],
                            "properties": {**props, "reason": reason},
                        }
                    }
                },
            },
            "responses": {
                ok: {"description": "Recorded", "content": {"application/json": {}}},
                "400": ERROR,
                "402": ERROR,
                "403": ERROR,
                "404": ERROR,
                "405": NOT_ALLOWED,
                "409": ERROR,
                "413": ERROR,
                "503": BUSY,
            },
        }
    }


AMOUNT = {
    "amount": {
        "type": ["string", "number"],
        "description": 'Amount above 0 and at most 1000000000, at most 6 decimals, e.g. "12.50"',
        "pattern": r"^(?!0*(\.0*)?$)(0|[1-9][0-9]{0,8})(\.[0-9]{1,6})?$",
        "minimum": 0.000001,
        "maximum": 1000000000,
    }
}
PROJECT = {"type": "string", "minLength": 1, "description": "A project (a hub group)"}


def _paths() -> dict[str, Any]:
    group = _q("group_by", "Grouping", ["day", "user", "project", "profile"])
    fmt = _q("format", "Output format", ["json", "csv"])
    who = [_q("user", "Only this user"), _q("project", "Only this project")]
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/prices": _get("Prices per profile, price schedule and estimates", READ),
        "/me": _get("My balances, open sessions (cost so far) and usage", READ),
        "/usage": _get(
            "Usage report (sessions, cost, charged, unbilled) grouped over a range; others' "
            "usage needs read-all, a project's members' usage needs to lead it",
            READ,
            [group, *RANGE, *who, fmt],
            csv=True,
        ),
        "/sessions": _get(
            "Usage sessions",
            READ,
            [
                *who,
                _q("status", "Which sessions", ["open", "closed", "all"]),
                _q("limit", "At most this many", LIMIT),
                fmt,
            ],
            csv=True,
        ),
        "/projects": _get("Projects you may see, with balances", READ),
        "/projects/{name}": _get(
            "A project's balance and usage (per member for leads and read-all)",
            READ,
            [name, *RANGE],
            extra={"404": ERROR},
        ),
        "/ledger": _get(
            "Recent ledger transactions",
            READ_ALL,
            [
                _q("account", "Only this account, e.g. project:lab-x"),
                _q("limit", "At most this many", LIMIT),
            ],
            extra={"404": ERROR},
        ),
        "/ledger/topup": _op(
            "Top up a project", ["project", "amount"], {"project": PROJECT, **AMOUNT}
        ),
        "/ledger/assign": _op(
            "Assign budget from a parent project to a child",
            ["parent", "child", "amount"],
            {"parent": PROJECT, "child": PROJECT, **AMOUNT},
        ),
        "/ledger/move": _op(
            "Move budget between two projects",
            ["from", "to", "amount"],
            {"from": PROJECT, "to": PROJECT, **AMOUNT},
        ),
        "/ledger/reverse": _op(
            "Reverse a transaction (once)",
            ["transaction"],
            {"transaction": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
        ),
        "/ledger/renew": _op("Grant this month's allowances now (idempotent)", [], {}, ok="200"),
        "/health": _get("Outbox depth, last reconcile, unreachable events", READ_ALL),
    }


def document(prefix: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Labspace accounting",
            "version": "1",
            "description": "Prices, project budgets, usage sessions and reports. Authenticate "
            "with a JupyterHub token (`Authorization: token ...`) or the hub's login cookie "
            "(then send the `_xsrf` token with every POST). Request bodies: at most 1 MiB.",
        },
        "servers": [{"url": prefix + "api"}],
        "components": {
            "securitySchemes": {"hub": {"type": "apiKey", "in": "header", "name": "Authorization"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
                }
            },
        },
        "paths": _paths(),
    }
