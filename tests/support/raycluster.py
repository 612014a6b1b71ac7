"""A real multi-node Ray cluster on this machine, on loopback, cleaned up by its own processes.

Traps avoided (../shared/ENVIRONMENT.md): RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps every
socket on 127.0.0.1; RAY_AUTH_MODE is set explicitly for servers and clients; the cluster
has its own temp dir (no stale /tmp/ray session is joined); shutdown kills only its own
processes (never `ray stop --force`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@contextmanager
def ray_cluster(worker_nodes: int = 2, cpus_per_node: int = 2):
    """(cluster, address): a head without CPUs (actors go to worker nodes) and `worker_nodes` nodes."""
    os.environ.update(RAY_ENV)
    import ray
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="tv3sray", dir="/tmp")  # short: Ray's socket paths are length-limited
    os.environ["RAY_TMPDIR"] = temp  # the cluster address file too: no shared /tmp/ray session
    os.makedirs(f"{temp}/ray")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "temp_dir": f"{temp}/ray",
            "include_dashboard": False,
            "node_ip_address": "127.0.0.1",
        },
    )
    try:
        for _ in range(worker_nodes):
            cluster.add_node(num_cpus=cpus_per_node, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster, cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def node_with_id(cluster, node_id: str):
    for node in cluster.list_all_nodes():
        if node.node_id == node_id:
            return node
    raise LookupError(f"no node {node_id} in the cluster")
