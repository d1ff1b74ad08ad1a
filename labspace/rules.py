"""Settings rules that the hub and every service share, each in one place.

- :func:`database_url`: accept or refuse a database URL, and normalise it;
- :func:`ports` / :func:`port_clashes`: every port Labspace binds, and the
  settings that give two of them the same number;
- :func:`connect_host` / :func:`service_url` / :func:`hub_address_problems`:
  where the proxy and the workspaces reach the hub and the services, and a
  proxy run apart (``hub.proxy_api_url``);
- :func:`tls_problems` / :func:`https_url`: ``hub.tls`` with the rest of
  ``hub`` (a loopback proxy, the https public URL derived from the domain);
- :func:`with_defaults`: a value completed with the defaults of its JSON Schema;
- :func:`schema_problems`: one line per schema error, ``path.to.key: what is
  wrong (what would be right)``, for any JSON Schema (``labspace.yaml`` and the
  catalog's app definitions alike).

Pure functions: no I/O, no import of the rest of Labspace (``settings`` and the
services import this module, never the other way round).
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # jsonschema takes seconds to import: only validation loads it
    from jsonschema.exceptions import ValidationError

HIDDEN = "<hidden>"
# the services the hub may start, in the order it starts them; each has a
# section of the same name with ``enabled``, ``port`` and ``db_url``
SERVICE_SECTIONS = ("accounting", "catalog", "data")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
DATABASE_FIX = "sqlite:///path or postgresql+psycopg://user:password@host:5432/db"
LOOPBACK = "127.0.0.1"


class SettingValueError(ValueError):
    """A setting's value cannot be used; the message is one problem line
    (``key: what is wrong (the fix)``)."""


# -- database URLs -----------------------------------------------------------


def database_url(url: str | None, sqlite_file: Path, key: str = "db_url") -> str:
    """The SQLAlchemy URL for the setting ``key``: SQLite at ``sqlite_file`` when
    ``url`` is empty, plain ``postgresql://`` (or ``postgres://``) read as
    psycopg 3, else ``url`` itself. Raises :class:`SettingValueError` naming
    ``key`` and the fix for a database or driver Labspace does not support."""
    if not url:
        return f"sqlite:///{sqlite_file}"
    scheme = urlsplit(url).scheme
    if scheme not in DATABASE_SCHEMES:
        shown = repr(scheme) if scheme else "(the URL has no scheme)"
        raise SettingValueError(f"{key}: unsupported database or driver {shown} ({DATABASE_FIX})")
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def database_url_problems(key: str, url: Any) -> list[str]:
    """The problem line of the setting ``key`` (a database URL), if any."""
    if not isinstance(url, str):
        return []  # the schema says what is wrong with a value that is no text
    try:
        database_url(url, Path(), key)
    except SettingValueError as e:
        return [str(e)]
    return []


# -- ports -------------------------------------------------------------------


def _section(values: dict[str, Any], name: str) -> dict[str, Any]:
    section = values.get(name)
    return section if isinstance(section, dict) else {}


def _port(section: dict[str, Any], key: str) -> int | None:
    value = section.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def ports(
    values: dict[str, Any], services: Iterable[str] = SERVICE_SECTIONS
) -> list[tuple[str, str, int]]:
    """``(key, ip, port)`` for every port Labspace binds under ``values`` (the
    settings, defaults filled): the proxy's public port and its API (not with
    ``hub.proxy_api_url``: the proxy runs elsewhere), the hub's, with ``hub.tls``
    Caddy's HTTPS and HTTP ports, and each enabled service's (the hub's and the
    services' on ``hub.hub_ip``, the proxy's API on loopback)."""
    hub = _section(values, "hub")
    own_proxy = not hub.get("proxy_api_url")
    hub_ip = hub.get("hub_ip") or LOOPBACK
    out = []
    for key, ip in (
        ("port", (hub.get("ip") or "0.0.0.0") if own_proxy else None),  # noqa: S104
        ("hub_port", hub_ip),
        ("proxy_api_port", LOOPBACK if own_proxy else None),
    ):
        port = _port(hub, key)
        if port is not None and ip is not None:
            out.append((f"hub.{key}", ip, port))
    tls = _section(hub, "tls")
    if tls.get("type", "none") != "none":
        for key in ("port", "http_port"):
            port = _port(tls, key)
            if port is not None:
                ip = tls.get("ip") or "0.0.0.0"  # noqa: S104
                out.append((f"hub.tls.{key}", ip, port))
    for name in services:
        section = _section(values, name)
        port = _port(section, "port")
        if section.get("enabled") and port is not None:
            out.append((f"{name}.port", hub_ip, port))
    return out


def port_clashes(
    values: dict[str, Any], prefix: str = "", services: Iterable[str] = SERVICE_SECTIONS
) -> list[str]:
    """One line for each setting of :func:`ports` whose port an earlier one has,
    ``catalog.port: 8000 is also hub.port (give each a port of its own)``; only
    the settings whose key starts with ``prefix`` (e.g. ``"catalog."``)."""
    seen: dict[int, str] = {}
    out = []
    for key, _ip, port in ports(values, services):
        if port in seen and key.startswith(prefix):
            out.append(f"{key}: {port} is also {seen[port]} (give each a port of its own)")
        seen.setdefault(port, key)
    return out


# -- where the hub is reached (hub.hub_ip, hub.connect_host, hub.proxy_api_url) --

ANY_ADDRESS = ("", "0.0.0.0", "::")  # noqa: S104


def is_loopback(ip: str) -> bool:
    return ip in ("::1", "localhost") or ip.startswith("127.")


def local_host(ip: str) -> str:
    """The host a process on this machine uses to reach something listening on
    ``ip``: loopback for "every address", an IPv6 address in brackets."""
    host = LOOPBACK if ip in ANY_ADDRESS else ip
    return f"[{host}]" if ":" in host else host


def connect_host(values: dict[str, Any]) -> str:
    """The host by which the proxy and the workspaces reach the hub and the
    services: ``hub.connect_host``, else this machine's address of ``hub.hub_ip``."""
    hub = _section(values, "hub")
    return hub.get("connect_host") or local_host(hub.get("hub_ip") or LOOPBACK)


