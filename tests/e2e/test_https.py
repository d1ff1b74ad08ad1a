"""HTTPS for real (``hub.tls``), on loopback: Labspace's Caddy in front of a
real hub (``labspace up``).

- ``acme``: pebble (the ACME test server of Let's Encrypt, its DNS answering
  127.0.0.1 for every name) issues the certificate; Chromium, with pebble's root
  trusted in an NSS database (not told to ignore certificate errors), loads the
  login page over HTTPS, signs in and opens the catalog service (its OAuth
  through HTTPS); HTTP redirects to HTTPS, HSTS is sent, every cookie is
  Secure; a renewal (forced through Caddy's admin API: pebble's certificates
  last five years) is served by the same Caddy process; Caddy killed stops
  ``labspace up`` with status 1.
- ``files``: certificate files replaced on disk are served by the same Caddy
  process; a broken replacement keeps the old certificate; a key that is not
  the certificate's stops the start with one line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
from acme import Pebble, make_api_certificate
from acme import available as pebble_available
from browser import ARGS, CHROMIUM, VIEWPORT, shoot, sign_in
from browser import available as browser_available
from harness import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOMAIN = "hub.labspace.test"


def served_serial(port: int, cafile: Path) -> int:
    """The serial of the certificate served for DOMAIN on 127.0.0.1:``port``,
    verified against ``cafile`` (the handshake fails on any other)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


def serial_or_none(port: int, cafile: Path) -> int | None:
    try:
        return served_serial(port, cafile)
    except (OSError, ssl.SSLError):
        return None


def caddy_of(hub) -> psutil.Process:
    """The Caddy that ``labspace up`` started (its child)."""
    found = [p for p in psutil.Process(hub.proc.pid).children() if p.name() == "caddy"]
    assert len(found) == 1, hub.log()[-3000:]
    return found[0]


def admin(data_dir: Path, method: str, path: str, **kwargs) -> httpx.Response:
    """Caddy's admin API, on its unix socket in data_dir/tls."""
    transport = httpx.HTTPTransport(uds=str(data_dir / "tls" / "admin.sock"))
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.request(method, f"http://localhost{path}", **kwargs)


def curl(url: str, port: int, cafile: Path) -> str:
    """``url`` fetched by curl with DOMAIN at 127.0.0.1, trusting ``cafile``."""
    r = subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "20", "--cacert", str(cafile),
         "--resolve", f"{DOMAIN}:{port}:127.0.0.1", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def tls_settings(hub_settings: dict, **tls) -> dict:
    ports = {"port": free_port(), "http_port": free_port()}
    hub_settings["hub"]["tls"] = {"domain": DOMAIN, "ip": "127.0.0.1", **ports, **tls}
    return hub_settings


def trusting_home(folder: Path, root_pem: str) -> Path:
    """A HOME whose NSS database (Chromium's on Linux) trusts ``root_pem``."""
    nssdb = folder / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    (folder / "root.pem").write_text(root_pem)
    db = f"sql:{nssdb}"
    for cmd in (
        ["certutil", "-N", "-d", db, "--empty-password"],
        ["certutil", "-A", "-d", db, "-n", "pebble", "-t", "C,,", "-i", str(folder / "root.pem")],
    ):
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    return folder


@pytest.fixture
def pebble(tmp_path, need):
    ok, why = pebble_available()
    need("pebble", ok, why)
    need("caddy", shutil.which("caddy") is not None, "apt install caddy")
    folder = tmp_path / "pebble"
    folder.mkdir()
    ca = Pebble(folder, http_port=free_port(), tls_port=free_port())
    yield ca.start()
    ca.stop()


