"""``hub.tls`` (``labspace.tls``): the settings rules, the derived public URL,
the ports, the generated Caddy config (golden, and accepted by the real
``caddy validate``) and what the hub's traitlets get. The real front (pebble,
Chromium, renewals) is ``tests/e2e/test_https.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from acme import make_api_certificate

from labspace import rules, tls
from labspace.hubconfig import build
from labspace.settings import SettingsError, load, with_defaults
from labspace.state import State

LE = "https://acme-v02.api.letsencrypt.org/directory"
PROXY = ["/opt/chp/bin/configurable-http-proxy"]
ALL = "0.0.0.0"  # noqa: S104 - every address, as the settings say it


def hub(**keys) -> dict:
    """Settings values (defaults filled) with ``hub`` keys, ``tls`` among them."""
    return with_defaults({"hub": keys})


@pytest.fixture
def setup(tmp_path):
    """Write ``labspace.yaml`` from a mapping, load it, prepare its State."""

    def setup(data: dict):
        path = tmp_path / "labspace.yaml"
        path.write_text(yaml.safe_dump({"data_dir": "data", **data}))
        settings = load(path, environ={})
        state = State(settings)
        state.prepare()
        return settings, state

    return setup


@pytest.fixture
def pem(tmp_path) -> tuple[Path, Path]:
    """A real certificate and key for hub.example.org (PEM files)."""
    _ca, cert, key = make_api_certificate(tmp_path, ["hub.example.org"])
    return cert, key


# -- settings rules ------------------------------------------------------------

FILES = {"type": "files", "domain": "hub.example.org", "certificate": "c.pem", "key": "k.pem"}
ACME = {"type": "acme", "domain": "hub.example.org"}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param({"tls": {}}, [], id="off"),
        pytest.param({"ip": ALL, "public_url": "http://x.org/"}, [], id="off-anything"),
        pytest.param({"tls": FILES}, [], id="files"),
        pytest.param({"tls": ACME, "public_url": "https://HUB.example.org/"}, [], id="same-host"),
        pytest.param(
            {"tls": {"type": "files"}},
            [
                "hub.tls.domain: empty, but hub.tls.type is files "
                "(the host name users open, e.g. hub.example.org)",
                "hub.tls.certificate: empty, but hub.tls.type is files "
                "(the path of the PEM certificate file, or use hub.tls.type: acme)",
                "hub.tls.key: empty, but hub.tls.type is files "
                "(the path of the PEM key file, or use hub.tls.type: acme)",
            ],
            id="files-empty",
        ),
        pytest.param(
            {"tls": ACME, "ip": ALL},
            [
                "hub.ip: '0.0.0.0', but with hub.tls the proxy must listen on loopback only, "
                "or plain HTTP would bypass HTTPS (set hub.ip: 127.0.0.1; Caddy listens on "
                "hub.tls.ip)"
            ],
            id="proxy-public",
        ),
        pytest.param(
            {"tls": ACME, "ip": ""},
            [
                "hub.ip: empty (every address), but with hub.tls the proxy must listen on "
                "loopback only, or plain HTTP would bypass HTTPS (set hub.ip: 127.0.0.1; "
                "Caddy listens on hub.tls.ip)"
            ],
            id="proxy-every-address",
        ),
        pytest.param({"tls": ACME, "ip": "::1"}, [], id="proxy-ipv6-loopback"),
        pytest.param(
            {"tls": ACME, "public_url": "http://hub.example.org/"},
            [
                "hub.public_url: 'http://hub.example.org/' is not https, but hub.tls is on "
                "(leave it empty: it is derived as https://hub.example.org/)"
            ],
            id="public-url-http",
        ),
        pytest.param(
            {"tls": ACME, "public_url": "https://other.example.org/"},
            [
                "hub.public_url: host 'other.example.org' differs from hub.tls.domain "
                "'hub.example.org' (leave hub.public_url empty, or give both one host)"
            ],
            id="public-url-host",
        ),
    ],
)
def test_problems(keys, expected):
    assert rules.tls_problems(hub(**keys)) == expected


def test_problems_through_validate(tmp_path):
    """``labspace config validate`` says them, with the schema's own lines."""
    path = tmp_path / "labspace.yaml"
    path.write_text("hub:\n  tls:\n    type: acme\n    domain: -bad-\n    hsts: -1\n")
    with pytest.raises(SettingsError) as e:
        load(path, environ={})
    assert e.value.problems == [
        "hub.tls.domain: '-bad-' is not valid (a host name such as hub.example.org)",
        "hub.tls.hsts: -1 is too small (a whole number from minimum 0)",
    ]
    path.write_text("hub:\n  tls:\n    type: acme\n    domain: hub.example.org\n    port: 8000\n")
    with pytest.raises(SettingsError) as e:
        load(path, environ={})
    assert e.value.problems == ["hub.tls.port: 8000 is also hub.port (give each a port of its own)"]