def service_url(values: dict[str, Any], name: str) -> str:
    """Where the proxy sends ``/services/<name>/``: ``http://<connect host>:<port>``."""
    return f"http://{connect_host(values)}:{_section(values, name).get('port')}"


def service_local_url(values: dict[str, Any], name: str) -> str:
    """Service ``name`` as the hub's own process reaches it (no Service hop)."""
    hub_ip = _section(values, "hub").get("hub_ip") or LOOPBACK
    return f"http://{local_host(hub_ip)}:{_section(values, name).get('port')}"


def proxy_runs_apart(values: dict[str, Any]) -> bool:
    """Whether ``hub.proxy_api_url`` names a proxy run separately (the chart's)."""
    return bool(_section(values, "hub").get("proxy_api_url"))


def proxy_apart_warnings(values: dict[str, Any]) -> list[str]:
    """Settings that work with a proxy run apart but lose what it is for."""
    hub = _section(values, "hub")
    if not hub.get("proxy_api_url") or not hub.get("cleanup_servers", True):
        return []
    return [
        "hub.cleanup_servers: true, so a restart of the hub stops every workspace, though the "
        "proxy that serves them runs apart (set hub.cleanup_servers: false)"
    ]


def hub_address_problems(values: dict[str, Any]) -> list[str]:
    """Problem lines of ``hub.hub_ip``, ``hub.connect_host`` and
    ``hub.proxy_api_url`` with the rest of ``hub`` (defaults filled, the ``hub``
    section valid for the schema)."""
    hub = _section(values, "hub")
    out = []
    ip, host = hub.get("hub_ip", LOOPBACK), hub.get("connect_host", "")
    if host and is_loopback(ip):
        out.append(
            f"hub.connect_host: {host!r}, but hub.hub_ip is {ip}, so nothing on another "
            "machine or pod could reach the hub there (set hub.hub_ip: 0.0.0.0, or leave "
            "hub.connect_host empty)"
        )
    if not hub.get("proxy_api_url"):
        if hub.get("proxy_url"):
            out.append(
                f"hub.proxy_url: {hub['proxy_url']!r}, but the hub runs its own proxy "
                "(hub.proxy_api_url is empty) and reaches it on loopback (leave hub.proxy_url "
                "empty, or set hub.proxy_api_url to the proxy's API)"
            )
        return out
    if _section(hub, "tls").get("type", "none") != "none":
        out.append(
            "hub.tls: on, but hub.proxy_api_url says the proxy runs separately, and Caddy "
            "would have no proxy to front (set hub.tls.type: none and terminate HTTPS at "
            "the ingress, or leave hub.proxy_api_url empty)"
        )
    if hub.get("proxy_command"):
        out.append(
            "hub.proxy_command: set, but hub.proxy_api_url says the proxy runs separately, "
            "so the hub starts none (remove one of them)"
        )
    return out


