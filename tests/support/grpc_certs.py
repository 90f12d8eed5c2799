"""Throw-away PKI for TLS tests, made with the `openssl` CLI: a CA, a server cert for localhost, client certs."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertSet:
    """PEM file paths; `stranger_*` is a client cert signed by another CA, which mTLS must refuse."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def openssl() -> str | None:
    return shutil.which("openssl")


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([openssl() or "openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    _run("req", "-x509", *_EC, "-keyout", key.name, "-out", crt.name, "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         cwd=folder)
    return crt, key


def _leaf(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, crt, ext = (folder / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    ext.write_text(extensions)
    _run("req", "-new", *_EC, "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={name}", cwd=folder)
    _run("x509", "-req", "-in", csr.name, "-CA", ca[0].name, "-CAkey", ca[1].name, "-CAcreateserial",
         "-out", crt.name, "-days", "2", "-extfile", ext.name, cwd=folder)
    return crt, key


def make_certs(folder: Path) -> CertSet:
    """Write a CA, a server cert (SAN localhost, 127.0.0.1), a client cert and a stranger's client cert."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "ca")
    other_ca = _ca(folder, "other-ca")
    server = _leaf(folder, "server", ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    client = _leaf(folder, "client", ca, "extendedKeyUsage=clientAuth\n")
    stranger = _leaf(folder, "stranger", other_ca, "extendedKeyUsage=clientAuth\n")
    return CertSet(ca[0], server[0], server[1], client[0], client[1], stranger[0], stranger[1])