def test_warnings(setup):
    """A public CA checks the standard ports: say so when Caddy has neither."""
    odd = {**ACME, "port": 8443, "http_port": 8080}
    settings, _state = setup({"hub": {"tls": odd}})
    assert settings.warnings == [
        "hub.tls: acme-v02.api.letsencrypt.org checks port 80 (http-01) or 443 "
        "(tls-alpn-01) of hub.tls.domain, and Caddy listens on 8080 and 8443: forward "
        "80 to 8080 (or 443 to 8443), or no certificate can be issued"
    ]
    private = {**odd, "acme": {"directory": "https://ca.internal:9000/acme/dir"}}
    for keys in ({**odd, "port": 443}, {**odd, "http_port": 80}, private, FILES):
        settings, _state = setup({"hub": {"tls": keys}})
        assert settings.warnings == [], keys


@pytest.mark.parametrize(
    ("keys", "url"),
    [
        pytest.param({"tls": ACME}, "https://hub.example.org/", id="443"),
        pytest.param(
            {"tls": {**ACME, "port": 8443}, "base_url": "/jupyter/"},
            "https://hub.example.org:8443/jupyter/",
            id="port-and-base-url",
        ),
        pytest.param(
            {"tls": ACME, "public_url": "https://hub.example.org/lab"},
            "https://hub.example.org/lab/",
            id="explicit",
        ),
        pytest.param({"port": 9000}, "http://127.0.0.1:9000/", id="off"),
    ],
)
def test_public_url(setup, keys, url):
    settings, _state = setup({"hub": keys})
    assert settings.public_url() == url


def test_ports_with_tls():
    """Both of Caddy's ports go into the busy-port check, on ``hub.tls.ip``."""
    assert rules.ports(hub(tls={**ACME, "ip": "127.0.0.1"}), services=()) == [
        ("hub.port", "127.0.0.1", 8000),
        ("hub.hub_port", "127.0.0.1", 8081),
        ("hub.proxy_api_port", "127.0.0.1", 8001),
        ("hub.tls.port", "127.0.0.1", 443),
        ("hub.tls.http_port", "127.0.0.1", 80),
    ]
    assert rules.ports(hub(tls=ACME), services=())[-1] == ("hub.tls.http_port", ALL, 80)
    assert len(rules.ports(hub(tls={"port": 1, "http_port": 2}), services=())) == 3  # off
    clash = hub(tls={**ACME, "http_port": 8081})
    assert rules.port_clashes(clash, prefix="hub.") == [
        "hub.tls.http_port: 8081 is also hub.hub_port (give each a port of its own)"
    ]


# -- Caddy's config ------------------------------------------------------------


def test_caddy_config_files(setup, pem):
    cert, key = pem
    settings, state = setup(
        {
            "hub": {
                "port": 8100,
                "base_url": "/jupyter/",
                "tls": {**FILES, "certificate": str(cert), "key": "k.pem", "port": 8443},
            }
        }
    )
    tls_dir = state.data_dir / "tls"
    assert tls.caddy_config(settings, tls_dir) == {
        "admin": {
            "listen": f"unix/{tls_dir}/admin.sock",
            "origins": ["localhost"],
            "config": {"persist": False},
        },
        "storage": {"module": "file_system", "root": f"{tls_dir}/caddy"},
        "logging": {
            "logs": {
                "default": {
                    "encoder": {
                        "format": "console",
                        "level_format": "upper",
                        "time_format": "iso8601",
                    }
                }
            }
        },
        "apps": {
            "http": {
                "http_port": 80,
                "https_port": 8443,
                "grace_period": "5s",
                "servers": {
                    "https": {
                        "listen": [":8443"],
                        "routes": [
                            {
                                "match": [{"host": ["hub.example.org"]}],
                                "handle": [
                                    {
                                        "handler": "headers",
                                        "response": {
                                            "set": {
                                                "Strict-Transport-Security": ["max-age=31536000"]
                                            }
                                        },
                                    },
                                    {
                                        "handler": "reverse_proxy",
                                        "upstreams": [{"dial": "127.0.0.1:8100"}],
                                    },
                                ],
                                "terminal": True,
                            }
                        ],
                        "automatic_https": {
                            "disable_redirects": True,
                            "disable_certificates": True,
                        },
                    },
                    "http": {
                        "listen": [":80"],
                        "routes": [
                            {
                                "handle": [
                                    {
                                        "handler": "static_response",
                                        "status_code": 308,
                                        "headers": {
                                            "Location": [
                                                "https://hub.example.org:8443{http.request.uri}"
                                            ]
                                        },
                                    }
                                ]
                            }
                        ],
                    },
                },
            },
            # relative paths are the settings file's folder's; links are kept
            "tls": {
                "certificates": {
                    "load_files": [{"certificate": str(cert), "key": str(cert.parent / "k.pem")}]
                }
            },
        },
    }


