"""Process-wide test set-up."""

from grpc.experimental.aio import init_grpc_aio

# grpc.aio starts its completion-queue poller when the first aio object is created and shuts it down (joining
# the poller thread) whenever the last one is freed. A test suite does that hundreds of times, on a fresh event
# loop each time, and the join can hang for good (grpc/grpc#22365). One reference held from the main thread for
# the whole session keeps the poller alive between tests; the scaler itself starts aio once and never does this.
init_grpc_aio()

import os  # noqa: E402

import pytest  # noqa: E402

from tests.support.grpc_certs import CertSet, make_certs, openssl  # noqa: E402
from tests.support.kube import api_client, apiserver  # noqa: E402,F401 - the Kubernetes fixtures, for every folder


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    """A fresh throw-away PKI per test module (the TLS tests); no `openssl` CLI fails the test under CI=true."""
    if openssl() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl CLI not found: the TLS tests need it")
        pytest.skip("openssl CLI not found")
    return make_certs(tmp_path_factory.mktemp("pki"))
