"""Process-wide test set-up."""

from grpc.experimental.aio import init_grpc_aio

# grpc.aio starts its completion-queue poller when the first aio object is created and shuts it down (joining
# the poller thread) whenever the last one is freed. A test suite does that hundreds of times, on a fresh event
# loop each time, and the join can hang for good (grpc/grpc#22365). One reference held from the main thread for
# the whole session keeps the poller alive between tests; the scaler itself starts aio once and never does this.
init_grpc_aio()

from tests.support.kube import api_client, apiserver  # noqa: E402,F401 - the Kubernetes fixtures, for every folder
