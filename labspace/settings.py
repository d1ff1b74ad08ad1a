"""Load, complete and validate ``labspace.yaml``.

One JSON Schema (``schema/settings.schema.json``) defines the file. Every problem
is reported as one line, ``path.to.key: what is wrong (what would be right)``, by
the CLI (``labspace config validate``) and at hub start-up alike.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import rules
from .rules import HIDDEN, SERVICE_SECTIONS

DEFAULT_PATH = "labspace.yaml"
CONFIG_ENV = "LABSPACE_CONFIG"


class SettingsError(Exception):
    """The settings file cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(self.report())

    def report(self) -> str:
        n = len(self.problems)
        head = f"{self.source}: {n} problem{'s' if n != 1 else ''} in Labspace settings"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


@dataclass
class Settings:
    """Validated settings with every default filled in."""

    values: dict[str, Any]
    source: Path | None = None
    env_sources: dict[str, str] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @property
    def data_dir(self) -> Path:
        return (self.base_dir / Path(self.values["data_dir"]).expanduser()).resolve()

    def local_url(self) -> str:
        """The proxy's address as seen from this machine: ``hub.proxy_url`` (a
        proxy run apart) or its own on ``hub.ip``, with ``base_url``."""
        given = self.get("hub.proxy_url")
        if given:
            return given.rstrip("/") + self.get("hub.base_url")
        host = rules.local_host(self.get("hub.ip"))
        return f"http://{host}:{self.get('hub.port')}{self.get('hub.base_url')}"

    def hub_local_url(self) -> str:
        """The hub's own server as this machine reaches it (``hub.hub_ip``,
        ``hub.hub_port``), e.g. ``http://127.0.0.1:8081/hub/``: for the
        launcher's health check and the services' calls to the hub API."""
        host = rules.local_host(self.get("hub.hub_ip"))
        return f"http://{host}:{self.get('hub.hub_port')}{self.get('hub.base_url')}hub/"

    def public_url(self) -> str:
        """Where users reach Labspace: ``hub.public_url``, else with ``hub.tls``
        ``https://<domain>[:<port>]<base_url>``, else the proxy's address."""
        url = self.get("hub.public_url")
        if url:
            return url if url.endswith("/") else url + "/"
        if rules.tls_enabled(self.values):
            return rules.https_url(self.values)
        return self.local_url()

    @property
    def warnings(self) -> list[str]:
        """Settings that work but are probably not what the operator meant."""
        said = _auth().warnings(self.get("auth"), self.get("hub.admin_users"))
        return said + rules.tls_warnings(self.values) + rules.proxy_apart_warnings(self.values)

    def redacted(self) -> dict[str, Any]:
        """The values with every secret replaced, safe to print; in ``hub.config``
        and environment variables, anything whose name says token, secret,
        password or key."""
        out = copy.deepcopy(self.values)
        _hide_secret_traits(out["hub"]["config"])
        _hide_secret_traits(out["backend"]["env"])
        for profile in out["profiles"]:
            _hide_secret_traits(profile.get("env", {}))
        for path in secret_paths():
            parent = out
            *head, last = path.split(".")
            for part in head:
                parent = parent[part]
            if parent.get(last):
                parent[last] = HIDDEN
        return out


_SECRET_NAME = re.compile(r"(token|secret|password|passwd|key)s?$", re.IGNORECASE)


def _hide_secret_traits(node: Any) -> None:
    if isinstance(node, dict):
        for name, value in node.items():
            if _SECRET_NAME.search(str(name)) and isinstance(value, (str, bytes, list)) and value:
                node[name] = HIDDEN
            else:
                _hide_secret_traits(value)
    elif isinstance(node, list):
        for item in node:
            _hide_secret_traits(item)


# SERVICE_SECTIONS: sections whose schema lives with their service
# (``services/<name>/settings.schema.json``)


@cache
def schema() -> dict[str, Any]:
    """The settings schema, with each service's section read from its package."""
    text = resources.files("labspace").joinpath("schema/settings.schema.json").read_text()
    root = json.loads(text)
    for name in SERVICE_SECTIONS:
        try:
            package = resources.files(f"labspace.services.{name}")
        except ModuleNotFoundError:
            continue
        fragment = package.joinpath("settings.schema.json")
        if fragment.is_file():
            root["properties"][name] = json.loads(fragment.read_text())
    return root


