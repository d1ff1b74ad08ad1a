"""The OpenAPI document of the catalog API (served at ``<prefix>api/openapi.json``)."""

from __future__ import annotations

import json
from typing import Any

from labspace.services.kit.openapi import ERROR, json_answer, operation

from .apps import app_schema

MAX_LAUNCH_ID = 2**31 - 1


def _op(summary: str, scope: str, ok: dict[str, Any], body: str = "", **extra) -> dict:
    return operation("catalog", summary, scope, ok, body, **extra)


_json = json_answer


APP_ID = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}}
LAUNCH_ID = {
    "name": "launch_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LAUNCH_ID},
}
TARGET = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "user": {"type": "string", "minLength": 1},
                    "group": {"type": "string", "minLength": 1},
                },
                "minProperties": 1,
                "maxProperties": 1,
            }
        }
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/apps": {
            "get": _op(
                "Apps open to the caller's groups (admins: ?all=1 for every app)",
                "read",
                {"200": _json("AppList")},
                parameters=[
                    {"name": "category", "in": "query", "schema": {"type": "string"}},
                    {"name": "q", "in": "query", "schema": {"type": "string"}},
                    {"name": "all", "in": "query", "schema": {"enum": ["true", "false", "1", "0"]}},
                ],
            ),
            "post": _op(
                "Create an app (its first version)",
                "admin",
                {"201": _json("AppView"), "409": ERROR},
                "App",
            ),
        },
        "/api/apps/{app_id}": {
            "parameters": [APP_ID],
            "get": _op("One app at its current version", "read", {"200": _json("AppView")}),
            "patch": _op(
                "Update an app: a new version; keys left out keep their value",
                "admin",
                {"200": _json("AppView"), "409": ERROR},
                "AppChange",
            ),
            "delete": _op(
                "Delete an app and its versions", "admin", {"204": {"description": "Deleted"}}
            ),
        },
        "/api/apps/{app_id}/versions": {
            "parameters": [APP_ID],
            "get": _op("Every version, newest first", "read", {"200": _json("VersionList")}),
        },
        "/api/apps/{app_id}/disable": {
            "parameters": [APP_ID],
            "post": _op("Hide an app and refuse its launches", "admin", {"200": _json("AppView")}),
        },
        "/api/apps/{app_id}/enable": {
            "parameters": [APP_ID],
            "post": _op("Show a disabled app again", "admin", {"200": _json("AppView")}),
        },
        "/api/apps/{app_id}/launch": {
            "parameters": [APP_ID],
            "post": _op(
                "Launch: proxied apps start the default workspace if needed; standalone "
                "apps start the named server <app_id> with user_options {app, version}",
                "launch",
                {"200": _json("Launch"), "202": _json("Launch", "Starting"), "409": ERROR},
                requestBody={
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"version": {"type": ["string", "null"]}},
                            }
                        }
                    }
                },
            ),
        },
        "/api/launches": {
            "get": _op(
                "The caller's launches, newest first (?active=1: starting or running)",
                "launch",
                {"200": _json("LaunchList")},
                parameters=[
                    {
                        "name": "active",
                        "in": "query",
                        "schema": {"enum": ["true", "false", "1", "0"]},
                    }
                ],
            ),
        },
        "/api/launches/{launch_id}": {
            "parameters": [LAUNCH_ID],
            "get": _op(
                "One launch with its state as the hub sees it", "launch", {"200": _json("Launch")}
            ),
        },
        "/api/launches/{launch_id}/stop": {
            "parameters": [LAUNCH_ID],
            "post": _op("Stop the launched app", "launch", {"200": _json("Launch")}),
        },
        "/api/launches/{launch_id}/logs": {
            "parameters": [
                LAUNCH_ID,
                {
                    "name": "lines",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                },
            ],
            "get": _op(
                "The app's last log lines (from the workspace)",
                "launch",
                {"200": {"description": "lines"}},
            ),
        },
        "/api/launches/{launch_id}/shares": {
            "parameters": [LAUNCH_ID],
            "get": _op(
                "Who a standalone app is shared with", "launch", {"200": {"description": "shares"}}
            ),
            "post": _op(
                "Share a running standalone app",
                "launch",
                {"201": {"description": "Shared"}},
                requestBody=TARGET,
            ),
            "delete": _op(
                "Revoke a share", "launch", {"204": {"description": "Revoked"}}, requestBody=TARGET
            ),
        },
    }


