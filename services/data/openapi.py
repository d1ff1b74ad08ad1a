"""The OpenAPI document of the data service's API (served at ``<prefix>api/openapi.json``).

Every path the service routes is here with every method it answers (a test
compares the two); the hub side's ``api/internal/start`` is documented too,
with its own security (the service's hub token).
"""

from __future__ import annotations

from typing import Any

from labspace.services.kit.openapi import ERROR, json_answer, operation

from .crypto import VALUE_PATTERN
from .models import MAX_SIZE
from .rules import BACKEND_KINDS, ID_PATTERN, KINDS, S3_FIELDS

NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^\\x00-\\x1f\\x7f]+$"}
DATASET_ID = {
    "name": "dataset_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "A dataset id; one the caller holds no grant for is a 404, as a missing one.",
}
CREDENTIAL_VALUE = {"type": "string", "pattern": f"^{VALUE_PATTERN}$"}
LEVEL_PATH = {
    "name": "level",
    "in": "path",
    "required": True,
    "schema": {"enum": ["read", "write"]},
}


def _op(summary: str, scope: str, ok: dict[str, Any], body: str = "", **extra) -> dict:
    return operation("data", summary, scope, ok, body, **extra)


_json = json_answer


def _list(ref: str, description: str = "OK") -> dict[str, Any]:
    schema = {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


NO_CONTENT = {"204": {"description": "Done"}}
TIME = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "maxLength": 0},
    ]
}
AUDIT_PARAMETERS = [
    {"name": "dataset", "in": "query", "schema": {"type": "string"}},
    {
        "name": "user",
        "in": "query",
        "schema": {"type": "string"},
        "description": "That user's starts and the grants made to them by name",
    },
    {
        "name": "since",
        "in": "query",
        "schema": TIME,
        "description": "From this time on (UTC when a date)",
    },
    {"name": "until", "in": "query", "schema": TIME, "description": "Before this time"},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 500},
    },
    {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"], "default": "json"}},
]


def dataset_paths() -> dict[str, Any]:
    return {
        "/api/openapi.json": {
            "get": {
                "summary": "This document (public)",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}, "405": ERROR},
            }
        },
        "/api/datasets": {
            "get": _op(
                "Datasets: every one for data admins, else those the caller holds a grant "
                "for, each with the caller's level",
                "read",
                {"200": _list("Dataset")},
            ),
            "post": _op(
                "Create a dataset (its paths checked against data.roots)",
                "admin",
                {"201": _json("Dataset", "Created"), "409": ERROR},
                "NewDataset",
            ),
        },
        "/api/datasets/{dataset_id}": {
            "parameters": [DATASET_ID],
            "get": _op("One dataset", "read", {"200": _json("Dataset")}),
            "patch": _op(
                "Change a dataset: the keys given; one from labspace.yaml is a 409",
                "admin",
                {"200": _json("Dataset"), "409": ERROR},
                "DatasetChange",
            ),
            "delete": _op(
                "Delete a dataset with its grants and credentials (one from labspace.yaml "
                "is a 409)",
                "admin",
                {**NO_CONTENT, "409": ERROR},
            ),
        },
    }


def grant_paths() -> dict[str, Any]:
    return {
        "/api/datasets/{dataset_id}/grants": {
            "parameters": [DATASET_ID],
            "get": _op("The dataset's grants", "admin", {"200": _list("Grant")}),
            "post": _op(
                "Add or change the grant of a group or a user (audited with the reason)",
                "admin",
                {"200": _json("Grant"), "409": ERROR},
                "GrantChange",
            ),
        },
        "/api/datasets/{dataset_id}/grants/{subject_type}/{subject}": {
            "parameters": [
                DATASET_ID,
                {
                    "name": "subject_type",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["group", "user"]},
                },
                {"name": "subject", "in": "path", "required": True, "schema": NAME},
            ],
            "delete": _op(
                "Remove a grant (audited with the reason); the server it went into keeps "
                "it until it stops (see holders)",
                "admin",
                NO_CONTENT,
                parameters=[
                    {
                        "name": "reason",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 1000},
                    }
                ],
            ),
        },
        "/api/datasets/{dataset_id}/credentials/{level}": {
            "parameters": [DATASET_ID, LEVEL_PATH],
            "put": _op(
                "Set an s3 dataset's credential for a level (stored encrypted; never "
                "returned by any endpoint)",
                "admin",
                NO_CONTENT,
                "Credential",
            ),
            "delete": _op("Remove an s3 dataset's credential for a level", "admin", NO_CONTENT),
        },
    }


