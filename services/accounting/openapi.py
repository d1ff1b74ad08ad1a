"""The OpenAPI 3.1 document of the REST API (served at ``api/openapi.json``)."""

from __future__ import annotations

from typing import Any

READ = "custom:labspace-accounting:read"
READ_ALL = "custom:labspace-accounting:read-all"
ADMIN = "custom:labspace-accounting:admin"

ERROR = {
    "description": "Refused: `{status, message}`; the message says why and what to do",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _q(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


RANGE = [
    _q("from", "Start (ISO 8601 date or time, inclusive); default: start of this month"),
    _q("to", "End (exclusive); default: now"),
]


def _get(summary: str, scope: str, params=(), csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {
        "get": {
            "summary": summary,
            "description": f"Needs `{scope}`.",
            "security": [{"hub": [scope]}],
            "parameters": list(params),
            "responses": {
                "200": {"description": "OK", "content": content},
                "400": ERROR,
                "403": ERROR,
            },
        }
    }


def _op(summary: str, required: list[str], props: dict[str, Any]) -> dict[str, Any]:
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
                            "properties": {**props, "reason": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "201": {"description": "Recorded"},
                "400": ERROR,
                "402": ERROR,
                "403": ERROR,
                "409": ERROR,
            },
        }
    }


AMOUNT = {"amount": {"type": "string", "description": "Decimal amount above 0"}}


def document(prefix: str) -> dict[str, Any]:
    group = _q("group_by", "Grouping", ["day", "user", "project", "profile"])
    fmt = _q("format", "Output format", ["json", "csv"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Labspace accounting",
            "version": "1",
            "description": "Prices, project budgets, usage sessions and reports. Authenticate "
            "with a JupyterHub token (`Authorization: token ...`) or the hub's login cookie.",
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
        "paths": {
            "/prices": _get("Prices per profile, price schedule and estimates", READ),
            "/me": _get("My balances, open sessions (cost so far) and usage", READ),
            "/usage": _get(
                "Usage report (sessions, cost, charged, unbilled) grouped over a range; others' "
                "usage needs read-all, a project's members' usage needs to lead it",
                READ,
                [
                    group,
                    *RANGE,
                    _q("user", "Only this user"),
                    _q("project", "Only this project"),
                    fmt,
                ],
                csv=True,
            ),
            "/sessions": _get(
                "Usage sessions",
                READ,
                [
                    _q("user", "Only this user"),
                    _q("project", "Only this project"),
                    _q("status", "Which sessions", ["open", "closed", "all"]),
                    _q("limit", "At most this many (1-10000)"),
                    fmt,
                ],
                csv=True,
            ),
            "/projects": _get("Projects you may see, with balances", READ),
            "/projects/{name}": _get(
                "A project's balance and usage (per member for leads and read-all)",
                READ,
                [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    *RANGE,
                ],
            ),
            "/ledger": _get(
                "Recent ledger transactions",
                READ_ALL,
                [
                    _q("account", "Only this account, e.g. project:lab-x"),
                    _q("limit", "At most this many"),
                ],
            ),
            "/ledger/topup": _op(
                "Top up a project", ["project", "amount"], {"project": {"type": "string"}, **AMOUNT}
            ),
            "/ledger/assign": _op(
                "Assign budget from a parent project to a child",
                ["parent", "child", "amount"],
                {"parent": {"type": "string"}, "child": {"type": "string"}, **AMOUNT},
            ),
            "/ledger/move": _op(
                "Move budget between projects",
                ["from", "to", "amount"],
                {"from": {"type": "string"}, "to": {"type": "string"}, **AMOUNT},
            ),
            "/ledger/reverse": _op(
                "Reverse a transaction (once)",
                ["transaction"],
                {"transaction": {"type": "integer"}},
            ),
            "/ledger/renew": _op("Grant this month's allowances now (idempotent)", [], {}),
            "/health": _get("Outbox depth, last reconcile, unreachable events", READ_ALL),
        },
    }