# -- HTTPS (hub.tls) ----------------------------------------------------------


def _tls_section(values: dict[str, Any]) -> dict[str, Any]:
    return _section(_section(values, "hub"), "tls")


def tls_enabled(values: dict[str, Any]) -> bool:
    """Whether ``hub.tls`` asks for HTTPS (``values``: the settings, defaults filled)."""
    return _tls_section(values).get("type", "none") != "none"


def https_url(values: dict[str, Any]) -> str:
    """``https://<domain>[:<port>]<base_url>``: where users reach Labspace with TLS on."""
    tls, hub = _tls_section(values), values["hub"]
    port = tls.get("port", 443)
    netloc = tls["domain"] if port == 443 else f"{tls['domain']}:{port}"
    return f"https://{netloc}{hub.get('base_url', '/')}"


def tls_problems(values: dict[str, Any]) -> list[str]:
    """Problem lines of ``hub.tls`` with the rest of ``hub`` (``values``: the
    settings, defaults filled, the ``hub`` section valid for the schema)."""
    if not tls_enabled(values):
        return []
    tls, hub = _tls_section(values), values["hub"]
    kind = tls["type"]
    out = []
    if not tls.get("domain"):
        out.append(
            f"hub.tls.domain: empty, but hub.tls.type is {kind} "
            "(the host name users open, e.g. hub.example.org)"
        )
    if kind == "files":
        for key in ("certificate", "key"):
            if not tls.get(key):
                out.append(
                    f"hub.tls.{key}: empty, but hub.tls.type is files "
                    f"(the path of the PEM {key} file, or use hub.tls.type: acme)"
                )
    ip = hub.get("ip", "")
    if not is_loopback(ip):
        shown = repr(ip) if ip else "empty (every address)"
        out.append(
            f"hub.ip: {shown}, but with hub.tls the proxy must listen on loopback only, "
            "or plain HTTP would bypass HTTPS (set hub.ip: 127.0.0.1; Caddy listens on "
            "hub.tls.ip)"
        )
    url = hub.get("public_url", "")
    parts = urlsplit(url)
    if url and parts.scheme != "https":
        derived = f"derived as {https_url(values)}" if tls.get("domain") else "derived"
        out.append(
            f"hub.public_url: {url!r} is not https, but hub.tls is on "
            f"(leave it empty: it is {derived})"
        )
    elif url and tls["domain"] and (parts.hostname or "").lower() != tls["domain"].lower():
        out.append(
            f"hub.public_url: host {parts.hostname!r} differs from hub.tls.domain "
            f"{tls['domain']!r} (leave hub.public_url empty, or give both one host)"
        )
    return out


PUBLIC_CAS = ("api.letsencrypt.org",)  # CAs that check the standard ports only