def other_paths() -> dict[str, Any]:
    return {
        "/api/me/datasets": {
            "get": _op(
                "The caller's datasets: level, where each appears in the workspace, size",
                "read",
                {"200": _list("MyDataset")},
            )
        },
        "/api/audit": {
            "get": _op(
                "The audit trail, newest first: grant, dataset and credential changes, "
                "and which datasets went into which server at each start",
                "admin",
                {
                    "200": {
                        "description": "Events (JSON, or CSV with a header row)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Event"},
                                }
                            },
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    }
                },
                parameters=AUDIT_PARAMETERS,
            )
        },
        "/api/holders": {
            "get": _op(
                "Running servers holding a grant stronger than their user has now",
                "admin",
                {"200": _list("Holder"), "502": ERROR},
            )
        },
        "/api/holders/{user}/stop": {
            "parameters": [{"name": "user", "in": "path", "required": True, "schema": NAME}],
            "post": _op(
                "Stop a server that holds a revoked or downgraded grant (only such a server)",
                "admin",
                {"202": {"description": "Stopping"}, "409": ERROR, "502": ERROR},
                "StopServer",
            ),
        },
    }


def internal_paths() -> dict[str, Any]:
    return {
        "/api/internal/start": {
            "post": {
                "summary": "The hub side at a start: the datasets this person's server gets "
                "(s3 ones with the credential of their level); recorded in the audit",
                "security": [{"serviceToken": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Start"}}
                    },
                },
                "responses": {
                    "200": _json("StartAnswer"),
                    **dict.fromkeys(("400", "403", "404", "405", "413"), ERROR),
                },
            }
        },
        "/api/internal/mine": {
            "get": {
                "summary": "The hub's home page: the datasets a person holds a grant for, "
                "as their own list shows them (no credential)",
                "security": [{"serviceToken": []}],
                "parameters": [
                    {"name": "user", "in": "query", "required": True, "schema": NAME},
                    {
                        "name": "groups",
                        "in": "query",
                        "description": "The person's groups, comma-separated",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {
                                "schema": _object(
                                    {
                                        "datasets": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/MyDataset"},
                                        }
                                    },
                                    ["datasets"],
                                )
                            }
                        },
                    },
                    **dict.fromkeys(("400", "403", "405"), ERROR),
                },
            }
        },
    }


def _object(props: dict[str, Any], required=(), **extra) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), **extra}


STR, NULLABLE_STR = {"type": "string"}, {"type": ["string", "null"]}
LEVEL = {"enum": ["read", "write"]}
NO_DOTDOT = r"(?!([\s\S]*/)?\.\.(/|$))"  # no '..' part from here on
RELATIVE = rf"^$|^{NO_DOTDOT}[^/][^\x00]*$"
EMPTY = {"type": ["string", "null"], "maxLength": 0}
SOURCES = {  # the source each kind takes (rules.check_dataset: the same, and roots)
    "host": rf"^/{NO_DOTDOT}",
    "volume": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$",
    "pvc": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
    "nfs": rf"^[A-Za-z0-9]([A-Za-z0-9.-]{{0,251}}[A-Za-z0-9])?:/{NO_DOTDOT}",
}
S3_PREFIX = r"^\s*$|^\s*(?!([\s\S]*/)?\.\.(/|\s*$))[^/\s][^\x00]*$"  # (stripped first)
NO_PATH = r"^(?![\s\S]*\.\.)(\./*)*$"  # "" (or "." and the like: nothing)
SIZE = r"^$|^\s*[0-9]+(\.[0-9]+)?\s*[KMGTPkmgtp]?([iI]?[bB])?\s*$"
S3 = _object(
    {
        "endpoint": {
            "type": ["string", "null"],
            "pattern": r"^\s*$|^\s*https?://[A-Za-z0-9.\[\]:-]+(:[0-9]{1,5})?/?\s*$",
            "description": "http(s)://host[:port] of the S3 API (empty: AWS)",
        },
        "bucket": {"type": "string", "pattern": r"^\s*[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\s*$"},
        "prefix": {"type": ["string", "null"], "pattern": S3_PREFIX},
        "region": {"type": ["string", "null"], "pattern": r"^\s*[a-z0-9-]{0,40}\s*$"},
    },
    ["bucket"],
    additionalProperties=False,
)
assert set(S3["properties"]) == set(S3_FIELDS)


