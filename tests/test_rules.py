"""The settings rules every part shares (``labspace.rules``), golden: the one
database-URL rule, the one list of ports and their clashes, ``with_defaults``
for any schema, and the one wording of schema problems, whichever schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from labspace import rules, settings, state
from labspace.services.catalog import apps as catalog_apps

SQLITE = Path("/srv/labspace/x.sqlite")
FIX = "(sqlite:///path or postgresql+psycopg://user:password@host:5432/db)"


# -- database URLs -------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        pytest.param("", "sqlite:////srv/labspace/x.sqlite", id="empty"),
        pytest.param(None, "sqlite:////srv/labspace/x.sqlite", id="none"),
        pytest.param("sqlite:///tmp/a.sqlite", "sqlite:///tmp/a.sqlite", id="sqlite"),
        pytest.param("sqlite://", "sqlite://", id="sqlite-memory"),
        pytest.param("postgresql://u:p@db/x", "postgresql+psycopg://u:p@db/x", id="postgresql"),
        pytest.param("postgres://u:p@db/x", "postgresql+psycopg://u:p@db/x", id="postgres"),
        pytest.param("postgresql+psycopg://db/x", "postgresql+psycopg://db/x", id="psycopg"),
    ],
)
def test_database_url_normalises(url, expected):
    assert rules.database_url(url, SQLITE) == expected
    assert rules.database_url_problems("hub.db_url", url) == []


@pytest.mark.parametrize(
    "url, shown",
    [
        pytest.param("mysql://u:secret@db/x", "'mysql'", id="mysql"),
        pytest.param("postgresql+asyncpg://db/x", "'postgresql+asyncpg'", id="driver"),
        pytest.param("db.example.org/x", "(the URL has no scheme)", id="no-scheme"),
    ],
)
@pytest.mark.parametrize("key", ["hub.db_url", "accounting.db_url", "catalog.db_url"])
def test_database_url_refused_in_one_line_naming_the_key(url, shown, key):
    line = f"{key}: unsupported database or driver {shown} {FIX}"
    with pytest.raises(rules.SettingValueError) as e:
        rules.database_url(url, SQLITE, key)
    assert str(e.value) == line
    assert "secret" not in str(e.value)
    assert rules.database_url_problems(key, url) == [line]


def test_state_database_url_is_the_rule():
    """The service kit imports it from ``labspace.state``."""
    assert state.database_url is rules.database_url
    assert settings.SERVICE_SECTIONS is rules.SERVICE_SECTIONS


def test_database_url_problems_leave_a_non_text_value_to_the_schema():
    assert rules.database_url_problems("hub.db_url", {"user": "u"}) == []


# -- ports ---------------------------------------------------------------------


def values(**sections) -> dict:
    return settings.with_defaults(sections)


def test_ports_lists_what_labspace_binds():
    got = rules.ports(
        values(
            hub={"ip": "10.0.0.5", "port": 80, "hub_port": 81, "proxy_api_port": 82},
            accounting={"enabled": True, "port": 83},
            catalog={"enabled": False, "port": 84},
            data={"enabled": True, "port": 85},
        )
    )
    assert got == [
        ("hub.port", "10.0.0.5", 80),
        ("hub.hub_port", "127.0.0.1", 81),
        ("hub.proxy_api_port", "127.0.0.1", 82),
        ("accounting.port", "127.0.0.1", 83),
        ("data.port", "127.0.0.1", 85),
    ]


def test_ports_public_port_on_every_address_when_ip_is_empty():
    assert rules.ports(values(hub={"ip": ""}))[0] == ("hub.port", "0.0.0.0", 8000)  # noqa: S104


CLASH = "(give each a port of its own)"


@pytest.mark.parametrize(
    "sections, prefix, expected",
    [
        pytest.param({}, "", [], id="defaults"),
        pytest.param(
            {"hub": {"port": 9000, "hub_port": 9000, "proxy_api_port": 9000}},
            "",
            [
                f"hub.hub_port: 9000 is also hub.port {CLASH}",
                f"hub.proxy_api_port: 9000 is also hub.port {CLASH}",
            ],
            id="hub",
        ),
        pytest.param(
            {"accounting": {"enabled": True, "port": 8081}},
            "accounting.",
            [f"accounting.port: 8081 is also hub.hub_port {CLASH}"],
            id="service-hub",
        ),
        pytest.param(
            {
                "accounting": {"enabled": True, "port": 8500},
                "catalog": {"enabled": True, "port": 8500},
            },
            "",
            [f"catalog.port: 8500 is also accounting.port {CLASH}"],
            id="service-service",
        ),
        pytest.param(
            {
                "accounting": {"enabled": True, "port": 8500},
                "catalog": {"enabled": True, "port": 8500},
            },
            "accounting.",
            [],
            id="only-prefix",
        ),
        pytest.param(
            {
                "accounting": {"enabled": False, "port": 8000},
                "catalog": {"enabled": True, "port": 8000},
            },
            "",
            [f"catalog.port: 8000 is also hub.port {CLASH}"],
            id="disabled-binds-nothing",
        ),
    ],
)
def test_port_clashes(sections, prefix, expected):
    assert rules.port_clashes(values(**sections), prefix=prefix) == expected


def test_port_clash_reported_once_through_settings():
    """labspace.yaml reports a service's clash once (the service's own check)."""
    data = {"accounting": {"enabled": True, "port": 8000}, "catalog": {"enabled": False}}
    assert settings.validate(data).count(f"accounting.port: 8000 is also hub.port {CLASH}") == 1


# -- defaults ------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "default": "x"},
        "limits": {
            "type": "object",
            "default": {},
            "properties": {"cpu": {"type": "number", "default": 1}, "gpu": {"type": "integer"}},
        },
        "tags": {"type": "array", "default": ["a"]},
        "plain": {"type": "object", "properties": {"n": {"type": "integer", "default": 2}}},
    },
}


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param({}, {"name": "x", "limits": {"cpu": 1}, "tags": ["a"]}, id="empty"),
        pytest.param(
            {"name": "y", "limits": {"gpu": 1}, "plain": {}, "extra": 3},
            {
                "name": "y",
                "limits": {"cpu": 1, "gpu": 1},
                "tags": ["a"],
                "plain": {"n": 2},
                "extra": 3,
            },
            id="given-kept",
        ),
        pytest.param(
            {"limits": None}, {"name": "x", "limits": None, "tags": ["a"]}, id="null-kept"
        ),
        pytest.param("text", "text", id="not-a-mapping"),
    ],
)
def test_with_defaults(value, expected):
    assert rules.with_defaults(SCHEMA, value) == expected


def test_with_defaults_copies_defaults():
    first = rules.with_defaults(SCHEMA, {})
    first["tags"].append("b")
    assert rules.with_defaults(SCHEMA, {})["tags"] == ["a"]


def test_settings_with_defaults_is_the_rule_on_the_settings_schema():
    assert settings.with_defaults({}) == rules.with_defaults(settings.schema(), {})


# -- schema problems -----------------------------------------------------------


@pytest.mark.parametrize(
    "value, where, expected",
    [
        pytest.param({"naem": "y"}, "", ["naem: unknown key (did you mean 'name'?)"], id="typo"),
        pytest.param(
            {"zzz": 1},
            "app",
            ["app.zzz: unknown key (allowed: name, limits, tags, plain)"],
            id="unknown",
        ),
        pytest.param(
            {"limits": {"cpu": "two"}},
            "app",
            ["app.limits.cpu: expected a number, got a string 'two' (a number, e.g. 1)"],
            id="type",
        ),
        pytest.param(
            None,
            "app",
            ["app: expected a mapping of keys, got nothing (null) (a mapping of keys)"],
            id="root",
        ),
        pytest.param({"tags": [1]}, "", [], id="valid"),
    ],
)
def test_schema_problems(value, where, expected):
    assert rules.schema_problems(SCHEMA, value, where) == expected


def test_schema_problems_hide_secrets_and_say_each_once():
    schema = {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "string", "description": "The app's id"},
            "token": {"type": "string", "x-secret": True},
        },
        "allOf": [{"required": ["id"]}],
    }
    got = rules.schema_problems(schema, {"token": ["s3cret"]}, "app")
    assert got == [
        "app.id: missing (required; The app's id)",
        "app.token: expected a text value, got a list <hidden> (a text value)",
    ]


APP = {
    "id": "web",
    "title": "Web",
    "kind": "proxied",
    "launch": {"command": ["web", "{unix_socket}"]},
}


@pytest.mark.parametrize(
    "key, value, said",
    [
        pytest.param("launhc", {}, "unknown key (did you mean 'launch'?)", id="typo"),
        pytest.param("titel", "Web", "unknown key (did you mean 'title'?)", id="typo-title"),
    ],
)
def test_one_wording_for_labspace_yaml_and_app_definitions(key, value, said):
    """A typo in an app reads the same in labspace.yaml (catalog.apps[0]) as
    in a definition checked on its own schema (the catalog API's "app")."""
    defn = {**APP, key: value}
    from_settings = settings.validate({"catalog": {"apps": [defn]}})
    from_schema = rules.schema_problems(catalog_apps.app_schema(), defn, "app")
    assert from_settings == [f"catalog.apps[0].{key}: {said}"]
    assert from_schema == [f"app.{key}: {said}"]
