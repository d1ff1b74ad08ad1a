"""A real ACME CA on loopback for the HTTPS tests: Debian's ``pebble`` (the test
server of Let's Encrypt) with ``pebble-challtestsrv`` as its DNS server, so every
name resolves to 127.0.0.1.

``Pebble(workdir, http_port, tls_port).start()`` generates the certificate of
pebble's own HTTPS API with ``cryptography`` (a throwaway CA, in ``workdir``),
starts both programs on free loopback ports and waits (bounded) until the
directory answers. ``directory`` is the ACME directory URL, ``api_ca`` the PEM
file a client must trust to talk to it, ``root_pem()`` the root that signs the
certificates pebble issues (new on every start, from the management API's
``/roots/0``). ``stop()`` ends both, by PID.

Pebble validates http-01 challenges on ``http_port`` and tls-alpn-01 on
``tls_port`` (the ACME client's ports); ``PEBBLE_VA_NOSLEEP=1`` drops its
artificial delays.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
from pathlib import Path

import httpx
from harness import Managed, free_port

PROGRAMS = ("pebble", "pebble-challtestsrv")


def available() -> tuple[bool, str]:
    """Whether pebble can run here, and if not, why."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return False, f"{', '.join(missing)} not found (apt install pebble)"
    return True, ""


def make_api_certificate(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """``(ca, cert, key)`` PEM files: a throwaway CA and a certificate it signs
    for ``names`` (host names and IP addresses), for pebble's own HTTPS API."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Labspace test pebble API CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = folder / "api-ca.pem", folder / "api-cert.pem", folder / "api-key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class ChallTestSrv(Managed):
    """pebble-challtestsrv as a DNS server only: every A query answers 127.0.0.1."""

    name = "pebble-challtestsrv"

    def __init__(self, workdir: Path):
        self.log_path = workdir / "challtestsrv.log"
        self.dns_port = free_port()
        self.management_port = free_port()

    def start(self, timeout: float = 30) -> ChallTestSrv:
        cmd = [
            "pebble-challtestsrv",
            "-dns01", f"127.0.0.1:{self.dns_port}",
            "-management", f"127.0.0.1:{self.management_port}",
            "-defaultIPv4", "127.0.0.1",
            "-defaultIPv6", "",
            "-http01", "",
            "-https01", "",
            "-tlsalpn01", "",
        ]  # fmt: skip
        self.launch(cmd, self.log_path.parent, dict(os.environ), timeout)
        return self

    def ready(self) -> bool:
        return "Starting management server" in self.log() and "Starting" in self.log()


class Pebble(Managed):
    """pebble on loopback, validating challenges on the ACME client's ports."""

    name = "pebble"

    def __init__(self, workdir: Path, http_port: int, tls_port: int):
        self.workdir = workdir
        self.log_path = workdir / "pebble.log"
        self.http_port = http_port
        self.tls_port = tls_port
        self.port = free_port()
        self.management_port = free_port()
        self.dns = ChallTestSrv(workdir)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self, timeout: float = 60) -> Pebble:
        self.api_ca, cert, key = make_api_certificate(self.workdir, ["127.0.0.1", "localhost"])
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        config_path = self.workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config))
        self.dns.start()
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        cmd = [
            "pebble",
            "-config", str(config_path),
            "-dnsserver", f"127.0.0.1:{self.dns.dns_port}",
        ]  # fmt: skip
        try:
            self.launch(cmd, self.workdir, env, timeout)
        except (TimeoutError, RuntimeError):
            self.dns.stop()
            raise
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(self.directory, verify=self.trust(), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def trust(self) -> ssl.SSLContext:
        """A TLS context trusting pebble's own HTTPS API."""
        return ssl.create_default_context(cafile=str(self.api_ca))

    def root_pem(self) -> str:
        """The root that signs what pebble issues (made anew at each start)."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        r = httpx.get(url, verify=self.trust(), timeout=10)
        r.raise_for_status()
        return r.text

    def stop(self, timeout: float = 30) -> int | None:
        status = super().stop(timeout)
        self.dns.stop(timeout)
        return status
