"""A scan sharded over a two-node Ray cluster on loopback (head and worker node), one node lost mid-scan."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from bastion.data.sources import Dataset
from bastion.models.loading import LoadedModel
from bastion.scan.engine import RayEngine
from bastion.scan.runner import ScanSettings, run_scan

pytestmark = pytest.mark.slow


def test_a_scan_survives_losing_a_node_and_writes_the_local_record(digits_model, digits_test):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    x, y = digits_test
    data = Dataset(x=x[:160].numpy(), y=y[:160].numpy(), class_names=[str(i) for i in range(10)], description="d")
    loaded = LoadedModel(classifier=digits_model, description="digits_cnn", sha256="cd" * 32, kind="torch")
    settings = ScanSettings(eps=[0.1], suite="standard", seed=2, batch_size=16)
    local = run_scan(loaded, data, settings).record
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker_node = cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        assert len([node for node in ray.nodes() if node["Alive"]]) == 2

        scan_done, lost_mid_scan = threading.Event(), []

        def lose_the_worker_node() -> None:
            # Once shards run (one per node: each has one CPU), the worker node goes, with its shard.
            while not scan_done.is_set():
                running = subprocess.run(["pgrep", "-f", "ray::run_shard"], capture_output=True, text=True).stdout
                if len(running.split()) >= 2:
                    cluster.remove_node(worker_node, allow_graceful=False)
                    lost_mid_scan.append(not scan_done.is_set())
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=lose_the_worker_node)
        killer.start()
        try:
            sharded = run_scan(loaded, data, settings, engine=RayEngine(shards=4, max_retries=3)).record
        finally:
            scan_done.set()
            killer.join()
        assert lost_mid_scan == [True], "the worker node was not lost while the scan ran"
        assert len([node for node in ray.nodes() if node["Alive"]]) == 1
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert [r.robust_accuracy for r in sharded.results] == [r.robust_accuracy for r in local.results]
    assert [[(a.name, a.points_broken, a.queries) for a in r.attacks] for r in sharded.results] == \
        [[(a.name, a.points_broken, a.queries) for a in r.attacks] for r in local.results]
