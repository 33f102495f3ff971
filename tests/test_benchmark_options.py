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