def tls_warnings(values: dict[str, Any]) -> list[str]:
    """Settings that work here but will not get a certificate from a public CA."""
    tls = _tls_section(values)
    if tls.get("type") != "acme":
        return []
    host = urlsplit(tls["acme"]["directory"]).hostname or ""
    if not host.endswith(PUBLIC_CAS) or tls["http_port"] == 80 or tls["port"] == 443:
        return []
    return [
        f"hub.tls: {host} checks port 80 (http-01) or 443 (tls-alpn-01) of hub.tls.domain, "
        f"and Caddy listens on {tls['http_port']} and {tls['port']}: forward 80 to "
        f"{tls['http_port']} (or 443 to {tls['port']}), or no certificate can be issued"
    ]


# -- defaults ----------------------------------------------------------------


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the defaults of ``schema`` filled in, recursively through
    objects (a default is completed too), without touching given values; keys the
    schema does not know are kept. Lists are left as they are."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    out = {}
    for name, sub in schema.get("properties", {}).items():
        if name in value:
            out[name] = with_defaults(sub, value[name])
        elif "default" in sub:
            out[name] = with_defaults(sub, copy.deepcopy(sub["default"]))
    out.update((k, v) for k, v in value.items() if k not in out)
    return out


# -- schema errors -----------------------------------------------------------


def key_path(parts: Iterable[Any], root: Any = None, where: str = "") -> str:
    """``hub.admin_users[0]``; with ``root`` (the validated value), a number is
    an index only in a list. ``where`` goes first (``app``, ``catalog.apps[0]``)."""
    out, node = where, root
    for part in parts:
        in_list = isinstance(node, list) if root is not None else isinstance(part, int)
        out += f"[{part}]" if in_list else (f".{part}" if out else str(part))
        if isinstance(node, (list, dict)):
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
    return out or "(top level)"


def kind(value: Any) -> str:
    """What ``value`` is, in the words of a problem line."""
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "true/false",
        int: "a number",
        float: "a number",
        type(None): "nothing (null)",
    }
    return names.get(type(value), type(value).__name__)


