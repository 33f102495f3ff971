"""``--engine``, ``--ray-address`` and ``--shards`` on ``bastion scan`` and ``bastion certify``: wrong combinations
are refused with exit code 2 and a message naming the fix, before any model is loaded or Ray is started."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app as cli

MODEL = ["--model", "bastion.models.zoo:digits_cnn", "--data", "digits", "--limit", "10"]


@pytest.mark.parametrize(("arguments", "message"), [
    (["scan", *MODEL, "--engine", "spark"], "--engine is local or ray, got 'spark'"),
    (["scan", *MODEL, "--ray-address", "auto"], "--ray-address and --shards apply to --engine ray"),
    (["scan", *MODEL, "--shards", "2"], "--ray-address and --shards apply to --engine ray"),
    (["scan", *MODEL, "--suite", "extraction", "--engine", "ray"], "not to --suite extraction"),
    (["scan", *MODEL, "--suite", "privacy", "--shards", "2"], "--shards applies to the evasion suites"),
    (["scan", "--endpoint", "http://127.0.0.1:9/v2/models/m", "--data", "digits", "--engine", "ray"],
     "scan a live --endpoint with the local engine"),
    (["certify", *MODEL, "--method", "ibp", "--engine", "ray"], "--engine ray certifies by --method smoothing"),
    (["certify", *MODEL, "--method", "smoothing", "--engine", "spark"], "--engine is local or ray, got 'spark'"),
    (["certify", *MODEL, "--method", "smoothing", "--ray-address", "auto"], "--ray-address applies to --engine ray"),
])
def test_wrong_engine_options_are_refused(arguments, message, tmp_path):
    result = CliRunner().invoke(cli, [*arguments, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
