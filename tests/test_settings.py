"""Settings validation as an operator meets it: every problem in ``labspace.yaml``
is one line, ``path.to.key: what is wrong (what would be right)``, and secrets
never appear in a report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from labspace import reference
from labspace.settings import (
    HIDDEN,
    SERVICE_SECTIONS,
    Settings,
    SettingsError,
    config_path,
    load,
    secret_paths,
    with_defaults,
)

ADMIN_PW = "a" * 20 + "-admin-password-40chr"  # 41 characters
USER_PW = "user-pass-123"

# what an empty labspace.yaml means, written out in full
DEFAULTS = {
    "data_dir": "labspace-data",
    "hub": {
        "ip": "127.0.0.1",
        "port": 8000,
        "hub_port": 8081,
        "hub_ip": "127.0.0.1",
        "connect_host": "",
        "proxy_api_port": 8001,
        "proxy_api_url": "",
        "proxy_url": "",
        "base_url": "/",
        "public_url": "",
        "db_url": "",
        "admin_users": ["admin"],
        "cleanup_servers": True,
        "log_level": "INFO",
        "proxy_command": [],
        "tls": {
            "type": "none",
            "domain": "",
            "ip": "",
            "port": 443,
            "http_port": 80,
            "certificate": "",
            "key": "",
            "hsts": 31536000,
            "acme": {
                "email": "",
                "directory": "https://acme-v02.api.letsencrypt.org/directory",
                "ca_root": "",
            },
        },
        "culling": {
            "enabled": True,
            "timeout": 3600,
            "every": 600,
            "max_age": 0,
            "named_servers": True,
            "remove_named_servers": False,
            "users": False,
            "admin_users": True,
            "concurrency": 10,
        },
        "config": {},
    },
    "auth": {
        "type": "shared-password",
        "admin_password": "",
        "user_password": "",
        "display_name": "",
        "issuer": "",
        "authorize_url": "",
        "token_url": "",
        "userdata_url": "",
        "client_id": "",
        "client_secret": "",
        "callback_url": "",
        "scopes": [],
        "username_claim": "",
        "groups_claim": "",
        "allowed_groups": [],
        "admin_groups": [],
        "allowed_users": [],
        "allow_all": False,
        "refresh_interval": 300,
        "tenant_id": "",
        "hosted_domain": [],
        "allowed_organizations": [],
        "server_url": "",
    },
    "backend": {
        "type": "local",
        "default_url": "/lab",
        "start_timeout": 120,
        "http_timeout": 60,
        "spawn_concurrency": 0,
        "warm_pool": {
            "enabled": "auto",
            "size": 2,
            "profiles": [],
            "refill_concurrency": 1,
            "max_age": 86400,
            "kernel": True,
        },
        "image": "labspace/workspace:latest",
        "env": {},
        "mounts": [],
        "docker": {"network": "host", "home": "volume", "uid": 1000},
        "kubernetes": {
            "namespace": "",
            "storage_class": "",
            "home_size": "10G",
            "uid": 1000,
            "fs_gid": 100,
            "service_account": "",
        },
    },
    "profiles": [],
    "accounting": None,  # the services' own defaults, below
    "catalog": None,
    "data": {},
}
# the accounting and catalog sections live with their services, which test their
# keys (tests/test_accounting_*.py, tests/test_catalog_*.py); here they are only
# carried along
for _name in SERVICE_SECTIONS:
    DEFAULTS[_name] = with_defaults({})[_name]

# every key given, as a group server would run it
REALISTIC = f"""\
# Labspace for the group server
data_dir: /srv/labspace
hub:
  ip: 0.0.0.0
  port: 8443
  hub_port: 18081
  hub_ip: 127.0.0.1
  connect_host: ""
  proxy_api_port: 18001
  proxy_api_url: ""
  proxy_url: ""
  base_url: /jupyter/
  public_url: https://hub.example.org/jupyter/
  db_url: postgresql+psycopg://labspace:dbpass@db.example.org:5432/labspace
  admin_users: [alice, bob]
  cleanup_servers: false
  log_level: DEBUG
  proxy_command: [/usr/local/bin/configurable-http-proxy, --no-x-forward]
  config:
    Spawner:
      mem_limit: 2G
    JupyterHub:
      shutdown_on_logout: true
auth:
  type: shared-password
  admin_password: {ADMIN_PW}
  user_password: {USER_PW}
  allowed_users: [carol]
  allow_all: false
backend:
  type: local
  default_url: /tree
  start_timeout: 300
  http_timeout: 90
  spawn_concurrency: 4
  image: registry.example.org/lab/workspace:2024.10
  env:
    TZ: Europe/Berlin
  mounts:
    - name: reference
      type: host
      source: /srv/reference
      target: /data/reference
  docker:
    network: labspace
    home: bind
    uid: 1001
  kubernetes:
    namespace: labspace
    storage_class: fast
    home_size: 20G
    uid: 1001
    fs_gid: 1001
    service_account: workspace