def service_config(name: str):
    """The ``config`` module of service ``name`` (its checks and hub parts), or None."""
    import importlib

    try:
        return importlib.import_module(f"labspace.services.{name}.config")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith(f"labspace.services.{name}"):
            return None
        raise


def iter_keys(node: dict[str, Any] | None = None, prefix: str = ""):
    """Yield ``(dotted path, subschema)`` for every key the schema defines."""
    node = schema() if node is None else node
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path, sub
        yield from iter_keys(sub, f"{path}.")


@cache
def key_schemas() -> dict[str, dict[str, Any]]:
    """Every key's subschema, by dotted path."""
    return dict(iter_keys())


@cache
def secret_paths() -> tuple[str, ...]:
    return tuple(path for path, sub in iter_keys() if sub.get("x-secret"))


def env_name(path: str) -> str:
    """``auth.client_secret`` -> ``LABSPACE_AUTH_CLIENT_SECRET``."""
    return "LABSPACE_" + path.replace(".", "_").upper()


# -- reading -----------------------------------------------------------------


def _duplicate_keys(node: yaml.Node, path: str = "") -> list[str]:
    """Keys given twice in one mapping (PyYAML would silently keep the last)."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{where}: given twice, on lines {seen[key]} and {line} (keep one)")
            seen.setdefault(key, line)
            problems += _duplicate_keys(value_node, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{i}]")
    return problems


def _drop_empty_sections(data: dict[str, Any], node: dict[str, Any] | None = None) -> None:
    """``hub:`` with nothing under it (all keys commented out) means an empty section."""
    node = schema() if node is None else node
    for name, sub in node.get("properties", {}).items():
        if sub.get("type") != "object" or name not in data:
            continue
        if data[name] is None:
            del data[name]
        elif isinstance(data[name], dict):
            _drop_empty_sections(data[name], sub)


def read_file(path: Path) -> dict[str, Any]:
    """Parse a YAML settings file into a mapping, or raise SettingsError."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(
            source, [f"(file): not found (create it, or run `labspace config init {path}`)"]
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(source, [f"(file): cannot be read: {e} (a UTF-8 text file)"]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        duplicates = _duplicate_keys(node) if node is not None else []
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        what = getattr(e, "problem", None) or str(e)
        raise SettingsError(
            source, [f"{where}: not valid YAML: {what} (check indentation and quoting there)"]
        ) from None
    finally:
        loader.dispose()
    if duplicates:
        raise SettingsError(source, duplicates)
    if data is None:
        return {}
    if isinstance(data, dict):
        _drop_empty_sections(data)
    else:
        raise SettingsError(
            source,
            [
                f"(top level): expected a mapping of settings, got {rules.kind(data)} "
                "(start with section keys such as 'hub:')"
            ],
        )
    return data


@cache
def env_paths() -> tuple[str, ...]:
    """Keys that the environment may set: every secret, and those marked x-env."""
    return tuple(path for path, sub in iter_keys() if sub.get("x-secret") or sub.get("x-env"))


def _from_env_text(path: str, name: str, value: str) -> tuple[Any, str | None]:
    """Convert an environment value to the key's type."""
    sub = key_schemas()[path]
    if sub.get("type") != "integer":
        return value, None
    try:
        return int(value), None
    except ValueError:
        return None, f"{path}: {name}={value!r} is not a whole number (e.g. {sub['default']})"


def from_env(
    data: dict[str, Any], environ: os._Environ | dict[str, str]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Overlay values from ``LABSPACE_<KEY>`` or ``LABSPACE_<KEY>_FILE``."""
    data = copy.deepcopy(data)
    used: dict[str, str] = {}
    problems: list[str] = []
    for path in env_paths():
        name = env_name(path)
        value = environ.get(name)
        if value is None and environ.get(f"{name}_FILE"):
            file_path = environ[f"{name}_FILE"]
            name = f"{name}_FILE"
            try:
                value = Path(file_path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
                problems.append(
                    f"{path}: {name} names {file_path!r}, which cannot be read: "
                    f"{why} (a readable UTF-8 file holding the value)"
                )
                continue
        if value is not None:
            value, problem = _from_env_text(path, name, value)
            if problem:
                problems.append(problem)
                continue
        if value is None:
            continue
        *head, last = path.split(".")
        parent = data
        for part in head:
            if not isinstance(parent.get(part, {}), dict):
                break
            parent = parent.setdefault(part, {})
        else:
            parent[last] = value
            used[path] = name
    return data, used, problems


# -- validating --------------------------------------------------------------


def _typed(values: Any, dotted: str, kind: type) -> Any:
    """``values[dotted]`` if it is there with the right type, else None."""
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, kind) and not (kind is int and isinstance(node, bool)) else None


def _auth():
    from . import auth  # imported late: it loads OAuthenticator

    return auth


def _semantic_problems(data: dict[str, Any], skip: set[str] = frozenset()) -> list[str]:
    """Rules one schema keyword cannot say; sections the schema refused are skipped."""
    problems = []
    values = with_defaults(data)
    problems += rules.database_url_problems("hub.db_url", _typed(values, "hub.db_url", str))
    admin_pw = _typed(values, "auth.admin_password", str)
    user_pw = _typed(values, "auth.user_password", str)
    if admin_pw and len(admin_pw) < 32:
        problems.append(
            f"auth.admin_password: only {len(admin_pw)} characters "
            "(at least 32, or leave it empty to generate one)"
        )
    if user_pw and len(user_pw) < 8:
        problems.append(f"auth.user_password: only {len(user_pw)} characters (at least 8)")
    if user_pw and user_pw == admin_pw:
        problems.append("auth.user_password: same as auth.admin_password (use two passwords)")
    if (
        _typed(values, "auth.allow_all", bool)
        and not user_pw
        and _typed(values, "auth.type", str) == "shared-password"
    ):
        problems.append(
            "auth.allow_all: true, but auth.user_password is empty, so nobody could use it "
            "(set auth.user_password, or drop allow_all)"
        )
    problems += rules.port_clashes(values, prefix="hub.")  # each service says its own
    if "hub" not in skip:
        problems += rules.hub_address_problems(values)
        problems += rules.tls_problems(values)
    auth = _typed(values, "auth", dict)
    if (
        "auth" not in skip
        and auth is not None
        and _typed(values, "auth.type", str) in _auth().PROVIDERS.keys() | {"shared-password"}
    ):
        problems += _auth().problems(auth)
    if not skip & {"profiles", "backend"}:
        from .profiles import problems as profile_problems

        problems += profile_problems(values["profiles"], values["backend"])
    if not skip & {"profiles", "hub"}:
        from .culling import problems as culling_problems

        problems += culling_problems(values)
    if not skip & {"profiles", "backend"}:
        from .warm import problems as warm_problems

        problems += warm_problems(values)
    for name in SERVICE_SECTIONS:
        # services read other sections too (profiles, hub ports): only a file
        # the schema accepted as a whole reaches their checks
        module = service_config(name)
        if not skip and module is not None:
            problems += module.problems(values)
    if _typed(values, "hub.admin_users", list) == []:
        problems.append(
            "hub.admin_users: empty, so nobody could administer the hub "
            "(list at least one user, e.g. [admin])"
        )
    return problems


def with_defaults(data: Any, node: dict[str, Any] | None = None) -> Any:
    """``data`` with the settings schema's defaults (or ``node``'s) filled in."""
    return rules.with_defaults(schema() if node is None else node, data)


def validate(data: Any) -> list[str]:
    """Problem lines for ``data`` (already parsed); empty when it is valid."""
    errors = rules.schema_errors(schema(), data)
    problems = rules.problem_lines(errors, schema(), data)
    if isinstance(data, dict):
        refused = {str(e.absolute_path[0]) for e in errors if e.absolute_path}
        problems += _semantic_problems(data, skip=refused)
    return problems


def config_path(path: str | os.PathLike | None = None) -> Path:
    """The settings file: ``path``, else ``$LABSPACE_CONFIG``, else ``./labspace.yaml``."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_PATH).absolute()


def load(
    path: str | os.PathLike | None = None,
    environ: os._Environ | dict[str, str] | None = None,
) -> Settings:
    """Read, overlay secrets from the environment, validate and complete settings."""
    environ = os.environ if environ is None else environ
    source = config_path(path)
    data = read_file(source)
    data, used, problems = from_env(data, environ)
    problems += validate(data)
    if problems:
        raise SettingsError(str(source), problems)
    return Settings(values=with_defaults(data), source=source, env_sources=used)
