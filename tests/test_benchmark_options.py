"""The benchmark scripts refuse bad options before any work, with the reason (argparse's exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("script", ["text_guard.py", "text_guard_padding.py"])
@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_a_long_threshold_outside_zero_to_one_is_refused(script, value):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--long-threshold", value],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "--long-threshold must be strictly between 0 and 1" in result.stderr


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")
def test_the_gateway_benchmark_reads_a_process_cpu_time():
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location("gateway_benchmark", BENCHMARKS / "gateway.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = module.server_cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))  # some CPU work
    after = module.server_cpu_seconds(os.getpid())
    assert before is not None and after is not None and 0 <= before <= after
    assert module.server_cpu_seconds(2**22 + 12345) is None  # no such process
