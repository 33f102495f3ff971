"""Shared fixtures: a small CNN trained once per test session on scikit-learn's digits; the benchmark scripts."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from bastion.defenses.training import train_classifier
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import digits_cnn


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The test models are tiny: one thread is fastest and does not crawl on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """A loader of a script of ``benchmarks/`` (not a package) as a module, by its file name; the folder is on
    ``sys.path`` while it loads, as when the script is run, for the siblings it imports."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / name
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        return module

    return load


@pytest.fixture(scope="session")
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as ``(N, 1, 8, 8)`` float32 in [0, 1] and int64 labels."""
    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), digits.target.astype(np.int64)


@pytest.fixture(scope="session")
def digits_model(digits_arrays) -> TorchClassifier:
    """``digits_cnn`` trained on the first 1200 digits (about 97% test accuracy)."""
    x, y = digits_arrays
    torch.manual_seed(0)
    model = TorchClassifier(digits_cnn(), (1, 8, 8), 10)
    train_classifier(model, x[:1200], y[:1200], epochs=10, seed=0)
    return model


@pytest.fixture(scope="session")
def digits_test(digits_arrays) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 200 held-out digits as tensors."""
    x, y = digits_arrays
    return torch.from_numpy(x[1200:1400]), torch.from_numpy(y[1200:1400])


@pytest.fixture(scope="session")
def fast_params() -> dict[str, dict[str, object]]:
    """Per registered attack, parameters small enough for a unit test (a row per attack)."""
    return {
        "fgsm": {},
        "pgd": {"steps": 10},
        "apgd-ce": {"iterations": 20},
        "apgd-t": {"iterations": 20, "n_target_classes": 3},
        "cw-l2": {"binary_search_steps": 3, "steps": 30, "initial_const": 1.0, "lr": 0.05},
        "square": {"queries": 200},
        "hopskipjump": {"iterations": 8, "initial_evals": 30, "max_evals": 200},
    }


@pytest.fixture(scope="session")
def digits_weights(digits_model, tmp_path_factory) -> str:
    """``digits_model``'s weights as a safetensors file, for the CLI's ``--weights``."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "digits.safetensors"
    save_file({k: v.contiguous() for k, v in digits_model.module.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, through Playwright); the test skips with the reason when it is missing."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        pytest.skip(f"playwright is not installed: {error}")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        except Error as error:
            pytest.skip(f"Playwright cannot launch {chromium}: {error}")
        yield launched
        launched.close()
