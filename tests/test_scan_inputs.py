"""The Python API's inputs to a scan: ``Dataset`` from arrays, ``ScanSettings`` and ``run_scan``'s argument types."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.data.sources import Dataset
from bastion.models.loading import LoadedModel
from bastion.models.torch_adapter import TorchClassifier
from bastion.scan.runner import ScanSettings, run_scan


def _arrays(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random ``(4,)`` rows in [0, 1] and labels cycling over 3 classes."""
    x = np.random.default_rng(0).random((n, 4)).astype(np.float32)
    return x, np.arange(n, dtype=np.int64) % 3


def _loaded() -> LoadedModel:
    """An untrained 3-class linear model on ``(4,)`` rows: enough to check what a scan accepts."""
    torch.manual_seed(0)
    return LoadedModel(TorchClassifier(nn.Linear(4, 3), (4,), 3), "linear", None, "torch")


# --- Dataset --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "class_names", "message"),
    [
        (np.arange(12) % 3 + 0.7, [], r"labels must be integers \(class indices\); sample 0 has label 0\.7"),
        (np.arange(11) % 3, [], "x has 12 samples but y has 11 labels"),
        (np.array(["a", "b", "c"] * 4), [], "integer class indices 0..K-1; got strings such as 'a'"),
        (np.arange(12) % 3 - 1, [], "labels must be >= 0; sample 0 has label -1"),
        ((np.arange(12) % 3).reshape(6, 2), [], r"shape \(N,\)"),
        (np.arange(12) % 3, ["a", "b"], "2 class names given but labels go up to 2"),
        (np.arange(12) % 3, "abc", "class_names is a list of names"),
    ],
)
def test_a_dataset_refuses_labels_that_are_not_class_indices(y, class_names, message):
    x, _ = _arrays()
    with pytest.raises(InputError, match=message):
        Dataset(x=x, y=y, class_names=class_names, description="")


def test_a_dataset_from_arrays_takes_whole_float_labels_and_names_its_classes():
    x, y = _arrays()
    data = Dataset(x=x, y=y.astype(np.float64))
    assert data.y.dtype == np.int64 and np.array_equal(data.y, y)
    assert data.class_names == ["0", "1", "2"] and "12 samples" in data.description
    assert data.subset(slice(0, 2)).class_names == ["0", "1", "2"]
    assert Dataset(x=x, y=y, class_names=["a", "b", "c", "d"]).class_names == ["a", "b", "c", "d"]


def test_float_labels_are_refused_before_a_scan_can_truncate_them():
    x, y = _arrays()
    with pytest.raises(InputError, match="labels must be integers"):
        run_scan(_loaded(), Dataset(x=x, y=y + 0.7, class_names=["a", "b", "c"], description="d"),
                 ScanSettings(eps=[0.1], attacks=["fgsm"]))


# --- ScanSettings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"eps": "0.1"}, r"eps is a list of numbers, e\.g\. eps=\[0\.1\].*got the string '0\.1'"),
        ({"eps": []}, "give at least one eps"),
        ({"eps": [0.1, -0.1]}, "eps must be a finite number >= 0, got -0.1"),
        ({"eps": [float("inf")]}, "eps must be a finite number >= 0"),
        ({"eps": ["0.1"]}, "eps must be a finite number >= 0, got '0.1'"),
        ({"attacks": "fgsm"}, r"attacks is a list of attack names, e\.g\. attacks=\['fgsm'\].*got 'fgsm'"),
        ({"attacks": []}, r"attacks=\[\] names no attack.*attacks=None to run the suite's attacks"),
        ({"attacks": ["fgsm", ""]}, "attacks holds attack names"),
        ({"access": "black"}, "access must be one of 'white', 'scores', 'labels' .*got 'black'"),
        ({"norm": "l1"}, "norm must be one of 'linf', 'l2'; got 'l1'"),
        ({"examples": -1}, r"examples must be >= 0 \(a whole number\), got -1"),
        ({"seed": -1}, r"seed must be >= 0 \(a whole number\), got -1"),
        ({"seed": 1.5}, r"seed must be >= 0 \(a whole number\), got 1\.5"),
        ({"batch_size": 0}, r"batch size must be >= 1 \(a whole number\), got 0"),
        ({"fail_under": 60}, r"robust accuracy in \[0, 1\], got 60"),
    ],
)
def test_scan_settings_refuse_mistakes_when_built(changes, message):
    with pytest.raises(InputError, match=message):
        ScanSettings(**{"eps": [0.1], **changes})


def test_scan_settings_take_a_single_eps_as_a_one_element_list():
    assert ScanSettings(eps=0.1).eps == [0.1]
    assert ScanSettings(eps=np.float32(0.25)).eps == [0.25]
    settings = ScanSettings(eps=(0, 0.1), attacks=("fgsm",), access="labels", seed=np.int64(3))
    assert settings.eps == [0.0, 0.1] and settings.attacks == ["fgsm"] and settings.access == "labels"


def test_a_scan_with_a_single_eps_runs_and_records_it():
    x, y = _arrays()
    outcome = run_scan(_loaded(), Dataset(x=x, y=y), ScanSettings(eps=0.1, attacks=["fgsm"], examples=0))
    assert outcome.record.config.eps == [0.1] and outcome.record.config.attacks == ["fgsm"]
    assert len(outcome.record.results) == 1


# --- run_scan's argument types --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data", "got"),
    [
        (lambda: _loaded(), lambda: _arrays(), "got tuple as the dataset"),
        (lambda: _loaded().classifier.module, lambda: Dataset(*_arrays()), "got torch.nn.modules.linear.Linear as "
                                                                           "the model"),
        (lambda: LoadedModel(nn.Linear(4, 3), "m", None, "torch"), lambda: Dataset(*_arrays()),
         "a LoadedModel around torch.nn.modules.linear.Linear, which is not a bastion Classifier"),
    ],
)
def test_run_scan_says_what_to_pass_for_the_wrong_types(model, data, got):
    with pytest.raises(TypeError, match="run_scan takes a LoadedModel from bastion.models.loading.load_classifier") \
            as caught:
        run_scan(model(), data(), ScanSettings(eps=[0.1], attacks=["fgsm"]))
    assert got in str(caught.value) and "Dataset(x=..., y=...)" in str(caught.value)