# a base64 PNG (its signature and IHDR chunk) or SVG (text from "<svg" or "<?xml"),
# whole base64 quads (each prefix completed to a quad first); the service checks the
# same and rebuilds the SVG, which must be well-formed XML (no pattern can say that)
B64 = "[A-Za-z0-9+/]"
QUADS = f"({B64}{{4}})*({B64}{{2}}==|{B64}{{3}}=)?"
TWO_MORE = f"({B64}{{2}}{QUADS}|{B64}=|==)"  # the rest of a quad two characters short
ICON = (
    f"^(data:image/png;base64,iVBORw0KGgoAAAANSUhEU[g-v]{TWO_MORE}"
    f"|data:image/svg\\+xml;base64,(PHN2Z[w-z]{TWO_MORE}|PD94bW[w-z]({B64}{QUADS}|=)))?$"
)
COMMAND_WITH = {  # a command names where the app listens
    "if": {"required": ["unix_socket"], "properties": {"unix_socket": {"const": True}}},
    "then": {"properties": {"command": {"contains": {"pattern": "[{]unix_socket[}]"}}}},
    "else": {"properties": {"command": {"contains": {"pattern": "[{]port[}]"}}}},
}
# the rules across keys that apps.launch_problems checks, as JSON Schema
RULES = [
    {  # a bundled app has no command; any other has one
        "if": {
            "required": ["launch"],
            "properties": {
                "launch": {"required": ["bundled"], "properties": {"bundled": {"const": True}}}
            },
        },
        "then": {"properties": {"launch": {"properties": {"command": {"maxItems": 0}}}}},
        "else": {
            "required": ["launch"],
            "properties": {
                "launch": {
                    "required": ["command"],
                    "properties": {"command": {"minItems": 1}},
                    **COMMAND_WITH,
                }
            },
        },
    },
    {  # only standalone apps have a profile
        "if": {"required": ["kind"], "properties": {"kind": {"const": "standalone"}}},
        "else": {"properties": {"launch": {"properties": {"profile": {"const": ""}}}}},
    },
]


SOCKET_ONLY = {  # where workspaces share 127.0.0.1, an app with a command uses a socket
    "properties": {
        "launch": {
            "if": {"required": ["command"], "properties": {"command": {"minItems": 1}}},
            "then": {"required": ["unix_socket"], "properties": {"unix_socket": {"const": True}}},
        }
    }
}


def app_schemas(
    profiles: list[str] | None, shared_loopback: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of a new app (``App``) and of an update (``AppChange``: the keys
    to change; the result must follow the rules of ``App``)."""
    base = {k: v for k, v in app_schema().items() if k != "default"}
    props = json.loads(json.dumps(base["properties"]))
    props["icon"] = {
        **props["icon"],
        "pattern": ICON,
        "description": "A data: URL of a PNG or of a well-formed SVG (base64); the "
        "SVG is rebuilt without script, event attributes or foreign links.",
    }
    if profiles is not None:
        props["launch"]["properties"]["profile"]["enum"] = ["", *profiles]
    rules = [*RULES, SOCKET_ONLY] if shared_loopback else RULES
    app = {"type": "object", **base, "properties": props, "allOf": rules}
    change = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": props,
        "description": "Keys to change; the app they make must be a valid App (its id stays).",
    }
    return app, change


def document(
    prefix: str, profiles: list[str] | None = None, shared_loopback: bool = False
) -> dict[str, Any]:
    app, change = app_schemas(profiles, shared_loopback)
    view = {
        "type": "object",
        "properties": {
            k: {"type": t}
            for k, t in {
                "id": "string",
                "version": "string",
                "latest": "string",
                "title": "string",
                "description": "string",
                "category": "string",
                "icon": "string",
                "kind": "string",
                "bundled": "boolean",
                "disabled": "boolean",
                "source": "string",
                "versions": "integer",
                "updated": "string",
            }.items()
        }
        | {"groups": {"type": "array", "items": {"type": "string"}}},
    }
    launch = {
        "type": "object",
        "properties": {
            k: {"type": t}
            for k, t in {
                "id": "integer",
                "user": "string",
                "app": "string",
                "version": "string",
                "kind": "string",
                "server_name": "string",
                "state": "string",
                "message": "string",
                "created": "string",
                "updated": "string",
                "url": "string",
            }.items()
        },
    }
    launch["properties"]["state"] = {
        "enum": ["starting", "running", "stopping", "stopped", "failed", "superseded"]
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Labspace app catalog",
            "version": "1",
            "description": "Versioned interactive apps with group access, launched through "
            "the hub API. Authorise with a hub token holding the catalog's custom scopes; "
            "errors are {status, message}.",
        },
        "servers": [{"url": prefix.rstrip("/")}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "hubToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "token <JupyterHub API token>",
                }
            },
            "responses": {"Error": _json("Error", "Error")},
            "schemas": {
                "App": app,
                "AppChange": change,
                "AppView": view,
                "AppList": {
                    "type": "object",
                    "properties": {"apps": {"type": "array", "items": view}},
                },
                "VersionList": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "versions": {"type": "array"}},
                },
                "Launch": launch,
                "LaunchList": {
                    "type": "object",
                    "properties": {"launches": {"type": "array", "items": launch}},
                },
                "Error": {
                    "type": "object",
                    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
                },
            },
        },
    }
