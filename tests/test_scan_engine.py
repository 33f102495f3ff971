"""Scan engines: a sharded scan writes the record a local one writes; shards, merges, Ray, a lost worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch

from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.pgd import PGD
from bastion.core.errors import InputError
from bastion.core.ids import sample_keys
from bastion.core.threat import ThreatModel
from bastion.data.sources import Dataset
from bastion.models.loading import LoadedModel
from bastion.scan.cascade import run_cascade
from bastion.scan.engine import CascadeJob, LocalEngine, RayEngine, make_shards, merge_cascades, run_shard
from bastion.scan.runner import ScanSettings, run_scan


def _stored(record: Any) -> dict[str, Any]:
    """The record as stored, less what differs between any two runs (wall-clock times, creation time)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in {"seconds", "created_at", "wall_seconds"}}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(json.loads(record.model_dump_json()))


@pytest.fixture(scope="module")
def scan_inputs(digits_model, digits_test) -> tuple[LoadedModel, Dataset, ScanSettings]:
    x, y = digits_test
    data = Dataset(x=x[:150].numpy(), y=y[:150].numpy(), class_names=[str(i) for i in range(10)], description="digits")
    loaded = LoadedModel(classifier=digits_model, description="digits_cnn", sha256="ab" * 32, kind="torch")
    return loaded, data, ScanSettings(eps=[0.1, 0.2], suite="quick", seed=5, batch_size=32)


def test_a_scan_run_shard_by_shard_writes_the_local_record(scan_inputs):
    loaded, data, settings = scan_inputs
    local = run_scan(loaded, data, settings)
    sharded = run_scan(loaded, data, settings, engine=LocalEngine(shard_size=40))  # 64-sample shards
    assert _stored(sharded.record) == _stored(local.record)
    for a, b in zip(local.examples, sharded.examples, strict=True):
        for name, value in vars(a).items():
            assert np.array_equal(np.asarray(value), np.asarray(getattr(b, name))), name


def test_merge_puts_samples_back_in_order_and_recounts_each_attack(digits_model, digits_test):
    x, y = digits_test
    x, y = x[:90], y[:90]
    keys = sample_keys(x, y)
    job = CascadeJob(threat=ThreatModel(norm="linf", eps=0.15), attacks=[FGSM(), PGD(steps=5)], seed=1, batch_size=20)
    whole = run_cascade(digits_model, x, y, job.threat, job.attacks, keys=keys, seed=1, batch_size=20)
    shards = make_shards(len(x), [str(i) for i in range(len(x))], 30, job, None)
    assert [len(shard.positions) for shard in shards] == [40, 40, 10]  # whole batches of 20
    parts = [run_shard(digits_model, None, x, y, keys, None, shard, job) for shard in reversed(shards)]
    merged = merge_cascades(parts, list(reversed(shards)), len(x))
    assert torch.equal(merged.robust, whole.robust) and torch.equal(merged.x_worst, whole.x_worst)
    assert merged.broken_by == whole.broken_by
    for a, b in zip(merged.attacks, whole.attacks, strict=True):
        assert (a.points_attacked, a.points_broken, a.queries, a.robust_accuracy_after) == \
            (b.points_attacked, b.points_broken, b.queries, b.robust_accuracy_after)


def test_shards_and_merges_refuse_bad_input(digits_model, digits_test):
    x, y = digits_test
    job = CascadeJob(threat=ThreatModel(norm="linf", eps=0.1), attacks=[FGSM()], seed=0, batch_size=8)
    with pytest.raises(InputError, match="one sample id per sample"):
        make_shards(10, ["a"], 4, job, None)
    with pytest.raises(InputError, match="shard_size must be at least 1"):
        LocalEngine(shard_size=0)
    with pytest.raises(InputError, match="shards must be at least 1"):
        RayEngine(shards=0)
    shards = make_shards(16, [str(i) for i in range(16)], 8, job, "a" * 64)
    with pytest.raises(InputError, match="is for the model"):
        run_shard(digits_model, "b" * 64, x, y, sample_keys(x, y), None, shards[0], job)
    with pytest.raises(InputError, match="do not cover the samples"):
        merge_cascades([], shards, 16)


# ------------------------------------------------------------------ Ray (a local instance; the cluster script
# scripts/scale_test.sh runs the same on a two-node cluster)

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_a_scan_sharded_over_ray_writes_the_local_record(scan_inputs, ray_local):
    loaded, data, settings = scan_inputs
    local = run_scan(loaded, data, settings)
    sharded = run_scan(loaded, data, settings, engine=RayEngine(shards=3))
    assert _stored(sharded.record) == _stored(local.record)


@pytest.mark.slow
def test_a_shard_whose_worker_dies_is_retried_and_the_scan_completes(scan_inputs, ray_local):
    loaded, data, settings = scan_inputs
    local = run_scan(loaded, data, settings)
    killed: list[int] = []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            found = subprocess.run(["pgrep", "-f", "ray::run_shard"], capture_output=True, text=True).stdout.split()
            if found:
                os.kill(int(found[0]), signal.SIGKILL)
                killed.append(int(found[0]))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    sharded = run_scan(loaded, data, settings, engine=RayEngine(shards=4, max_retries=3))
    killer.join()
    assert killed, "no shard worker was seen to kill"
    assert _stored(sharded.record) == _stored(local.record)


# ------------------------------------------------------------------ LiRA's shadow models through an engine

def _lira_scores(engine, digits_model, digits_test) -> np.ndarray:
    from bastion.attacks.inference import LiRA, shadow_trainer
    from bastion.models.zoo import digits_cnn

    x, y = digits_test
    x, y = x[:80].numpy(), y[:80].numpy()
    torch.set_num_threads(1)
    recipe = shadow_trainer(digits_cnn, input_shape=(1, 8, 8), num_classes=10, epochs=2, batch_size=40)
    lira = LiRA(shadows=4, seed=3).fit(x, y, recipe, engine=engine)
    return lira.score(digits_model, x, y)


def test_lira_shadows_trained_through_the_local_engine_score_as_without_one(digits_model, digits_test):
    np.testing.assert_array_equal(_lira_scores(LocalEngine(), digits_model, digits_test),
                                  _lira_scores(None, digits_model, digits_test))


@pytest.mark.slow
def test_lira_shadows_trained_on_ray_score_as_local_ones(digits_model, digits_test, ray_local):
    np.testing.assert_array_equal(_lira_scores(RayEngine(), digits_model, digits_test),
                                  _lira_scores(None, digits_model, digits_test))


# ------------------------------------------------------------------ randomized smoothing through an engine

def _certify(engine, digits_model, digits_test):
    from bastion.workflows.certify import CertifySettings, run_certify

    x, y = digits_test
    data = Dataset(x=x[:24].numpy(), y=y[:24].numpy(), class_names=[str(i) for i in range(10)], description="d")
    loaded = LoadedModel(classifier=digits_model, description="digits_cnn", sha256=None, kind="torch")
    settings = CertifySettings(method="smoothing", sigma=0.25, n=200, n0=20, batch_size=400, attack=False)
    return _stored(run_certify(loaded, data, settings, engine=engine))


def test_smoothing_certified_in_shards_gives_the_same_certificates(digits_model, digits_test):
    assert _certify(LocalEngine(), digits_model, digits_test) == _certify(None, digits_model, digits_test)


@pytest.mark.slow
def test_smoothing_certified_on_ray_gives_the_same_certificates(digits_model, digits_test, ray_local):
    assert _certify(RayEngine(shards=3), digits_model, digits_test) == _certify(None, digits_model, digits_test)
