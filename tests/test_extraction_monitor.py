"""The per-key extraction monitor on synthetic streams: PRADA, OOD rate, coverage, budget, alerts once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from bastion.core.errors import InputError
from bastion.monitor import ExtractionAlert, ExtractionMonitor


@pytest.fixture(scope="module")
def digits(digits_arrays):
    x, y = digits_arrays
    order = np.random.default_rng(0).permutation(len(x))
    return x[order], y[order]


def jacobian_like(x: np.ndarray, y: np.ndarray, *, seeds: int = 20, rounds: int = 4, step: float = 0.1,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Papernot-style stream: ``seeds`` natural images, then rounds doubling the set by +-step sign steps."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(x), seeds, replace=False)
    points, labels = x[picked], y[picked]
    stream, stream_labels = [points], [labels]
    for _ in range(rounds):
        new = np.clip(points + step * np.sign(rng.standard_normal(points.shape)), 0, 1).astype(np.float32)
        stream.append(new)
        stream_labels.append(labels)
        points, labels = np.concatenate([points, new]), np.concatenate([labels, labels])
    return np.concatenate(stream), np.concatenate(stream_labels)


def feed(monitor: ExtractionMonitor, key: str, x: np.ndarray, y: np.ndarray, *, batch: int = 1,
         ood: np.ndarray | None = None) -> list[ExtractionAlert]:
    alerts = []
    for start in range(0, len(x), batch):
        flags = None if ood is None else ood[start : start + batch]
        alerts += monitor.observe(key, x[start : start + batch], y[start : start + batch], ood=flags)
    return alerts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_jacobian_like_stream_raises_the_prada_alert(seed, digits):
    x, y = jacobian_like(*digits, seed=seed)
    monitor = ExtractionMonitor()
    alerts = feed(monitor, "thief", x, y)
    assert [alert.signal for alert in alerts] == ["prada"]
    # 20 seeds, then perturbations: the first test (at 160 queries, 150 distances) sees W of about 0.35.
    assert alerts[0].queries <= 200 and alerts[0].value < 0.9 == alerts[0].threshold
    assert alerts[0].key_id == "thief" and "Shapiro-Wilk" in alerts[0].message


def test_natural_digits_raise_no_alert_even_over_the_whole_dataset(digits):
    x, y = digits
    monitor = ExtractionMonitor()
    assert feed(monitor, "client", x, y) == []  # 1,797 queries; lowest W measured 0.95..0.96 over 5 orders
    signals = monitor.signals("client")
    assert signals.queries == len(x) and signals.shapiro_w is not None and signals.shapiro_w > 0.9
    assert signals.classes_seen == 10 and signals.alerts == []


def test_natural_keys_stay_quiet_beside_an_attacker_and_keys_do_not_mix(digits):
    x, y = digits
    attack_x, attack_y = jacobian_like(x, y)
    monitor = ExtractionMonitor()
    alerts = []
    for start in range(0, 300, 3):  # interleaved requests of three keys
        alerts += monitor.observe("a", x[start : start + 3], y[start : start + 3])
        alerts += monitor.observe("b", x[900 + start : 903 + start], y[900 + start : 903 + start])
        alerts += monitor.observe("thief", attack_x[start : start + 3], attack_y[start : start + 3])
    assert {alert.key_id for alert in alerts} == {"thief"}
    assert sorted(monitor.keys()) == ["a", "b", "thief"]


def test_batches_give_the_same_state_as_single_queries(digits):
    x, y = jacobian_like(*digits, rounds=3)
    one, many = ExtractionMonitor(check_every=20), ExtractionMonitor(check_every=20)
    single_alerts = feed(one, "k", x, y, batch=1)
    batch_alerts = feed(many, "k", x, y, batch=37)
    assert one.signals("k") == many.signals("k")
    assert single_alerts == batch_alerts  # same query count at the alert, whatever the batching


def test_each_signal_fires_once_and_reset_forgets_the_key(digits):
    x, y = jacobian_like(*digits, rounds=5)
    monitor = ExtractionMonitor()
    first = feed(monitor, "thief", x[:300], y[:300])
    assert len(first) == 1
    assert feed(monitor, "thief", x[300:], y[300:]) == []
    assert [alert.signal for alert in monitor.signals("thief").alerts] == ["prada"]
    monitor.reset("thief")
    assert monitor.signals("thief").queries == 0 and monitor.keys() == []
    assert len(feed(monitor, "thief", x[:300], y[:300])) == 1


def test_the_ood_rate_alert_fires_on_a_foreign_pool_and_not_at_the_expected_rate(digits):
    x, y = digits
    rng = np.random.default_rng(0)
    monitor = ExtractionMonitor(ood_rate_expected=0.05, ood_alpha=1e-6)
    ordinary = rng.random(len(x)) < 0.05
    assert feed(monitor, "client", x, y, batch=4, ood=ordinary) == []
    assert monitor.signals("client").ood_rate == pytest.approx(ordinary.mean())
    foreign = rng.random(200) < 0.9  # a pool the detector mostly flags
    alerts = feed(monitor, "knockoff", x[:200], y[:200], batch=50, ood=foreign)
    assert [alert.signal for alert in alerts] == ["ood-rate"]
    # The exact query of the crossing, inside the first batch: P(K >= k | n, 0.05) < 1e-6 needs ~8 flags.
    assert 5 <= alerts[0].queries <= 15 and alerts[0].value < 1e-6
    flagged, seen = int(foreign[: alerts[0].queries].sum()), alerts[0].queries
    assert f"{flagged} out-of-distribution inputs in {seen}" in alerts[0].message


def test_budget_and_coverage_alerts_name_the_query_that_crossed(digits):
    x, _ = digits
    labels = np.array([0, 0, 1, 1, 2, 3] * 10)
    monitor = ExtractionMonitor(budget=50, coverage=3)
    alerts = feed(monitor, "k", x[:60], labels, batch=7)
    assert [(alert.signal, alert.queries) for alert in alerts] == [("coverage", 5), ("budget", 51)]
    assert monitor.signals("k").classes_seen == 4
    assert ExtractionMonitor().get_params()["budget"] is None  # both off by default


def test_memory_stays_bounded_by_max_history(digits):
    x, y = digits
    monitor = ExtractionMonitor(max_history=120, min_queries=100)
    feed(monitor, "k", x, y, batch=64)
    signals = monitor.signals("k")
    assert signals.distances == 120
    assert signals.growing_set <= 120 * signals.classes_seen
    assert max(grow.size for grow in monitor._keys["k"].sets.values()) <= 120


def test_torch_inputs_and_threads_are_accepted(digits):
    x, y = digits
    monitor = ExtractionMonitor()

    def client(key: str, start: int) -> None:
        for i in range(start, start + 150, 5):
            monitor.observe(key, torch.from_numpy(x[i : i + 5]), torch.from_numpy(y[i : i + 5]),
                            ood=torch.zeros(5, dtype=torch.bool))

    threads = [threading.Thread(target=client, args=(f"key-{k}", 150 * k)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alone = ExtractionMonitor()
    feed(alone, "key-2", x[300:450], y[300:450], batch=5)
    assert monitor.signals("key-2").shapiro_w == alone.signals("key-2").shapiro_w
    assert all(monitor.signals(f"key-{k}").queries == 150 for k in range(4))


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (("", np.zeros((1, 4), np.float32), np.zeros(1, np.int64)), {}, "key_id"),
    (("k", np.zeros(4, np.float32), np.zeros(4, np.int64)), {}, r"\(N, \*shape\)"),
    (("k", np.zeros((2, 4), np.int64), np.zeros(2, np.int64)), {}, "float"),
    (("k", np.full((2, 4), np.nan, np.float32), np.zeros(2, np.int64)), {}, "NaN"),
    (("k", np.zeros((2, 4), np.float32), np.zeros(3, np.int64)), {}, "2 integer labels"),
    (("k", np.zeros((2, 4), np.float32), np.zeros(2, np.float32)), {}, "integer labels"),
    (("k", np.zeros((2, 4), np.float32), np.zeros(2, np.int64)), {"ood": np.zeros(2)}, "booleans"),
    (("k", [[0.0]], [0]), {}, "NumPy array or a torch tensor"),
])
def test_bad_observations_are_refused(args, kwargs, match):
    with pytest.raises(InputError, match=match):
        ExtractionMonitor().observe(*args, **kwargs)


def test_a_key_cannot_change_its_input_shape():
    monitor = ExtractionMonitor()
    monitor.observe("k", np.zeros((1, 4), np.float32), np.zeros(1, np.int64))
    with pytest.raises(InputError, match="reset the key"):
        monitor.observe("k", np.zeros((1, 5), np.float32), np.zeros(1, np.int64))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"shapiro_threshold": 1.5}, "shapiro_threshold"), ({"shapiro_threshold": 0}, "shapiro_threshold"),
    ({"min_queries": 2}, "min_queries"), ({"check_every": 0}, "check_every"),
    ({"max_history": 50}, "max_history must be an integer >= 150"), ({"ood_alpha": 1}, "ood_alpha"),
    ({"ood_rate_expected": -0.1}, "ood_rate_expected"), ({"coverage": 1}, "coverage"), ({"budget": 0}, "budget"),
    ({"budget": 2.5}, "budget"),
])
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        ExtractionMonitor(**kwargs)


def test_an_empty_batch_changes_nothing():
    monitor = ExtractionMonitor()
    assert monitor.observe("k", np.zeros((0, 4), np.float32), np.zeros(0, np.int64), ood=np.zeros(0, bool)) == []
    assert monitor.keys() == [] and monitor.signals("k").queries == 0


class _FakeBlas:
    def __init__(self, threads: int) -> None:
        self.threads, self.reads = threads, 0

    @property
    def num_threads(self) -> int:
        self.reads += 1
        return self.threads

    def set_num_threads(self, threads: int) -> None:
        self.threads = threads


def test_blas_threads_switch_to_one_and_back(monkeypatch):
    from bastion.monitor import extraction

    library = _FakeBlas(4)
    monkeypatch.setattr(extraction, "_blas_libraries", lambda: [library])
    switch = extraction._BlasThreads(recheck_seconds=60.0)
    with switch.one():
        assert library.threads == 1
    assert library.threads == 4
    library.threads = 1  # a server started with one thread: read once, then trusted until the recheck
    with switch.one():
        pass
    reads = library.reads
    with switch.one():
        assert library.threads == 1
    assert library.reads == reads


def test_blas_threads_are_read_again_after_the_recheck_interval(monkeypatch):
    from bastion.monitor import extraction

    library = _FakeBlas(1)
    monkeypatch.setattr(extraction, "_blas_libraries", lambda: [library])
    switch = extraction._BlasThreads(recheck_seconds=0.0)
    with switch.one():
        pass
    library.threads = 3  # raised after the first read: the next block reads again and switches
    with switch.one():
        assert library.threads == 1
    assert library.threads == 3


def test_shapiro_trims_beyond_three_deviations_as_numpy_would():
    from scipy import stats

    from bastion.monitor.extraction import _shapiro

    rng = np.random.default_rng(3)
    window = np.r_[rng.normal(5.0, 1.0, 990), [40.0, 45.0, -30.0], rng.exponential(1.0, 7)]
    kept = window[np.abs(window - window.mean()) <= 3.0 * window.std()]
    assert len(kept) < len(window)
    assert _shapiro(window) == pytest.approx(stats.shapiro(kept).statistic, abs=1e-6)
    assert _shapiro(np.full(8, 2.5)) == 1.0 and _shapiro(np.array([1.0, 2.0])) == 1.0