def test_caddy_config_acme(setup, pem):
    ca, _key = pem
    settings, state = setup(
        {
            "hub": {
                "ip": "::1",
                "tls": {
                    **ACME,
                    "ip": "203.0.113.7",
                    "hsts": 0,
                    "acme": {"email": "ops@example.org", "ca_root": str(ca)},
                },
            }
        }
    )
    config = tls.caddy_config(settings, state.data_dir / "tls")
    servers = config["apps"]["http"]["servers"]
    # no HSTS header at 0; the proxy on IPv6 loopback; Caddy on hub.tls.ip
    assert servers["https"]["routes"][0]["handle"] == [
        {"handler": "reverse_proxy", "upstreams": [{"dial": "[::1]:8000"}]}
    ]
    assert servers["https"]["listen"] == ["203.0.113.7:443"]
    assert servers["https"]["automatic_https"] == {"disable_redirects": True}
    assert servers["http"]["listen"] == ["203.0.113.7:80"]
    location = servers["http"]["routes"][0]["handle"][0]["headers"]["Location"]
    assert location == ["https://hub.example.org{http.request.uri}"]
    assert config["apps"]["tls"] == {
        "automation": {
            "policies": [
                {
                    "subjects": ["hub.example.org"],
                    "issuers": [
                        {
                            "module": "acme",
                            "ca": LE,
                            "email": "ops@example.org",
                            "trusted_roots_pem_files": [str(ca)],
                        }
                    ],
                }
            ]
        }
    }