def test_acme_certificate_browser_renewal(tmp_path, pebble, hub_settings, hub_factory, need):
    ok, why = browser_available()
    need("Chromium", ok, why)
    need("certutil", shutil.which("certutil") is not None, "apt install libnss3-tools")
    settings = tls_settings(
        hub_settings,
        type="acme",
        port=pebble.tls_port,
        http_port=pebble.http_port,
        acme={"directory": pebble.directory, "ca_root": str(pebble.api_ca), "email": "ops@x.test"},
    )
    settings["catalog"] = {"enabled": True, "port": free_port()}  # a service's OAuth too
    port, http_port = settings["hub"]["tls"]["port"], settings["hub"]["tls"]["http_port"]
    hub = hub_factory(settings).start()
    origin = f"https://{DOMAIN}:{port}"
    assert hub.banner.group(1) == f"{origin}/"
    data_dir = Path(settings["data_dir"])

    # pebble issues a certificate to Labspace's Caddy, which serves it
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble.root_pem())
    first = wait_for(lambda: serial_or_none(port, root), 60, 0.5, "pebble's certificate")
    caddy = caddy_of(hub)
    assert (data_dir / "tls").stat().st_mode & 0o777 == 0o700
    assert any((data_dir / "tls" / "caddy").rglob(f"{DOMAIN}.crt"))  # kept in data_dir

    # plain HTTP redirects to the HTTPS origin (never to the Host it was sent)
    r = httpx.get(f"http://127.0.0.1:{http_port}/hub/login?next=x", headers={"Host": DOMAIN})
    assert (r.status_code, r.headers["location"]) == (308, f"{origin}/hub/login?next=x")
    r = httpx.get(f"http://127.0.0.1:{http_port}/", headers={"Host": "evil.example"})
    assert r.headers["location"] == f"{origin}/"

    # Chromium trusting pebble's root loads the login page over HTTPS and signs in
    from playwright.sync_api import expect, sync_playwright

    home = trusting_home(tmp_path / "browser-home", pebble.root_pem())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*ARGS, f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1"],
            env={**os.environ, "HOME": str(home)},
        )
        try:
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.set_default_timeout(20_000)
            response = page.goto(f"{origin}/hub/login")
            assert response.status == 200
            assert response.headers["strict-transport-security"] == "max-age=31536000"
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            shoot(page, "https-login")
            sign_in(page, "admin", hub.admin_password)
            page.wait_for_url(f"{origin}/hub/home")
            assert page.goto(f"{origin}/services/catalog/").status == 200  # after its OAuth
            expect(page).to_have_title("Apps · Labspace")
            cookies = {c["name"]: c for c in context.cookies()}
            assert {"jupyterhub-session-id", "_xsrf", "service-catalog"} <= set(cookies), cookies
            assert {n: c["secure"] for n, c in cookies.items()} == dict.fromkeys(cookies, True)

            # a renewal, forced (ratio 1: always due), served by the same Caddy
            r = admin(
                data_dir,
                "POST",
                "/config/apps/tls/automation/policies/0/renewal_window_ratio",
                json=1,
            )
            assert r.status_code == 200, r.text
            renewed = wait_for(
                lambda: (s := serial_or_none(port, root)) != first and s,
                60,
                0.5,
                "the renewed certificate",
            )
            assert renewed != first
            assert caddy_of(hub).pid == caddy.pid
            assert page.reload().status == 200  # still signed in after the renewal
            expect(page).to_have_title("Apps · Labspace")
        finally:
            browser.close()

    # Caddy gone: labspace up stops the hub and exits 1 (a service manager restarts it)
    os.kill(caddy.pid, signal.SIGKILL)
    assert hub.proc.wait(60) == 1, hub.log()[-3000:]
    assert "Caddy (the HTTPS front) exited with status -9; stopping Labspace" in hub.log()


def replace_pem(cert: Path, key: Path, work: Path) -> None:
    """A new certificate and key for DOMAIN (a new CA each time) put in place by
    renaming, as certbot's deploy hooks and most tools do."""
    work.mkdir()
    ca, new_cert, new_key = make_api_certificate(work, [DOMAIN])
    new_cert.write_text(new_cert.read_text() + ca.read_text())  # the full chain
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    os.replace(ca, cert.parent / "ca.pem")


def test_files_replaced_without_restart(tmp_path, hub_settings, hub_factory, need):
    need("caddy", shutil.which("caddy") is not None, "apt install caddy")
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = certs / "fullchain.pem", certs / "privkey.pem"
    settings = tls_settings(hub_settings, type="files", certificate=str(cert), key=str(key))

    # the key of another certificate stops the start (before Caddy would serve
    # a pair no browser accepts), one line naming the key
    replace_pem(cert, key, tmp_path / "one")
    good_key = key.read_text()
    (tmp_path / "other").mkdir()
    key.write_bytes(make_api_certificate(tmp_path / "other", [DOMAIN])[2].read_bytes())
    with pytest.raises(RuntimeError) as e:
        hub_factory(settings).start()
    said = f"  hub.tls.key: {key} is not the key of hub.tls.certificate (give the pair"
    assert said in str(e.value)
    key.write_text(good_key)

    hub = hub_factory(settings).start()
    port = settings["hub"]["tls"]["port"]
    first = served_serial(port, certs / "ca.pem")
    caddy = caddy_of(hub)
    # through Caddy and the proxy to the hub
    assert '"version"' in curl(f"https://{DOMAIN}:{port}/hub/api/", port, certs / "ca.pem")

    # a broken key now: Caddy keeps the certificate it has
    key.write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    refused = (
        "Labspace: the new certificate files were not loaded, the old ones still serve: "
        f"hub.tls.key: {key} is no usable private key: it cannot be read"
    )
    wait_for(lambda: refused in hub.log(), 30, 0.5, "the refused reload")
    assert served_serial(port, certs / "ca.pem") == first
    key.write_text(good_key)

    # new files, renamed into place: served by the same process
    replace_pem(cert, key, tmp_path / "two")
    second = wait_for(
        lambda: (s := serial_or_none(port, certs / "ca.pem")) not in (None, first) and s,
        30,
        0.5,
        "the new certificate",
    )
    assert second != first
    assert caddy_of(hub).pid == caddy.pid
    assert "new certificate files loaded by Caddy (no restart)" in hub.log()