def _text(limit: int, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": ["string", "null"], "maxLength": limit}
    return {**out, "description": description} if description else out


def dataset_fields(backend: str) -> dict[str, Any]:
    """A dataset's keys as a body gives them, for the kinds ``backend`` mounts
    (``rules.check_dataset`` checks the rest: paths under data.roots, mount paths)."""
    return {
        "id": {"type": "string", "pattern": f"^{ID_PATTERN}$"},
        "title": _text(200, "Default: the id"),
        "description": _text(4000),
        "kind": {"enum": list(BACKEND_KINDS.get(backend, KINDS))},
        "source": {
            "type": ["string", "null"],
            "description": "host: an absolute path under data.roots; volume: a Docker volume; "
            "pvc: a claim name; nfs: server:/export; s3: empty",
        },
        "sub_path": {
            "type": ["string", "null"],
            "description": "pvc, nfs, volume: a relative path inside the source",
        },
        "mount_path": {
            "type": ["string", "null"],
            "description": '"" = /data/<id> (local: ~/data/<id>); not in or above the home, '
            "not over a system folder",
        },
        "size": {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_SIZE},
                {"type": "string", "pattern": SIZE},
                {"type": "null"},
            ],
            "description": "Bytes, or text such as 10G (binary units); empty: unknown "
            "(host datasets are measured)",
        },
        "owner_group": _text(255),
        "tags": {
            "type": ["array", "null"],
            "items": {"type": "string", "pattern": r"\S", "maxLength": 64},
        },
        "s3": {"anyOf": [S3, {"type": "null"}]},
    }


def _kind_rule(kind: str) -> dict[str, Any]:
    source = {"type": "string", "pattern": SOURCES[kind]}
    sub_path = {"type": ["string", "null"], "pattern": NO_PATH if kind == "host" else RELATIVE}
    return {
        "if": {"properties": {"kind": {"const": kind}}},
        "then": {"properties": {"source": source, "sub_path": sub_path}},
    }


# what each kind needs, as far as JSON Schema can say it (rules.check_dataset says
# the rest: a host path under data.roots, mount paths, what the backend mounts)
KIND_RULES = [
    {
        "if": {"properties": {"kind": {"const": "s3"}}},
        "then": {
            "required": ["s3"],
            "properties": {
                "s3": S3,
                "source": EMPTY,
                "sub_path": {"type": ["string", "null"], "pattern": NO_PATH},
            },
        },
        "else": {
            "required": ["source"],
            "properties": {"source": {"type": "string", "minLength": 1}, "s3": {"type": "null"}},
        },
    },
    *(_kind_rule(kind) for kind in SOURCES),
]


def dataset_schemas(backend: str) -> dict[str, Any]:
    fields = dataset_fields(backend)
    view = {
        **{k: {"type": v["type"]} if "type" in v else v for k, v in fields.items()},
        "size": {"type": ["integer", "null"]},
        "s3": {"type": ["object", "null"]},
        "credentials": _object({"read": {"type": "boolean"}, "write": {"type": "boolean"}}),
        "source_of": {"enum": ["settings", "api"]},
        "level": {"enum": ["read", "write", None]},
        "created": STR,
        "updated": STR,
    }
    return {
        "NewDataset": _object(fields, ["id", "kind"], additionalProperties=False, allOf=KIND_RULES),
        "DatasetChange": _object(
            {k: v for k, v in fields.items() if k != "id"},
            additionalProperties=False,
            minProperties=1,
            description="Keys to change; the dataset they make must be valid (its id stays).",
        ),
        "Dataset": _object(view, ["id", "kind", "mount_path", "credentials", "source_of"]),
        "MyDataset": _object(
            {
                "id": STR,
                "title": STR,
                "description": STR,
                "kind": STR,
                "level": LEVEL,
                "mount_path": STR,
                "size": {"type": ["integer", "null"]},
                "tags": {"type": "array", "items": STR},
                "url": {"type": "string", "description": "s3 only: s3://bucket/prefix"},
            },
            ["id", "kind", "level", "mount_path"],
        ),
    }


