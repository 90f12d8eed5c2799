"""`serve --kubernetes` composed from a kubeconfig: the inventory syncs, the elector takes the Lease."""

from tests.sources.test_kubernetes import names
from tests.support.kube_apiserver import va


def test_kubernetes_sources_from_a_kubeconfig(apiserver, tmp_path):
    from kedascaler.cli.kube import kubernetes_sources

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{apiserver.url}"}}}}]
users: [{{name: me, user: {{token: abc}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: me}}}}]
current-context: fake
""")
    apiserver.put(va("a", "m"))
    inventory, writer, elector = kubernetes_sources(str(kubeconfig), "", "", "kedascaler-system", identity="pod-1")
    try:
        inventory.start()
        assert inventory.wait_synced(5)
        assert names(inventory) == ["a"]
        assert elector.try_acquire_or_renew(0.0)
        assert apiserver.get("Lease", "kedascaler-system", "kedascaler-leader")["spec"]["holderIdentity"] == "pod-1"
    finally:
        inventory.stop()