EXPECTED_TYPE = {
    "object": "a mapping of keys",
    "array": "a list",
    "string": "a text value",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


def suggest(word: Any, choices: Iterable[str]) -> str:
    """``did you mean 'port'?`` for the closest of ``choices``, else ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def _show(value: Any, sub: dict[str, Any]) -> str:
    if sub.get("x-secret"):
        return HIDDEN
    if value is None or isinstance(value, bool):
        return ""  # "got nothing (null)" and "got true/false" say it already
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _names_hint(error: ValidationError, schema: dict[str, Any]) -> str:
    """The ``x-hint`` of the object whose ``propertyNames`` refused a name."""
    node: Any = schema
    for part in error.absolute_schema_path:
        if part == "propertyNames":
            break
        node = node[part]
    return node.get("x-hint", "see the reference")


def _key_hint(error: ValidationError, schema: dict[str, Any], key: str) -> str:
    """What a missing ``key`` should hold: the ``x-hint`` or description of its
    schema, found in the nearest enclosing ``properties`` (a ``required`` may sit
    in an ``allOf`` or ``then`` apart from them)."""
    nodes: list[Any] = [schema]
    for part in list(error.absolute_schema_path)[:-1]:
        nodes.append(nodes[-1][part])
    for node in reversed(nodes):
        props = node.get("properties") if isinstance(node, dict) else None
        if isinstance(props, dict) and key in props:
            return props[key].get("x-hint") or props[key].get("description") or "add it"
    return "add it"


def _unknown_keys(error: ValidationError, parts, root, where) -> list[str]:
    allowed = list(error.schema.get("properties", {}))
    lines = []
    for key in sorted(set(error.instance) - set(allowed), key=str):
        at = key_path([*parts, key], root, where)
        if not allowed:
            lines.append(f"{at}: unknown key (this section has no settings yet; remove it)")
            continue
        tip = suggest(key, allowed) or "allowed: " + ", ".join(allowed)
        lines.append(f"{at}: unknown key ({tip})")
    return lines


def _bad_value(error: ValidationError, path: str) -> str | None:
    """The line of an error about a value of the wrong type, choice or range."""
    sub, check, value = error.schema, error.validator, error.instance
    hint = sub.get("x-hint")
    if check == "type":
        types = sub["type"] if isinstance(sub["type"], list) else [sub["type"]]
        expected = " or ".join(EXPECTED_TYPE.get(t, t) for t in types)
        got = " ".join(filter(None, [kind(value), _show(value, sub)]))
        example = f", e.g. {json.dumps(sub['default'])}" if "default" in sub else ""
        return f"{path}: expected {expected}, got {got} ({hint or expected + example})"
    if check == "enum":
        choices = [json.dumps(c) if isinstance(c, bool) else str(c) for c in sub["enum"]]
        tip = suggest(value, choices)
        tip = f"{tip} " if tip else ""
        return (
            f"{path}: {_show(value, sub)} is not a valid choice ({tip}one of: {', '.join(choices)})"
        )
    if check == "exclusiveMinimum":
        return f"{path}: {value} is too small (more than {error.validator_value})"
    if check in ("minimum", "maximum"):
        word = "small" if check == "minimum" else "large"
        lo, hi = sub.get("minimum"), sub.get("maximum")
        span = (
            f"{lo} to {hi}"
            if lo is not None and hi is not None
            else f"{check} {error.validator_value}"
        )
        return f"{path}: {value} is too {word} (a whole number from {span})"
    if check == "minLength":
        return f"{path}: must not be empty ({hint or 'a non-empty text value'})"
    if check == "pattern":
        return f"{path}: {_show(value, sub)} is not valid ({hint or 'see the reference'})"
    if check == "uniqueItems":
        return f"{path}: lists an entry more than once (list each once)"
    if check == "maxItems":
        return f"{path}: too many entries ({hint or 'fewer entries'})"
    return None


def describe(
    error: ValidationError, schema: dict[str, Any], root: Any = None, where: str = ""
) -> list[str]:
    """The problem lines of one error of validating ``root`` against ``schema``."""
    parts = list(error.absolute_path)
    path = key_path(parts, root, where)
    sub = error.schema if isinstance(error.schema, dict) else {}
    if "propertyNames" in error.schema_path:
        return [f"{path}: {error.instance!r} is not a valid name ({_names_hint(error, schema)})"]
    if error.validator == "additionalProperties":
        return _unknown_keys(error, parts, root, where)
    if error.validator == "required":
        return [
            f"{key_path([*parts, k], root, where)}: missing "
            f"(required; {_key_hint(error, schema, k)})"
            for k in error.validator_value
            if k not in error.instance
        ]
    line = _bad_value(error, path)
    if line is not None:
        return [line]
    return [f"{path}: {error.message} ({sub.get('x-hint') or 'see docs/reference/settings.md'})"]


def schema_errors(schema: dict[str, Any], value: Any) -> list[ValidationError]:
    """The errors of ``value`` against ``schema``, sorted by key; a value of the
    wrong type fails its enum or pattern too, and is said once (its type)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    wrong_type = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    return [e for e in errors if e.validator == "type" or tuple(e.absolute_path) not in wrong_type]


def problem_lines(
    errors: Iterable[ValidationError], schema: dict[str, Any], root: Any, where: str = ""
) -> list[str]:
    """The lines of ``errors`` (from :func:`schema_errors`), each once, in order
    (two parts of a schema, e.g. an ``allOf``, may refuse the same thing)."""
    lines = (line for error in errors for line in describe(error, schema, root, where))
    return list(dict.fromkeys(lines))


def schema_problems(schema: dict[str, Any], value: Any, where: str = "") -> list[str]:
    """One line per problem of ``value`` against ``schema``, each naming the key
    (``where`` first, e.g. ``app.launch.timeout``) and the fix; empty when valid."""
    return problem_lines(schema_errors(schema, value), schema, value, where)