def other_schemas() -> dict[str, Any]:
    return {
        "Grant": _object(
            {
                "dataset": STR,
                "subject_type": {"enum": ["group", "user"]},
                "subject": STR,
                "level": LEVEL,
                "granted_by": STR,
                "granted_at": STR,
                "source_of": {"enum": ["settings", "api"]},
            },
            ["subject_type", "subject", "level"],
        ),
        "GrantChange": {
            "type": "object",
            "properties": {
                "group": NAME,
                "user": NAME,
                "level": LEVEL,
                "reason": {"type": "string", "maxLength": 1000},
            },
            "required": ["level"],
            "additionalProperties": False,
            "oneOf": [{"required": ["group"]}, {"required": ["user"]}],
        },
        "Credential": _object(
            {
                "access_key_id": CREDENTIAL_VALUE,
                "secret_access_key": CREDENTIAL_VALUE,
                "session_token": {"anyOf": [CREDENTIAL_VALUE, {"type": "null"}]},
            },
            ["access_key_id", "secret_access_key"],
            additionalProperties=False,
        ),
    }


def trail_schemas() -> dict[str, Any]:
    """The audit trail, holders, and the hub side's start."""
    return {
        "Event": _object(
            {
                "id": {"type": "integer"},
                "at": STR,
                "kind": {"enum": ["grant", "dataset", "credential", "start"]},
                "actor": STR,
                "dataset": STR,
                "subject": STR,
                "before": {},
                "after": {},
                "reason": STR,
                "user": STR,
                "server": STR,
                "datasets": {
                    "type": "array",
                    "items": _object({"id": STR, "level": LEVEL}),
                },
            },
            ["id", "at", "kind"],
        ),
        "Holder": _object(
            {
                "user": STR,
                "server": STR,
                "dataset": STR,
                "held": LEVEL,
                "now": {"enum": ["read", "write", None]},
                "started": STR,
            }
        ),
        "StopServer": _object(
            {"server": {"type": "string", "maxLength": 255}}, additionalProperties=False
        ),
        "Start": _object(
            {
                "user": NAME,
                "server": {"type": "string", "maxLength": 255},
                "groups": {"type": "array", "items": NAME},
                "backend": {"enum": ["", "local", "docker", "kubernetes"]},
            },
            ["user", "server"],
            additionalProperties=False,
        ),
        "StartAnswer": _object({"datasets": {"type": "array", "items": {"type": "object"}}}),
        "Error": _object({"status": {"type": "integer"}, "message": STR}),
    }


def document(prefix: str, backend: str = "") -> dict[str, Any]:
    """The document; a dataset's ``kind`` is one the hub's ``backend`` mounts."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Labspace data service",
            "version": "1",
            "description": "Datasets with per-group and per-user read / write grants, "
            "resolved at every start and mounted by the backend, with an audit trail. "
            "Authorise with a hub token holding the data service's custom scopes "
            "(custom:labspace-data:read, custom:labspace-data:admin); errors are "
            "{status, message}. Credentials are write-only.",
        },
        "servers": [{"url": prefix.rstrip("/")}],
        "paths": {**dataset_paths(), **grant_paths(), **other_paths(), **internal_paths()},
        "components": {
            "securitySchemes": {
                "hubToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "token <JupyterHub API token>",
                },
                "serviceToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "token <the data service's own hub token> (the hub side only)",
                },
            },
            "responses": {"Error": _json("Error", "Error")},
            "schemas": {**dataset_schemas(backend), **other_schemas(), **trail_schemas()},
        },
    }
