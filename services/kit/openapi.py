"""Pieces of every service's OpenAPI document: one shape of operation and of
JSON answers, so the three documents say the same things the same way."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/responses/Error"}


def operation(
    service: str, summary: str, scope: str, ok: dict[str, Any], body: str = "", **extra
) -> dict[str, Any]:
    """One operation of ``service`` needing ``custom:labspace-<service>:<scope>``:
    each may answer 400, 403, 404 and 405 (another method), and one with a body
    413 (over 1 MiB). ``body`` names the request's schema in the components."""
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"hubToken": [f"custom:labspace-{service}:{scope}"]}],
        "responses": {**ok, "400": ERROR, "403": ERROR, "404": ERROR, "405": ERROR},
        **extra,
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if "requestBody" in op:
        op["responses"]["413"] = ERROR
    return op


def json_answer(ref: str, description: str = "OK") -> dict[str, Any]:
    """A JSON answer whose schema is the component ``ref``."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
