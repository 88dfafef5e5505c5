"""The lab's own certificate authority, made with the ``openssl`` command as an operator
makes one (docs/deploy.md): a CA, and one certificate for the controllers whose
subjectAltName lists every controller address, so an agent checks the name it dialled
(RFC 6125) against the CA the lab hands it (``--ca-file``)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tunnelnet.errors import TunnelnetError

DAYS = "30"  # a lab lives for hours; a month leaves room and still expires


class PkiError(TunnelnetError):
    """openssl is missing or refused to make a key or certificate."""


@dataclass(frozen=True, slots=True)
class LabPki:
    ca: Path  # what clients trust (--ca-file)
    cert: Path  # the controllers' certificate (--tls-cert)
    key: Path  # its key (--tls-key)


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiError("openssl is not installed (Debian package openssl): the lab's "
                       "controllers serve TLS with certificates it makes")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make(directory: Path, addresses: list[str]) -> LabPki:
    """A CA and a controller certificate for ``addresses`` (IPs), in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", DAYS,
             "-subj", "/CN=tunnelnet lab CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key, csr, cert = (directory / "controller.key", directory / "controller.csr",
                      directory / "controller.pem")
    ext = directory / "controller.ext"
    san = ",".join(f"IP:{a}" for a in addresses)
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n"
                   "basicConstraints=critical,CA:FALSE\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=tunnelnet-lab")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", DAYS, "-extfile", str(ext))
    return LabPki(ca, cert, key)
