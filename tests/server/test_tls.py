"""TLS and mTLS end to end, as KEDA's `enableTLS` / TriggerAuthentication certs would connect."""

from __future__ import annotations

import grpc
import pytest

from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer, TLSConfig
from tests.support.grpc_certs import CertSet

from .conftest import ref, rpc_error


def credentials(certs: CertSet, *, client: str | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    if client == "client":
        cert, key = certs.client_cert, certs.client_key
    else:
        cert, key = certs.stranger_cert, certs.stranger_key
    return grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(), private_key=key.read_bytes(), certificate_chain=cert.read_bytes()
    )


async def is_active(port: int, creds: grpc.ChannelCredentials, *, host_name: str | None = None) -> bool:
    options = [("grpc.ssl_target_name_override", host_name)] if host_name else []
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
        return (await pb_grpc.ExternalScalerStub(channel).IsActive(ref("llama-8b-h100"), timeout=10)).result


@pytest.fixture
async def tls_server(board, certs):
    server = ScalerServer(board, port=0, host="127.0.0.1", tls=TLSConfig(str(certs.server_cert), str(certs.server_key)))
    yield await server.start()
    await server.stop(grace=0)


@pytest.fixture
async def mtls_server(board, certs):
    tls = TLSConfig(str(certs.server_cert), str(certs.server_key), client_ca_file=str(certs.ca))
    server = ScalerServer(board, port=0, host="127.0.0.1", tls=tls)
    yield await server.start()
    await server.stop(grace=0)


async def test_tls_client_trusting_the_ca_is_served(tls_server, certs):
    assert await is_active(tls_server, credentials(certs)) is True
    assert await is_active(tls_server, credentials(certs), host_name="localhost") is True


async def test_tls_refuses_plaintext_clients(tls_server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server}") as channel:
        error = await rpc_error(pb_grpc.ExternalScalerStub(channel).IsActive(ref("llama-8b-h100"), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_serves_a_client_with_a_cert_from_the_ca(mtls_server, certs):
    assert await is_active(mtls_server, credentials(certs, client="client")) is True


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no-client-cert", "cert-from-another-ca"])
async def test_mtls_refuses_other_clients(mtls_server, certs, client):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await is_active(mtls_server, credentials(certs, client=client))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_missing_cert_file_fails_at_start_naming_the_file(board, tmp_path):
    missing = tmp_path / "nope.crt"
    server = ScalerServer(board, port=0, host="127.0.0.1", tls=TLSConfig(str(missing), str(missing)))
    with pytest.raises(ValueError, match="nope.crt"):
        await server.start()
