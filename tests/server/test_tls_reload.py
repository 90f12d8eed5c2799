"""Certificates renewed on disk (cert-manager, a mounted Secret) are used by new connections without a restart."""

from __future__ import annotations

import os
import shutil
import time

import grpc
import pytest

from kedascaler.server.app import ScalerServer, TLSConfig
from tests.support.grpc_certs import CertSet, make_certs, openssl

from .test_tls import credentials, is_active


@pytest.fixture(scope="module")
def two_pkis(tmp_path_factory) -> tuple[CertSet, CertSet]:
    if openssl() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl CLI not found: the TLS tests need it")
        pytest.skip("openssl CLI not found")
    return make_certs(tmp_path_factory.mktemp("pki-old")), make_certs(tmp_path_factory.mktemp("pki-new"))


def _install(pki: CertSet, folder, later: float) -> None:
    """Write the server's files as a renewal does (new contents, a newer mtime)."""
    for src, name in ((pki.server_cert, "tls.crt"), (pki.server_key, "tls.key"), (pki.ca, "ca.crt")):
        shutil.copyfile(src, folder / name)
        os.utime(folder / name, (later, later))


async def test_a_renewed_server_certificate_is_served_to_new_connections(board, two_pkis, tmp_path):
    old, new = two_pkis
    _install(old, tmp_path, time.time())
    server = ScalerServer(board, port=0, host="127.0.0.1",
                          tls=TLSConfig(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")))
    port = await server.start()
    try:
        assert await is_active(port, credentials(old)) is True
        _install(new, tmp_path, time.time() + 5)
        assert await is_active(port, credentials(new)) is True
        with pytest.raises(grpc.aio.AioRpcError):
            await is_active(port, credentials(old))  # the old chain is no longer served
    finally:
        await server.stop(grace=0)


async def test_a_renewed_client_ca_is_used_for_mtls(board, two_pkis, tmp_path):
    old, new = two_pkis
    _install(old, tmp_path, time.time())
    tls = TLSConfig(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), client_ca_file=str(tmp_path / "ca.crt"))
    server = ScalerServer(board, port=0, host="127.0.0.1", tls=tls)
    port = await server.start()
    try:
        assert await is_active(port, credentials(old, client="client")) is True
        _install(new, tmp_path, time.time() + 5)
        assert await is_active(port, credentials(new, client="client")) is True
        with pytest.raises(grpc.aio.AioRpcError):
            await is_active(port, credentials(old, client="client"))
    finally:
        await server.stop(grace=0)


async def test_a_broken_renewal_keeps_the_last_good_certificate(board, two_pkis, tmp_path):
    old, _ = two_pkis
    _install(old, tmp_path, time.time())
    server = ScalerServer(board, port=0, host="127.0.0.1",
                          tls=TLSConfig(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")))
    port = await server.start()
    try:
        (tmp_path / "tls.crt").write_text("not a certificate")
        later = time.time() + 5
        os.utime(tmp_path / "tls.crt", (later, later))
        assert await is_active(port, credentials(old)) is True
    finally:
        await server.stop(grace=0)
