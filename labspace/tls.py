"""HTTPS in front of the proxy (``hub.tls``): Caddy as the TLS front.

``labspace up`` runs Caddy (Debian's ``caddy``) as a child beside the hub, with
a generated JSON config (Caddy's native format): HTTPS on ``hub.tls.port`` with
a certificate from files or from an ACME CA, HSTS, a redirect from
``hub.tls.http_port`` (which also answers http-01 challenges), and everything
forwarded to the proxy, which listens on loopback only.

- :func:`caddy_config`: the config builder (golden tests in ``tests/test_tls.py``;
  the settings rules of ``hub.tls`` are ``labspace.rules``' ``tls_*``);
- :func:`hub_values`: what the hub's traitlets get (``hubconfig.build``);
- :func:`start_front` / :func:`stop_front`: Caddy's process (``launcher.run``).

Caddy's admin API listens on a unix socket in ``data_dir/tls`` (0700), never a
TCP port: it is unauthenticated. Its storage (certificates, ACME account) is
``data_dir/tls/caddy``. With ``files``, a watcher notices new certificate files
(an operator's certbot) and asks Caddy to reload them, without a restart; with
``acme``, Caddy renews by itself. When Caddy exits on its own, ``labspace up``
stops the hub and exits with status 1, so a service manager restarts both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rules import https_url, tls_enabled

if TYPE_CHECKING:
    from .settings import Settings
    from .state import State

CADDY = "caddy"
INSTALL = "apt install caddy"
TLS_DIR = "tls"
ADMIN_SOCKET = "admin.sock"
SOCKET_MAX = 107  # bytes of a unix socket path (sun_path) on Linux, its NUL aside
WATCH_INTERVAL = 2.0  # seconds between looks at the certificate files and Caddy
CONSOLE = {"format": "console", "level_format": "upper", "time_format": "iso8601"}
START_TIMEOUT = 60.0  # seconds Caddy may take to listen (an ACME order comes later)


def resolve(settings: Settings, key: str) -> Path | None:
    """The file a ``hub.tls`` path setting names, relative to the settings file.
    Links are kept, not followed: certbot's ``live/<domain>/fullchain.pem`` is a
    link that each renewal points at a new file."""
    value = settings.get(key)
    return Path(os.path.abspath(settings.base_dir / Path(value).expanduser())) if value else None


def _read_pem(settings: Settings, key: str, out: list[str]) -> bytes | None:
    """The PEM text of the file setting ``key`` names, or None with a line in ``out``."""
    path = resolve(settings, key)
    try:
        with open(path, "rb") as f:
            data = f.read(1024 * 1024)
    except OSError as e:
        out.append(
            f"{key}: {path} cannot be read: {e.strerror} "
            "(give a PEM file the user that runs Labspace may read)"
        )
        return None
    if b"-----BEGIN " not in data:
        out.append(f"{key}: {path} is not a PEM file (it should hold '-----BEGIN ...')")
        return None
    return data


def _covers(names: list[str], domain: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``domain`` (one-label wildcards)."""
    domain = domain.lower()
    for name in (n.lower() for n in names):
        if name == domain or (name.startswith("*.") and domain.partition(".")[2] == name[2:]):
            return True
    return False


