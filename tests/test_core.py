"""Core contracts: threat model validation, keyed randomness, sample ids, the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from bastion.core.errors import ConfigError, InputError
from bastion.core.ids import keys_from_ids, sample_id, sample_ids
from bastion.core.registry import Registry
from bastion.core.seeding import derive_seed, keyed_normal, keyed_randint, keyed_uniform
from bastion.core.threat import ThreatModel, access_allows, weakest_access


@pytest.mark.parametrize("eps", [-0.1, math.nan, math.inf])
def test_threat_model_rejects_bad_eps(eps):
    with pytest.raises(ValidationError, match="eps must be a finite number >= 0"):
        ThreatModel(eps=eps)


def test_threat_model_rejects_unordered_bounds():
    with pytest.raises(ValidationError, match="low < high"):
        ThreatModel(eps=0.1, bounds=(1.0, 0.0))


def test_threat_model_rejects_unknown_norm_and_access():
    with pytest.raises(ValidationError):
        ThreatModel(eps=0.1, norm="l1")
    with pytest.raises(ValidationError):
        ThreatModel(eps=0.1, access="grey")


def test_access_order():
    assert access_allows("white", "labels") and not access_allows("labels", "scores")
    assert weakest_access("white", "scores") == "scores"


def test_keyed_randomness_depends_only_on_the_key():
    keys = torch.tensor([5, 17, 2**61 + 3, 42])
    full = keyed_uniform(keys, seed=3, stream=1, shape=(4, 5))
    subset = keyed_uniform(keys[[3, 1]], seed=3, stream=1, shape=(4, 5))
    assert torch.equal(full[[3, 1]], subset)
    assert not torch.equal(full, keyed_uniform(keys, seed=4, stream=1, shape=(4, 5)))
    assert not torch.equal(full, keyed_uniform(keys, seed=3, stream=2, shape=(4, 5)))


def test_keyed_distributions_look_right():
    keys = torch.arange(2000)
    u = keyed_uniform(keys, seed=0, stream=0, shape=(50,))
    assert 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    z = keyed_normal(keys, seed=0, stream=0, shape=(50,))
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    r = keyed_randint(keys, seed=0, stream=0, high=7)
    assert set(r.tolist()) == set(range(7))


def test_sample_ids_are_content_hashes():
    x = np.zeros((2, 3), dtype=np.float32)
    x[1, 0] = 1
    ids = sample_ids(x, np.array([0, 0]))
    assert ids[0] == sample_id(x[0], 0) and ids[0] != ids[1]
    assert sample_id(x[0], 1) != ids[0], "the label is part of the id"
    assert keys_from_ids(ids).dtype == torch.int64 and int(keys_from_ids(ids).min()) >= 0


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "pgd") == derive_seed(0, "pgd") != derive_seed(0, "fgsm")


def test_registry_names_unknown_entries():
    registry: Registry[object] = Registry("widget")
    registry.register("a")(object)
    with pytest.raises(ConfigError, match="unknown widget 'b'; known: a"):
        registry.create("b")
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("a")(object)


def test_core_exports_its_names_lazily_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys, bastion.core as core, bastion.core.errors, bastion.core.ids\n"
            "assert 'torch' not in sys.modules, 'bastion.core.errors or ids imported torch'\n"
            "assert core.InputError is bastion.core.errors.InputError and 'torch' not in sys.modules\n"
            "assert core.ScanRecord.__name__ == 'ScanRecord' and 'torch' in sys.modules\n"
            "assert set(core.__all__) <= set(dir(core))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import bastion.core as core

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        core.Nope  # noqa: B018


def test_sample_ids_of_unequal_lengths_say_so():
    with pytest.raises(InputError, match="x has 3 samples but y has 2 labels"):
        sample_ids(np.zeros((3, 2)), np.array([0, 1]))


def test_sample_ids_take_tensors_and_arrays_alike():
    x = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32)
    y = np.array([0, 1, 2])
    assert sample_ids(torch.from_numpy(x), torch.from_numpy(y)) == sample_ids(x, y) == [
        sample_id(x[i], int(y[i])) for i in range(3)]
