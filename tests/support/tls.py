"""Certificates for tests, made by the `openssl` command as an operator would make them.

`make_ca` makes a self-signed CA; `make_server_cert` a key and a certificate it signs, with
subjectAltName entries (what a client checks the host against: RFC 6125; a client ignores the
CN once there is a SAN). Nothing of tunnelnet is used, so the certificates judge it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.tools import require_tool


@dataclass(frozen=True)
class Ca:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    done = subprocess.run([require_tool("openssl"), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr}")


def make_ca(directory: Path, name: str = "test-ca") -> Ca:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Ca(cert, key)


def make_server_cert(ca: Ca, directory: Path, name: str = "controller",
                     san: str = "IP:127.0.0.1") -> ServerCert:
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, cert = (directory / f"{name}.key", directory / f"{name}.csr",
                      directory / f"{name}.pem")
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n"
                   "basicConstraints=critical,CA:FALSE\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ServerCert(cert, key)


@dataclass(frozen=True)
class Pki:
    """A CA with a controller certificate for 127.0.0.1, and a CA that signed nothing of ours
    (what a client misled into trusting someone else holds)."""

    ca: Ca
    server: ServerCert
    other_ca: Ca


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory / "ca")
    return Pki(ca, make_server_cert(ca, directory / "server"),
               make_ca(directory / "other", "other-ca"))