def pair_problems(settings: Settings, cert: bytes, key: bytes) -> list[str]:
    """A certificate for another name, or a key that is not its key: Caddy would
    start and every browser would refuse the connection."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:  # JupyterHub brings it (certipy); without it Caddy says
        return []
    where = resolve(settings, "hub.tls.certificate")
    try:
        leaf = x509.load_pem_x509_certificate(cert)
    except ValueError:
        return [f"hub.tls.certificate: {where} holds no readable certificate (a PEM full chain)"]
    try:
        ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = ext.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    out = []
    domain = settings.get("hub.tls.domain")
    if not _covers(names, domain):
        shown = ", ".join(names) or "no host name"
        out.append(
            f"hub.tls.certificate: {where} is for {shown}, not hub.tls.domain {domain} "
            f"(give the certificate of {domain}, its own first in the file)"
        )
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        why = "it is encrypted" if isinstance(e, TypeError) else "it cannot be read"
        out.append(
            f"hub.tls.key: {resolve(settings, 'hub.tls.key')} is no usable private key: "
            f"{why} (Caddy needs the key in PEM without a passphrase)"
        )
        return out
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        out.append(
            f"hub.tls.key: {resolve(settings, 'hub.tls.key')} is not the key of "
            "hub.tls.certificate (give the pair from one issuance)"
        )
    return out


def start_problems(settings: Settings, tls_dir: Path) -> list[str]:
    """What stops Caddy from starting on this machine, or from serving: the
    program, the files (readable, PEM, the certificate for the domain, its key)."""
    out: list[str] = []
    kind = settings.get("hub.tls.type")
    if shutil.which(CADDY) is None:
        out.append(f"hub.tls.type: {kind} needs Caddy, which is not installed ({INSTALL})")
    if kind == "files":
        cert = _read_pem(settings, "hub.tls.certificate", out)
        key = _read_pem(settings, "hub.tls.key", out)
        if cert and key:
            out += pair_problems(settings, cert, key)
    if kind == "acme" and settings.get("hub.tls.acme.ca_root"):
        _read_pem(settings, "hub.tls.acme.ca_root", out)
    socket = tls_dir / ADMIN_SOCKET
    if len(os.fsencode(socket)) > SOCKET_MAX:
        out.append(
            f"data_dir: {socket} is longer than a unix socket path may be "
            f"({SOCKET_MAX} bytes; choose a shorter data_dir)"
        )
    return out


# -- Caddy's config ------------------------------------------------------------


def _address(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{port}"


def caddy_config(settings: Settings, tls_dir: Path) -> dict[str, Any]:
    """Caddy's JSON config for ``hub.tls``: the admin API on a unix socket in
    ``tls_dir``, an HTTPS server that adds HSTS and forwards to the proxy, an
    HTTP server that redirects to HTTPS (and answers http-01 challenges), and
    the certificate: files loaded as they are, or an ACME policy."""
    tls = settings.get("hub.tls")
    origin = https_url(settings.values).removesuffix(settings.get("hub.base_url"))
    proxy_ip = settings.get("hub.ip") or "127.0.0.1"
    handle: list[dict[str, Any]] = []
    if tls["hsts"]:
        hsts = {"Strict-Transport-Security": [f"max-age={tls['hsts']}"]}
        handle.append({"handler": "headers", "response": {"set": hsts}})
    handle.append(
        {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": _address(proxy_ip, settings.get("hub.port"))}],
        }
    )
    https = {
        "listen": [_address(tls["ip"], tls["port"])],
        "routes": [{"match": [{"host": [tls["domain"]]}], "handle": handle, "terminal": True}],
        # the redirect is the HTTP server's below (to this origin, never the
        # request's Host); with files, Caddy must never ask a CA on its own
        "automatic_https": {"disable_redirects": True},
    }
    redirect = {
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [origin + "{http.request.uri}"]},
    }
    http = {"listen": [_address(tls["ip"], tls["http_port"])], "routes": [{"handle": [redirect]}]}
    if tls["type"] == "files":
        https["automatic_https"]["disable_certificates"] = True
        loaded = {
            "certificate": str(resolve(settings, "hub.tls.certificate")),
            "key": str(resolve(settings, "hub.tls.key")),
        }
        tls_app: dict[str, Any] = {"certificates": {"load_files": [loaded]}}
    else:
        issuer: dict[str, Any] = {"module": "acme", "ca": tls["acme"]["directory"]}
        if tls["acme"]["email"]:
            issuer["email"] = tls["acme"]["email"]
        if tls["acme"]["ca_root"]:
            issuer["trusted_roots_pem_files"] = [str(resolve(settings, "hub.tls.acme.ca_root"))]
        policy = {"subjects": [tls["domain"]], "issuers": [issuer]}
        tls_app = {"automation": {"policies": [policy]}}
    return {
        "admin": {
            "listen": f"unix/{tls_dir / ADMIN_SOCKET}",
            "origins": ["localhost"],  # the Host a request on the socket names
            "config": {"persist": False},
        },
        "storage": {"module": "file_system", "root": str(tls_dir / "caddy")},
        # plain lines for a journal: no colours, ISO times
        "logging": {"logs": {"default": {"encoder": CONSOLE}}},
        "apps": {
            "http": {
                "http_port": tls["http_port"],
                "https_port": tls["port"],
                # at a stop, a request still streaming (a spawn's progress) gets 5 s
                "grace_period": "5s",
                "servers": {"https": https, "http": http},
            },
            "tls": tls_app,
        },
    }


# -- the hub's side --------------------------------------------------------------


def hub_values(settings: Settings, state: State, out: dict[str, dict[str, Any]]) -> None:
    """Adjust the hub's traitlets values for ``hub.tls`` (nothing when it is off):
    the https public URL and Secure cookies (the _xsrf one too), and a proxy
    that leaves X-Forwarded-* as Caddy set them (configurable-http-proxy would
    append its own ``http``, and tornado believes the last one). Raises
    ``SettingsError`` when Caddy or a certificate file is missing here."""
    if not tls_enabled(settings.values):
        return
    from .settings import SettingsError

    lacking = start_problems(settings, state.data_dir / TLS_DIR)
    if lacking:
        raise SettingsError(str(settings.source), lacking)
    hub = out.setdefault("JupyterHub", {})
    hub["public_url"] = settings.public_url()
    # JupyterHub marks its login cookies Secure for an https public_url, but
    # not its _xsrf cookie: that one follows cookie_options
    tornado = dict(hub.get("tornado_settings", {}))
    tornado["cookie_options"] = {**tornado.get("cookie_options", {}), "secure": True}
    hub["tornado_settings"] = tornado
    proxy = out.setdefault("ConfigurableHTTPProxy", {})
    proxy["command"] = [*proxy.get("command", []), "--no-x-forward"]


# -- Caddy's process -------------------------------------------------------------


def _say(message: str) -> None:
    print(f"Labspace: {message}", file=sys.stderr, flush=True)


def _end_with_parent() -> None:
    """In Caddy's process before exec: SIGTERM when ``labspace up`` dies, even by
    SIGKILL, so no Caddy is left holding the ports."""
    import ctypes

    # not Linux: stop_front still stops it
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# what Caddy may need from ours: an outgoing proxy to reach the ACME CA (many
# institutions have one), and the roots it trusts; nothing else (no secrets)
PASSED_ON = ("PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")


def caddy_environment(tls_dir: Path, environ) -> dict[str, str]:
    """Caddy's environment: its files under ``tls_dir``, and :data:`PASSED_ON`
    (either case) from ``environ``."""
    env = {
        "HOME": str(tls_dir),
        "XDG_CONFIG_HOME": str(tls_dir / "config"),
        "XDG_DATA_HOME": str(tls_dir / "data"),
    }
    for name in PASSED_ON:
        for variant in (name, name.lower()):
            if environ.get(variant):
                env[variant] = environ[variant]
    env.setdefault("PATH", "/usr/bin:/bin")
    return env


def _stamp(paths: list[Path]) -> tuple:
    """What changes when a file is replaced or rewritten (through links)."""
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class Front:
    """Caddy's process, and a thread that watches it and, with ``files``, the
    certificate files. ``failed`` says Caddy could not start or exited on its own."""

    def __init__(self, settings: Settings, state: State):
        self.settings = settings
        self.dir = state.data_dir / TLS_DIR
        self.config = caddy_config(settings, self.dir)
        keys = ("hub.tls.certificate", "hub.tls.key")
        files = settings.get("hub.tls.type") == "files"
        self.files = [resolve(settings, k) for k in keys] if files else []
        ip = settings.get("hub.tls.ip") or "127.0.0.1"
        self.https = (ip, settings.get("hub.tls.port"))
        self.stopping = threading.Event()
        self.failed = False
        self.reloads = 0
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None

    @property
    def socket(self) -> Path:
        return self.dir / ADMIN_SOCKET

    def admin(self, method: str, path: str, **kwargs):
        """A request to Caddy's admin API (its unix socket)."""
        import httpx

        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, timeout=30) as client:
            return client.request(method, f"http://localhost{path}", **kwargs)

    def start(self) -> Front:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        config_file = self.dir / "caddy.json"
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.config, f, indent=2)
        self.socket.unlink(missing_ok=True)  # left by a Caddy that was killed
        self.proc = subprocess.Popen(
            [CADDY, "run", "--config", str(config_file)],
            env=caddy_environment(self.dir, os.environ),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C is for the hub; we stop Caddy after it
            preexec_fn=_end_with_parent,  # noqa: PLW1509 - before any thread of ours
        )
        if not self._wait_listening():
            self._fail("Caddy (the HTTPS front) did not start (see its lines above)")
            return self
        self.thread = threading.Thread(target=self._watch, name="labspace-tls", daemon=True)
        self.thread.start()
        return self

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(self.https, timeout=1):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def _fail(self, message: str) -> None:
        """Say why, and stop ``labspace up`` (its SIGTERM handler stops the hub)."""
        self.failed = True
        _say(f"{message}; stopping Labspace")
        os.kill(os.getpid(), signal.SIGTERM)

    def _watch(self) -> None:
        seen = _stamp(self.files)
        while not self.stopping.wait(WATCH_INTERVAL):
            if self.proc.poll() is not None:
                if not self.stopping.is_set():
                    self._fail(f"Caddy (the HTTPS front) exited with status {self.proc.returncode}")
                return
            now = _stamp(self.files)
            if now == seen:
                continue
            time.sleep(WATCH_INTERVAL)  # a renewal may write the key a moment after the chain
            if _stamp(self.files) == now:
                self.reload_files()
                seen = now

    def reload_files(self) -> bool:
        """The files' checks (the start's), then :meth:`reload`; a problem is
        said and the old certificate stays."""
        said: list[str] = []
        cert = _read_pem(self.settings, "hub.tls.certificate", said)
        key = _read_pem(self.settings, "hub.tls.key", said)
        if cert and key:
            said += pair_problems(self.settings, cert, key)
        for line in said:
            _say(f"the new certificate files were not loaded, the old ones still serve: {line}")
        return not said and self.reload()

    def reload(self) -> bool:
        """Ask Caddy to load its config again, reading the certificate files
        anew; it swaps them gracefully (connections stay) or keeps the old ones."""
        import httpx

        fresh = {"Cache-Control": "must-revalidate"}  # load even an unchanged config
        try:
            r = self.admin("POST", "/load", json=self.config, headers=fresh)
        except httpx.HTTPError as e:
            _say(f"the new certificate files were not loaded: Caddy's admin API: {e}")
            return False
        if r.status_code != 200:
            what = r.text.strip()[:500]
            _say(f"the new certificate files were not loaded, the old ones still serve: {what}")
            return False
        self.reloads += 1
        _say("new certificate files loaded by Caddy (no restart)")
        return True

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.thread is not None:
            self.thread.join(WATCH_INTERVAL * 3)


def start_front(settings: Settings, state: State) -> Front | None:
    """Start Caddy for ``hub.tls``; None when it is off. When Caddy cannot start,
    or exits later on its own, this process gets SIGTERM (the launcher's handler
    stops the hub) and :func:`stop_front` ends it with status 1."""
    if not tls_enabled(settings.values):
        return None
    return Front(settings, state).start()


def stop_front(front: Front | None) -> None:
    """Stop what ``start_front`` started. If Caddy had failed (the hub has
    stopped by then), raise ``SystemExit(1)``: ``labspace up`` ends with status
    1, so a service manager restarts Labspace."""
    if front is None:
        return
    front.stop()
    if front.failed:
        raise SystemExit(1)