profiles:
  - slug: small
    display_name: Small
    description: For notebooks and teaching
    default: true
    cpu: {{guarantee: 0.5, limit: 1}}
    memory: {{guarantee: 512M, limit: 1G}}
    gpus: 0
    image: ""
    env: {{PROFILE_SIZE: small}}
    groups: []
    mounts: []
    node_selector: {{}}
    tolerations: []
  - slug: gpu
    display_name: GPU
    description: One GPU for training
    cpu: {{guarantee: 4, limit: 8}}
    memory: {{guarantee: 16G, limit: 32G}}
    gpus: 1
    image: registry.example.org/lab/workspace-cuda:2024.10
    groups: [gpu-users]
    mounts:
      - name: scratch
        type: host
        source: /scratch
        target: /scratch
        read_only: false
accounting: {{}}
catalog: {{}}
data: {{}}
"""

# what it means: as written, with the SSO keys shared-password has no use for
REALISTIC_VALUES = yaml.safe_load(REALISTIC)
REALISTIC_VALUES["auth"] = {**DEFAULTS["auth"], **REALISTIC_VALUES["auth"]}
REALISTIC_VALUES["hub"]["tls"] = DEFAULTS["hub"]["tls"]
REALISTIC_VALUES["hub"]["culling"] = DEFAULTS["hub"]["culling"]
REALISTIC_VALUES["backend"]["warm_pool"] = DEFAULTS["backend"]["warm_pool"]
for _name in SERVICE_SECTIONS:
    REALISTIC_VALUES[_name] = DEFAULTS[_name]

ALLOWED_TOP = "allowed: data_dir, hub, auth, backend, profiles, accounting, catalog, data"
ALLOWED_HUB = (
    "allowed: ip, port, hub_port, hub_ip, connect_host, proxy_api_port, proxy_api_url, "
    "proxy_url, base_url, public_url, db_url, "
    "admin_users, cleanup_servers, log_level, proxy_command, tls, culling, config"
)
ALLOWED_PROFILE = (
    "allowed: slug, display_name, description, default, cpu, memory, gpus, idle_timeout, "
    "image, env, groups, mounts, node_selector, tolerations"
)
DB_HINT = "(sqlite:///path/to/file.sqlite or postgresql+psycopg://user:password@host:5432/db)"


@pytest.fixture
def write(tmp_path):
    """Write a settings file in ``tmp_path`` and return its path."""

    def write(text: str, name: str = "labspace.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(path, environ={} if environ is None else environ)
    return info.value.problems


def uncommented(text: str) -> str:
    """``default_yaml()`` with every key line uncommented (descriptions stay comments)."""
    key_line = re.compile(r"^#((?:  )*[a-z_]+:.*)$")
    return "\n".join(key_line.sub(r"\1", line) for line in text.splitlines()) + "\n"


# -- good files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", DEFAULTS, id="empty"),
        pytest.param("# nothing yet\n#hub:\n#  port: 9000\n", DEFAULTS, id="comments"),
        pytest.param("hub:\n", DEFAULTS, id="empty-section"),
        pytest.param("hub:\n  # port: 9000\nauth:\n", DEFAULTS, id="commented-sections"),
        pytest.param("hub:\n  config:\n", DEFAULTS, id="empty-subsection"),
        pytest.param(reference.default_yaml(), DEFAULTS, id="default-yaml"),
        pytest.param(uncommented(reference.default_yaml()), DEFAULTS, id="default-uncommented"),
        pytest.param(REALISTIC, REALISTIC_VALUES, id="realistic"),
    ],
)
def test_good_file(write, text, expected):
    settings = load(write(text), environ={})
    assert settings.values == expected
    assert settings.env_sources == {}


def test_default_yaml_uncommented_sets_every_key():
    # guards the uncommenting above: it must really turn keys into settings
    data = yaml.safe_load(uncommented(reference.default_yaml()))
    assert data == DEFAULTS


# -- bad files ---------------------------------------------------------------

BAD = [
    pytest.param(
        "hub:\n  prot: 8000\n", ["hub.prot: unknown key (did you mean 'port'?)"], id="typo"
    ),
    pytest.param("hub:\n  zzzzz: 1\n", [f"hub.zzzzz: unknown key ({ALLOWED_HUB})"], id="unknown"),
    pytest.param(
        "hubb:\n  port: 1\n", ["hubb: unknown key (did you mean 'hub'?)"], id="section-typo"
    ),
    pytest.param("frobnicate: 1\n", [f"frobnicate: unknown key ({ALLOWED_TOP})"], id="section"),
    pytest.param(
        "hub:\n  port: '8000'\n",
        ["hub.port: expected a whole number, got a string '8000' (a whole number, e.g. 8000)"],
        id="port-string",
    ),
    pytest.param(
        "hub: [1, 2]\n",
        ["hub: expected a mapping of keys, got a list [1, 2] (a mapping of keys, e.g. {})"],
        id="hub-list",
    ),
    pytest.param(
        "hub:\n  admin_users: admin\n",
        [
            "hub.admin_users: expected a list, got a string 'admin' "
            "(a list of user names, e.g. [admin])"
        ],
        id="admins-string",
    ),
    pytest.param(
        "hub:\n  port: 0\n",
        ["hub.port: 0 is too small (a whole number from 1 to 65535)"],
        id="port-0",
    ),
    pytest.param(
        "hub:\n  proxy_api_port: 70000\n",
        ["hub.proxy_api_port: 70000 is too large (a whole number from 1 to 65535)"],
        id="port-70000",
    ),
    pytest.param(
        "backend:\n  start_timeout: 1\n",
        ["backend.start_timeout: 1 is too small (a whole number from 5 to 3600)"],
        id="timeout",
    ),
    pytest.param(
        "hub:\n  log_level: loud\n",
        ["hub.log_level: 'loud' is not a valid choice (one of: DEBUG, INFO, WARNING, ERROR)"],
        id="enum",
    ),
    pytest.param(
        "hub:\n  log_level: WARN\n",
        [
            "hub.log_level: 'WARN' is not a valid choice "
            "(did you mean 'WARNING'? one of: DEBUG, INFO, WARNING, ERROR)"
        ],
        id="enum-typo",
    ),
    pytest.param(
        "auth:\n  type: ldap\n",
        [
            "auth.type: 'ldap' is not a valid choice (one of: shared-password, oidc, keycloak, "
            "okta, azuread, github, gitlab, google)"
        ],
        id="auth-type",
    ),
    pytest.param(
        "hub:\n  base_url: /jupyter\n",
        [
            "hub.base_url: '/jupyter' is not valid "
            "(a path that starts and ends with '/', e.g. / or /jupyter/)"
        ],
        id="base-url",
    ),
    pytest.param(
        "hub:\n  public_url: hub.example.org\n",
        [
            "hub.public_url: 'hub.example.org' is not valid "
            "(an http(s) URL such as https://hub.example.org/, or empty)"
        ],
        id="public-url",
    ),
    pytest.param(
        "hub:\n  ip: myhost\n",
        ["hub.ip: 'myhost' is not valid (an IP address such as 127.0.0.1 or 0.0.0.0)"],
        id="ip",
    ),
    pytest.param(
        "data_dir: ''\n",
        ["data_dir: must not be empty (a folder path such as labspace-data or /var/lib/labspace)"],
        id="data-dir-empty",
    ),
    pytest.param(
        "hub:\n  config:\n    Spawner: 3\n",
        ["hub.config.Spawner: expected a mapping of keys, got a number 3 (a mapping of keys)"],
        id="config-class",
    ),
    pytest.param(
        "hub:\n  port: 8000\n  ip: 0.0.0.0\n  port: 9000\n",
        ["hub.port: given twice, on lines 2 and 4 (keep one)"],
        id="duplicate",
    ),
    pytest.param(
        "hub:\n  config:\n    Spawner:\n      mem_limit: 1G\n      mem_limit: 2G\n",
        ["hub.config.Spawner.mem_limit: given twice, on lines 4 and 5 (keep one)"],
        id="duplicate-deep",
    ),
    pytest.param(
        "hub:\n  port: 8000\n ip: 0.0.0.0\n",
        [
            "line 3, column 2: not valid YAML: expected <block end>, but found "
            "'<block mapping start>' (check indentation and quoting there)"
        ],
        id="yaml",
    ),
    pytest.param(
        "hub:\n\tport: 8000\n",
        [
            "line 2, column 1: not valid YAML: found character '\\t' that cannot start "
            "any token (check indentation and quoting there)"
        ],
        id="yaml-tab",
    ),
    pytest.param(
        "- hub\n- auth\n",
        [
            "(top level): expected a mapping of settings, got a list "
            "(start with section keys such as 'hub:')"
        ],
        id="top-list",
    ),
    pytest.param(
        "profiles:\n  - name: small\n",
        [
            f"profiles[0].name: unknown key ({ALLOWED_PROFILE})",
            "profiles[0].slug: missing (required; lowercase letters, digits and '-', e.g. small)",
        ],
        id="profile-no-slug",
    ),
    pytest.param(
        "profiles:\n  - slug: small\n    memroy: {limit: 1G}\n",
        ["profiles[0].memroy: unknown key (did you mean 'memory'?)"],
        id="profile-key-typo",
    ),
    pytest.param(
        "profiles:\n  - slug: small\n    cpu: {limit: 0}\n",
        ["profiles[0].cpu.limit: 0 is too small (more than 0)"],
        id="profile-cpu-zero",
    ),
    pytest.param(
        "profiles:\n  - slug: small\n    gpus: 17\n",
        ["profiles[0].gpus: 17 is too large (a whole number from 0 to 16)"],
        id="profile-gpus",
    ),
    pytest.param(
        "profiles:\n  slug: small\n",
        [
            'profiles: expected a list, got a mapping {"slug": "small"} '
            "(a list of profiles, each with at least a slug)"
        ],
        id="profiles-mapping",
    ),
    pytest.param(
        "backend:\n  mounts:\n    - {name: data, type: bind, source: /srv, target: /data}\n",
        ["backend.mounts[0].type: 'bind' is not a valid choice (one of: host, volume, pvc, nfs)"],
        id="mount-type",
    ),
    pytest.param(
        "backend:\n  spawn_concurrency: -1\n",
        ["backend.spawn_concurrency: -1 is too small (a whole number from 0 to 1000)"],
        id="concurrency",
    ),
    pytest.param(
        "backend:\n  docker:\n    home: nfs\n",
        ["backend.docker.home: 'nfs' is not a valid choice (one of: volume, bind)"],
        id="docker-home",
    ),
    pytest.param(
        "backend:\n  kubernetes:\n    home_size: 10 GB\n",
        ["backend.kubernetes.home_size: '10 GB' is not valid (a size such as 512M, 4G or 1.5G)"],
        id="home-size",
    ),
    pytest.param(
        "hub:\n  admin_users: [admin, admin]\n",
        ["hub.admin_users: lists an entry more than once (list each once)"],
        id="admins-twice",
    ),
    pytest.param(
        "hub:\n  db_url: mysql://hub@db.example.org/hub\n",
        [
            "hub.db_url: unsupported database or driver 'mysql' "
            "(sqlite:///path or postgresql+psycopg://user:password@host:5432/db)"
        ],
        id="mysql",
    ),
    pytest.param(
        "auth:\n  admin_password: short-password\n",
        [
            "auth.admin_password: only 14 characters "
            "(at least 32, or leave it empty to generate one)"
        ],
        id="admin-pw-short",
    ),
    pytest.param(
        "auth:\n  user_password: abc\n",
        ["auth.user_password: only 3 characters (at least 8)"],
        id="user-pw-short",
    ),
    pytest.param(
        f"auth:\n  admin_password: {ADMIN_PW}\n  user_password: {ADMIN_PW}\n",
        ["auth.user_password: same as auth.admin_password (use two passwords)"],
        id="same-pw",
    ),
    pytest.param(
        "auth:\n  allow_all: true\n",
        [
            "auth.allow_all: true, but auth.user_password is empty, so nobody could use it "
            "(set auth.user_password, or drop allow_all)"
        ],
        id="allow-all",
    ),
    pytest.param(
        "hub:\n  port: 8081\n",
        ["hub.hub_port: 8081 is also hub.port (give each a port of its own)"],
        id="same-port",
    ),
    pytest.param(
        "hub:\n  port: 9000\n  hub_port: 9000\n  proxy_api_port: 9000\n",
        [
            "hub.hub_port: 9000 is also hub.port (give each a port of its own)",
            "hub.proxy_api_port: 9000 is also hub.port (give each a port of its own)",
        ],
        id="three-ports",
    ),
    pytest.param(
        "hub:\n  admin_users: []\n",
        [
            "hub.admin_users: empty, so nobody could administer the hub "
            "(list at least one user, e.g. [admin])"
        ],
        id="no-admins",
    ),
    *[
        pytest.param(text, [expected], id=f"hub-address-{i}")
        for i, (text, expected) in enumerate(
            [
                (
                    "hub:\n  connect_host: labspace-hub\n",
                    "hub.connect_host: 'labspace-hub', but hub.hub_ip is 127.0.0.1, so nothing "
                    "on another machine or pod could reach the hub there (set hub.hub_ip: "
                    "0.0.0.0, or leave hub.connect_host empty)",
                ),
                (
                    "hub:\n  hub_ip: 0.0.0.0\n  connect_host: http://labspace-hub\n",
                    "hub.connect_host: 'http://labspace-hub' is not valid (a host name such as "
                    "labspace-hub (or an IPv4 address), or empty)",
                ),
                (
                    "hub:\n  hub_ip: the-pod\n",
                    "hub.hub_ip: 'the-pod' is not valid (an IP address such as 127.0.0.1 "
                    "or 0.0.0.0)",
                ),
                (
                    "hub:\n  hub_ip: ''\n",
                    "hub.hub_ip: '' is not valid (an IP address such as 127.0.0.1 or 0.0.0.0)",
                ),
                (
                    "hub:\n  proxy_api_url: labspace-proxy-api:8001\n",
                    "hub.proxy_api_url: 'labspace-proxy-api:8001' is not valid (an http(s) URL "
                    "with no path, such as http://labspace-proxy-api:8001, or empty)",
                ),
                (
                    "hub:\n  proxy_api_url: http://labspace-proxy-api:8001/api/routes\n",
                    "hub.proxy_api_url: 'http://labspace-proxy-api:8001/api/routes' is not valid "
                    "(an http(s) URL with no path, such as http://labspace-proxy-api:8001, "
                    "or empty)",
                ),
                (
                    "hub:\n  proxy_url: http://labspace-proxy-public:8000\n",
                    "hub.proxy_url: 'http://labspace-proxy-public:8000', but the hub runs its "
                    "own proxy (hub.proxy_api_url is empty) and reaches it on loopback (leave "
                    "hub.proxy_url empty, or set hub.proxy_api_url to the proxy's API)",
                ),
                (
                    "hub:\n  proxy_api_url: http://p:8001\n  proxy_url: http://p:8000/x/\n",
                    "hub.proxy_url: 'http://p:8000/x/' is not valid (an http(s) URL with no "
                    "path, such as http://labspace-proxy-public:8000, or empty)",
                ),
                (
                    "hub:\n  proxy_api_url: http://p:8001\n  proxy_command: [chp]\n",
                    "hub.proxy_command: set, but hub.proxy_api_url says the proxy runs "
                    "separately, so the hub starts none (remove one of them)",
                ),
                (
                    "hub:\n  proxy_api_url: http://p:8001\n"
                    "  tls: {type: acme, domain: hub.example.org}\n",
                    "hub.tls: on, but hub.proxy_api_url says the proxy runs separately, and "
                    "Caddy would have no proxy to front (set hub.tls.type: none and terminate "
                    "HTTPS at the ingress, or leave hub.proxy_api_url empty)",
                ),
            ]
        )
    ],
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_file(write, text, expected):
    assert problems_of(write(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hub:\n  hub_ip: 0.0.0.0\n  connect_host: labspace-hub\n", id="chart"),
        pytest.param("hub:\n  hub_ip: 10.1.2.3\n  connect_host: 10.1.2.3\n", id="ipv4-host"),
        pytest.param("hub:\n  proxy_api_url: https://proxy.internal:8001/\n", id="https-api"),
        # the proxy's own ports are not checked when it runs apart: no clash
        pytest.param("hub:\n  proxy_api_url: http://p:8001\n  port: 8081\n", id="no-proxy-ports"),
    ],
)
def test_hub_address_settings_accepted(write, text):
    load(write(text), environ={})


EVERY_ADDRESS = "0.0.0.0"  # noqa: S104


def test_hub_ip_binds_the_hub_and_services_not_the_proxy():
    from labspace.rules import ports

    values = with_defaults(
        {"hub": {"hub_ip": EVERY_ADDRESS, "proxy_api_url": "http://p:8001"}, "catalog": {}}
    )
    assert ports(values) == [
        ("hub.hub_port", EVERY_ADDRESS, 8081),
        ("accounting.port", EVERY_ADDRESS, values["accounting"]["port"]),
        ("catalog.port", EVERY_ADDRESS, values["catalog"]["port"]),
        ("data.port", EVERY_ADDRESS, values["data"]["port"]),
    ]


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "labspace.yaml"
    assert problems_of(path) == [
        f"(file): not found (create it, or run `labspace config init {path}`)"
    ]


def test_not_utf8(tmp_path):
    path = tmp_path / "labspace.yaml"
    path.write_bytes(b"hub:\n  ip: \xff\n")
    (line,) = problems_of(path)
    assert line.startswith("(file): cannot be read: ")
    assert line.endswith("(a UTF-8 text file)")


def test_many_problems_one_line_each(write):
    path = write("hub:\n  port: x\n  log_level: loud\nauth:\n  allow_all: true\nfoo: 1\n")
    with pytest.raises(SettingsError) as info:
        load(path, environ={})
    assert info.value.problems == [
        f"foo: unknown key ({ALLOWED_TOP})",
        "hub.log_level: 'loud' is not a valid choice (one of: DEBUG, INFO, WARNING, ERROR)",
        "hub.port: expected a whole number, got a string 'x' (a whole number, e.g. 8000)",
        "auth.allow_all: true, but auth.user_password is empty, so nobody could use it "
        "(set auth.user_password, or drop allow_all)",
    ]
    report = info.value.report().splitlines()
    assert report[0] == f"{path}: 4 problems in Labspace settings"
    assert report[1:] == [f"  {p}" for p in info.value.problems]


def test_report_format():
    error = SettingsError("/etc/labspace.yaml", ["hub.port: wrong (right)"])
    assert error.report() == (
        "/etc/labspace.yaml: 1 problem in Labspace settings\n  hub.port: wrong (right)"
    )
    assert str(error) == error.report()
    two = SettingsError("x.yaml", ["a: 1", "b: 2"]).report()
    assert two == "x.yaml: 2 problems in Labspace settings\n  a: 1\n  b: 2"


# -- confusing messages (known defects) --------------------------------------


def test_unknown_keys_of_mixed_types(write):
    problems = problems_of(write("hub:\n  8000: x\n  prot: 1\n"))
    assert "hub.prot: unknown key (did you mean 'port'?)" in problems
    assert len(problems) == 2


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hub:\n  8000: x\n", id="number"),
        pytest.param("hub:\n  on: x\n", id="yaml11-bool"),  # YAML 1.1 reads `on` as true
    ],
)
def test_unknown_non_string_key(write, text):
    (line,) = problems_of(write(text))
    where, _, rest = line.partition(": ")
    assert where.startswith("hub.")
    assert "[" not in where  # `[n]` means a list entry elsewhere in every report
    assert rest.startswith("unknown key (")


def test_null_value_named_once(write):
    (line,) = problems_of(write("data_dir:\nhub:\n"))
    assert line == (
        "data_dir: expected a text value, got nothing (null) "
        "(a folder path such as labspace-data or /var/lib/labspace)"
    )


def test_bad_class_name_in_hub_config(write):
    (line,) = problems_of(write("hub:\n  config:\n    spawner:\n      mem_limit: 2G\n"))
    assert line.startswith("hub.config: 'spawner' is not")
    assert "class name" in line
    assert "see the reference" not in line


# -- secrets -----------------------------------------------------------------

SECRET = "s3cretpass"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            f"hub:\n  db_url: [postgresql://u:{SECRET}@db/hub]\n",
            f"hub.db_url: expected a text value, got a list {HIDDEN} {DB_HINT}",
            id="db-url-list",
        ),
        pytest.param(
            f"hub:\n  db_url: {{user: u, password: {SECRET}}}\n",
            f"hub.db_url: expected a text value, got a mapping {HIDDEN} {DB_HINT}",
            id="db-url-mapping",
        ),
        pytest.param(
            f"hub:\n  db_url: mysql://u:{SECRET}@db/hub\n",
            "hub.db_url: unsupported database or driver 'mysql' "
            "(sqlite:///path or postgresql+psycopg://user:password@host:5432/db)",
            id="db-url-mysql",
        ),
        pytest.param(
            f"auth:\n  admin_password: {SECRET}\n",
            "auth.admin_password: only 10 characters "
            "(at least 32, or leave it empty to generate one)",
            id="admin-pw-short",
        ),
        pytest.param(
            "auth:\n  admin_password: 1234567890\n",
            f"auth.admin_password: expected a text value, got a number {HIDDEN} "
            "(empty, or a password of at least 32 characters)",
            id="admin-pw-number",
        ),
        pytest.param(
            "auth:\n  user_password: [1234567890]\n",
            f"auth.user_password: expected a text value, got a list {HIDDEN} "
            "(empty, or a password of at least 8 characters)",
            id="user-pw-list",
        ),
    ],
)
def test_secret_not_in_report(write, text, expected):
    with pytest.raises(SettingsError) as info:
        load(write(text), environ={})
    assert info.value.problems == [expected]
    for secret in (SECRET, "1234567890"):
        assert secret not in info.value.report()


def test_client_secret_not_in_report(write):
    with pytest.raises(SettingsError) as info:
        load(write(f"auth:\n  client_secret: [{SECRET}]\n"), environ={})
    assert info.value.problems[0] == (
        f'auth.client_secret: expected a text value, got a list {HIDDEN} (a text value, e.g. "")'
    )
    assert SECRET not in info.value.report()


def test_secret_not_in_report_schemeless_db_url(write):
    path = write(f"hub:\n  db_url: //u:{SECRET}@db/hub\n")
    with pytest.raises(SettingsError) as info:
        load(path, environ={})
    (line,) = info.value.problems
    assert line.startswith("hub.db_url: unsupported database or driver")
    assert SECRET[:4] not in info.value.report()


def test_secret_paths():
    assert secret_paths() == (
        "hub.db_url",
        "auth.admin_password",
        "auth.user_password",
        "auth.client_secret",
        "accounting.db_url",
        "catalog.db_url",
        "data.db_url",
    )


def test_redacted_hides_secrets(write):
    settings = load(
        write(f"auth:\n  admin_password: {ADMIN_PW}\n"),
        environ={"LABSPACE_HUB_DB_URL": f"postgresql://u:{SECRET}@db/hub"},
    )
    shown = settings.redacted()
    assert shown["hub"]["db_url"] == HIDDEN
    assert shown["auth"]["admin_password"] == HIDDEN
    # an empty secret is shown as empty: nothing to hide, and the operator sees it is unset
    assert shown["auth"]["user_password"] == ""
    assert shown["hub"]["port"] == 8000
    assert SECRET not in repr(shown)
    assert ADMIN_PW not in repr(shown)
    # the settings themselves keep the values
    assert settings.get("auth.admin_password") == ADMIN_PW
    assert settings.get("hub.db_url") == f"postgresql://u:{SECRET}@db/hub"


def test_redacted_hides_client_secret(write):
    settings = load(
        write("auth:\n  type: github\n  client_id: labspace\n  allowed_users: [alice]\n"),
        environ={"LABSPACE_AUTH_CLIENT_SECRET": SECRET},
    )
    shown = settings.redacted()
    assert shown["auth"]["client_secret"] == HIDDEN
    assert shown["auth"]["client_id"] == "labspace"
    assert settings.env_sources == {"auth.client_secret": "LABSPACE_AUTH_CLIENT_SECRET"}


def test_redacted_hides_tokens_in_hub_config(write):
    text = (
        "hub:\n  config:\n    JupyterHub:\n      services:\n"
        f"        - name: test\n          api_token: {SECRET}\n"
    )
    shown = load(write(text), environ={}).redacted()
    assert SECRET not in repr(shown)


# -- secrets from the environment --------------------------------------------


def test_env_db_url(write):
    url = f"postgresql://labspace:{SECRET}@db:5432/hub"
    settings = load(write(""), environ={"LABSPACE_HUB_DB_URL": url})
    assert settings.get("hub.db_url") == url
    assert settings.env_sources == {"hub.db_url": "LABSPACE_HUB_DB_URL"}


def test_env_file_admin_password(write, tmp_path):
    secret_file = tmp_path / "admin.secret"
    secret_file.write_text(ADMIN_PW + "\n")
    settings = load(
        write("hub:\n  port: 9000\n"),
        environ={"LABSPACE_AUTH_ADMIN_PASSWORD_FILE": str(secret_file)},
    )
    assert settings.get("auth.admin_password") == ADMIN_PW
    assert settings.get("hub.port") == 9000
    assert settings.env_sources == {"auth.admin_password": "LABSPACE_AUTH_ADMIN_PASSWORD_FILE"}


def test_env_wins_over_file_and_env_file(write, tmp_path):
    from_file = tmp_path / "admin.secret"
    from_file.write_text("f" * 40)
    settings = load(
        write(f"auth:\n  admin_password: {'y' * 40}\n"),
        environ={
            "LABSPACE_AUTH_ADMIN_PASSWORD": "e" * 40,
            "LABSPACE_AUTH_ADMIN_PASSWORD_FILE": str(from_file),
        },
    )
    assert settings.get("auth.admin_password") == "e" * 40
    assert settings.env_sources == {"auth.admin_password": "LABSPACE_AUTH_ADMIN_PASSWORD"}


def test_env_default_is_os_environ(write, monkeypatch):
    monkeypatch.setenv("LABSPACE_AUTH_USER_PASSWORD", USER_PW)
    assert load(write("")).get("auth.user_password") == USER_PW


def test_env_value_is_validated(write):
    problems = problems_of(write(""), {"LABSPACE_AUTH_ADMIN_PASSWORD": SECRET})
    assert problems == [
        "auth.admin_password: only 10 characters (at least 32, or leave it empty to generate one)"
    ]


@pytest.mark.parametrize(
    ("name", "strerror"),
    [
        pytest.param("missing.secret", "No such file or directory", id="missing"),
        pytest.param(".", "Is a directory", id="directory"),
    ],
)
def test_env_file_unreadable(write, tmp_path, name, strerror):
    target = str(tmp_path / name)
    problems = problems_of(write(""), {"LABSPACE_AUTH_ADMIN_PASSWORD_FILE": target})
    assert problems == [
        f"auth.admin_password: LABSPACE_AUTH_ADMIN_PASSWORD_FILE names {target!r}, "
        f"which cannot be read: {strerror} (a readable UTF-8 file holding the value)"
    ]


def test_env_file_not_utf8(write, tmp_path):
    target = str(tmp_path / "binary.secret")
    Path(target).write_bytes(b"\xff\xfe\x00secret")
    problems = problems_of(write(""), {"LABSPACE_HUB_DB_URL_FILE": target})
    assert problems == [
        f"hub.db_url: LABSPACE_HUB_DB_URL_FILE names {target!r}, which cannot be read: "
        "not UTF-8 text (a readable UTF-8 file holding the value)"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("9000", 9000, id="number"),
        pytest.param(" 9000\n", 9000, id="spaces"),
    ],
)
def test_env_port(write, value, expected):
    settings = load(write("hub:\n  port: 8000\n"), environ={"LABSPACE_HUB_PORT": value})
    assert settings.get("hub.port") == expected
    assert settings.env_sources == {"hub.port": "LABSPACE_HUB_PORT"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "http",
            "hub.port: LABSPACE_HUB_PORT='http' is not a whole number (e.g. 8000)",
            id="word",
        ),
        pytest.param("0", "hub.port: 0 is too small (a whole number from 1 to 65535)", id="zero"),
        pytest.param(
            "8081", "hub.hub_port: 8081 is also hub.port (give each a port of its own)", id="taken"
        ),
    ],
)
def test_env_port_checked(write, value, expected):
    assert problems_of(write(""), {"LABSPACE_HUB_PORT": value}) == [expected]


def test_env_port_file(write, tmp_path):
    port_file = tmp_path / "port"
    port_file.write_text("9000\n")
    settings = load(write(""), environ={"LABSPACE_HUB_PORT_FILE": str(port_file)})
    assert settings.get("hub.port") == 9000


# -- defaults and paths ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("", "conf/labspace-data", id="default"),
        pytest.param("data_dir: state\n", "conf/state", id="relative"),
        pytest.param("data_dir: ../shared/state\n", "shared/state", id="parent"),
        pytest.param("data_dir: {abs}\n", "elsewhere/data", id="absolute"),
    ],
)
def test_data_dir_relative_to_settings_file(write, tmp_path, monkeypatch, line, expected):
    base = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)  # not the settings folder: must not matter
    path = write(line.format(abs=base / "elsewhere" / "data"), name="conf/labspace.yaml")
    settings = load(path, environ={})
    assert settings.data_dir == base / expected
    assert not settings.data_dir.exists()  # loading never touches data_dir


def test_defaults_filled_around_given_values(write):
    settings = load(write("hub:\n  port: 9000\nauth:\n  allowed_users: [carol]\n"), environ={})
    assert settings.get("hub.port") == 9000
    assert settings.get("hub.hub_port") == 8081
    assert settings.get("hub.admin_users") == ["admin"]
    assert settings.get("auth.allowed_users") == ["carol"]
    assert settings.get("auth.type") == "shared-password"
    assert settings.get("backend.start_timeout") == 120


def test_config_path_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABSPACE_CONFIG", raising=False)
    assert config_path() == tmp_path / "labspace.yaml"
    monkeypatch.setenv("LABSPACE_CONFIG", "/etc/labspace/env.yaml")
    assert config_path() == Path("/etc/labspace/env.yaml")
    assert config_path("given.yaml") == tmp_path / "given.yaml"


def test_base_dir_without_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(values={"data_dir": "d"})
    assert settings.data_dir == tmp_path.resolve() / "d"


def test_redacted_hides_secret_environment_variables(write):
    settings = load(
        write(
            "backend:\n  env: {API_TOKEN: tok-1234567, LANG: C.UTF-8}\n"
            "profiles:\n  - slug: small\n    env: {DB_PASSWORD: pw-1234567, MODE: fast}\n"
        ),
        environ={},
    )
    shown = settings.redacted()
    assert shown["backend"]["env"] == {"API_TOKEN": HIDDEN, "LANG": "C.UTF-8"}
    assert shown["profiles"][0]["env"] == {"DB_PASSWORD": HIDDEN, "MODE": "fast"}
    assert settings.get("backend.env")["API_TOKEN"] == "tok-1234567"


def test_local_backend_is_stated_as_for_one_trusted_person():
    """The settings reference, the README and the choices page say plainly who
    the local backend is for, and why: workspaces can read the hub's secrets."""
    from labspace.settings import schema

    repo = Path(__file__).resolve().parent.parent
    described = schema()["properties"]["backend"]["properties"]["type"]["description"]
    readme = (repo / "README.md").read_text()
    choices = (repo / "docs" / "explanation" / "choices.md").read_text()
    for text in (described, readme, choices):
        flat = " ".join(text.split()).lower()
        assert "for one trusted person or a demo" in flat
        assert "hub's secrets" in flat


def test_proxy_apart_warns_that_a_hub_restart_stops_workspaces(write):
    text = "hub:\n  proxy_api_url: http://p:8001\n"
    assert load(write(text), environ={}).warnings == [
        "hub.cleanup_servers: true, so a restart of the hub stops every workspace, though the "
        "proxy that serves them runs apart (set hub.cleanup_servers: false)"
    ]
    assert load(write(text + "  cleanup_servers: false\n"), environ={}).warnings == []


@pytest.mark.parametrize(
    ("hub", "expected"),
    [
        pytest.param("{}", "http://127.0.0.1:8000/", id="own-proxy"),
        pytest.param("{ip: '::', base_url: /j/}", "http://127.0.0.1:8000/j/", id="every-address"),
        pytest.param(
            "{proxy_api_url: 'http://p:8001', proxy_url: 'http://labspace-proxy-public:8000/', "
            "base_url: /j/}",
            "http://labspace-proxy-public:8000/j/",
            id="proxy-apart",
        ),
    ],
)
def test_local_url_is_where_this_machine_reaches_the_proxy(write, hub, expected):
    assert load(write(f"hub: {hub}\n"), environ={}).local_url() == expected