@pytest.mark.parametrize("kind", ["files", "acme"])
def test_caddy_accepts_the_config(setup, pem, need, kind):
    """The real ``caddy validate`` loads both kinds (modules, fields, the files)."""
    need("caddy", shutil.which("caddy") is not None, "apt install caddy")
    cert, key = pem
    given = {**FILES, "certificate": str(cert), "key": str(key)} if kind == "files" else ACME
    settings, state = setup({"hub": {"tls": {**given, "port": 8443, "http_port": 8080}}})
    path = state.data_dir / "caddy.json"
    path.write_text(json.dumps(tls.caddy_config(settings, state.data_dir / "tls")))
    env = {**os.environ, "HOME": str(state.data_dir), "XDG_DATA_HOME": str(state.data_dir)}
    r = subprocess.run(
        ["caddy", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Valid configuration" in r.stdout + r.stderr


# -- the hub's traitlets ---------------------------------------------------------


def test_hub_values(setup, pem, need):
    """https public URL, Secure cookies (JupyterHub's _xsrf follows only
    cookie_options; the browser test checks them all) and a proxy that
    leaves Caddy's X-Forwarded-* alone; nothing changes with TLS off."""
    need("caddy", shutil.which("caddy") is not None, "apt install caddy")
    cert, key = pem
    settings, state = setup({"hub": {"tls": {**FILES, "certificate": str(cert), "key": str(key)}}})
    values = build(settings, state, PROXY)
    assert values["JupyterHub"]["public_url"] == "https://hub.example.org/"
    assert values["JupyterHub"]["tornado_settings"] == {"cookie_options": {"secure": True}}
    assert values["ConfigurableHTTPProxy"]["command"] == [*PROXY, "--no-x-forward"]
    settings, state = setup({"hub": {}})
    values = build(settings, state, PROXY)
    assert "public_url" not in values["JupyterHub"]
    assert "tornado_settings" not in values["JupyterHub"]
    assert values["ConfigurableHTTPProxy"]["command"] == PROXY


def test_start_problems(setup, pem, tmp_path, monkeypatch):
    """Caddy missing, a file unreadable or no PEM: one line each, naming the key
    and the fix, before the hub starts (``hubconfig.build`` raises them)."""
    cert, _key = pem
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    (tmp_path / "ca.txt").write_text("not a certificate\n")
    settings, state = setup(
        {
            "hub": {
                "tls": {
                    **FILES,
                    "certificate": str(cert),
                    "key": "missing.pem",
                    "acme": {"ca_root": "ca.txt"},  # read with acme only
                }
            }
        }
    )
    with pytest.raises(SettingsError) as e:
        build(settings, state, PROXY)
    assert e.value.problems == [
        "hub.tls.type: files needs Caddy, which is not installed (apt install caddy)",
        f"hub.tls.key: {tmp_path}/missing.pem cannot be read: No such file or directory "
        "(give a PEM file the user that runs Labspace may read)",
    ]
    settings, state = setup({"hub": {"tls": {**ACME, "acme": {"ca_root": "ca.txt"}}}})
    assert tls.start_problems(settings, state.data_dir / "tls")[1:] == [
        f"hub.tls.acme.ca_root: {tmp_path}/ca.txt is not a PEM file "
        "(it should hold '-----BEGIN ...')"
    ]
    deep = tmp_path / ("x" * 100)
    assert tls.start_problems(settings, deep)[-1] == (
        f"data_dir: {deep}/admin.sock is longer than a unix socket path may be "
        "(107 bytes; choose a shorter data_dir)"
    )


def test_pair_problems(setup, tmp_path):
    """A certificate for another name, a key of another certificate or one with a
    passphrase: Caddy would start, and browsers would refuse every connection."""
    from cryptography.hazmat.primitives import serialization

    def pair(names: list[str], folder: str) -> tuple[Path, Path]:
        (tmp_path / folder).mkdir()
        _ca, cert, key = make_api_certificate(tmp_path / folder, names)
        return cert, key

    def problems(cert: Path, key: Path, domain: str = "hub.example.org") -> list[str]:
        given = {**FILES, "domain": domain, "certificate": str(cert), "key": str(key)}
        settings, state = setup({"hub": {"tls": given}})
        said = tls.start_problems(settings, state.data_dir / "tls")
        return [p for p in said if not p.startswith("hub.tls.type:")]  # caddy or not

    cert, key = pair(["*.example.org"], "wildcard")
    assert problems(cert, key) == []
    assert problems(cert, key, "a.b.example.org") == [
        f"hub.tls.certificate: {cert} is for *.example.org, not hub.tls.domain a.b.example.org "
        "(give the certificate of a.b.example.org, its own first in the file)"
    ]
    other_cert, other_key = pair(["hub.example.org"], "other")
    assert problems(cert, other_key) == [
        f"hub.tls.key: {other_key} is not the key of hub.tls.certificate "
        "(give the pair from one issuance)"
    ]
    private = serialization.load_pem_private_key(other_key.read_bytes(), None)
    locked = serialization.BestAvailableEncryption(b"passphrase")
    other_key.write_bytes(
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, locked)
    )
    assert problems(other_cert, other_key) == [
        f"hub.tls.key: {other_key} is no usable private key: it is encrypted "
        "(Caddy needs the key in PEM without a passphrase)"
    ]


def test_caddy_environment(tmp_path):
    """Caddy keeps its files under data_dir/tls and gets an outgoing proxy and
    the trusted roots from ours, and nothing else (no LABSPACE_* secrets)."""
    ours = {
        "PATH": "/usr/local/bin:/usr/bin",
        "https_proxy": "http://proxy.example.org:3128",
        "NO_PROXY": "localhost",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "LABSPACE_AUTH_CLIENT_SECRET": "s3cret",
        "HOME": "/home/labspace",
    }
    assert tls.caddy_environment(tmp_path, ours) == {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PATH": "/usr/local/bin:/usr/bin",
        "https_proxy": "http://proxy.example.org:3128",
        "NO_PROXY": "localhost",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    }
    assert tls.caddy_environment(tmp_path, {})["PATH"] == "/usr/bin:/bin"
