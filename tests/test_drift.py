"""Drift monitoring: the statistics on synthetic data, windows read from the audit log, the HTML report, and
``bastion monitor report``."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.core.errors import InputError
from bastion.monitor.drift import DriftReport, DriftThresholds, TrafficWindow, drift_report
from bastion.monitor.report import write_drift_report
from bastion.monitor.traffic import count_records, read_window, split_windows
from bastion.monitor.two_sample import chi2_drift, ks_drift, mmd_drift, psi
from bastion.storage.database import open_database
from bastion.storage.tables import AuditInputRow, AuditRecordRow

START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
CLASSES = 4
runner = CliRunner()


# --- synthetic traffic -----------------------------------------------------------------------------------


def window(rng: np.random.Generator, n: int, *, shift: float = 0.0, weights: list[float] | None = None,
           sure: float = 8.0, label: str = "window", features: int = 16) -> TrafficWindow:
    """``n`` Gaussian inputs (the first 4 features moved by ``shift``), classes drawn with ``weights``,
    confidence ``0.25 + 0.75 * Beta(sure, 2)`` (lower ``sure``: a less confident model)."""
    inputs = rng.normal(size=(n, features))
    inputs[:, :4] += shift
    predicted = rng.choice(CLASSES, size=n, p=weights or [1 / CLASSES] * CLASSES)
    confidence = 0.25 + 0.75 * rng.beta(sure, 2.0, size=n)
    return TrafficWindow(inputs, confidence, predicted, CLASSES, label)


def requests(rng: np.random.Generator, count: int, *, per_request: int = 4, shift: float = 0.0,
             weights: list[float] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` requests of ``per_request`` 1x8x8 images in [0, 1] (plus ``shift``) and their (n, 4) softmax."""
    logged = []
    for _ in range(count):
        x = np.clip(rng.random((per_request, 1, 8, 8)) + shift, 0, 1.5).astype(np.float32)
        logits = rng.normal(size=(per_request, CLASSES))
        logits[np.arange(per_request), rng.choice(CLASSES, size=per_request, p=weights or [0.25] * 4)] += 3.0
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        logged.append((x, probabilities))
    return logged


def log_requests(session: Session, logged: list[tuple[np.ndarray, np.ndarray | None]], *, model: str = "digits",
                 decision: str = "answer", start: datetime = START) -> None:
    """Add gateway audit rows for ``logged`` (input, probabilities) pairs, one minute apart from ``start``
    plus their sequence number. Hashes are plausible, not chained: reading does not check the chain."""
    last = session.scalar(select(func.max(AuditRecordRow.seq))) or 0
    for offset, (x, probabilities) in enumerate(logged, start=1):
        seq = last + offset
        x = np.ascontiguousarray(x)
        digest = hashlib.sha256(f"{x.dtype.str}:{list(x.shape)}:".encode() + x.tobytes()).hexdigest()
        if session.get(AuditInputRow, digest) is None:
            session.add(AuditInputRow(sha256=digest, dtype=x.dtype.str, shape=list(x.shape), data=x.tobytes()))
        request_id = f"req_{seq:016x}"
        session.add(AuditRecordRow(
            seq=seq, request_id=request_id, time=start + timedelta(minutes=seq), key_id="key_0", model=model,
            model_version="1", model_sha256=None, policy_sha256="0" * 64, input_sha256=digest, scores={},
            probabilities=None if probabilities is None else probabilities.tolist(), response={}, decision=decision,
            status=200 if decision != "refuse" else 403, review_id=None, prev_hash="0" * 64,
            entry_hash=hashlib.sha256(request_id.encode()).hexdigest()))
    session.flush()


@pytest.fixture
def session(tmp_path: Path):
    with open_database("sqlite://", home=tmp_path) as database, database.transaction() as opened:
        yield opened


# --- the statistics --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_unchanged_traffic_raises_no_alert(seed: int) -> None:
    rng = np.random.default_rng(seed)
    report = drift_report(window(rng, 300, label="before"), window(rng, 200, label="after"))
    assert report.alerts == [], report.alerts
    assert not report.drifted and report.drifted_features == []
    assert [test.name for test in report.tests] == ["ks", "chi2", "mmd", "psi"]


@pytest.mark.parametrize(("change", "fires"), [
    ({"shift": 0.6}, {"ks", "mmd"}),
    ({"weights": [0.1, 0.1, 0.1, 0.7]}, {"chi2"}),
    ({"sure": 1.5}, {"psi"}),
])
def test_each_kind_of_drift_fires_its_test(change: dict, fires: set[str]) -> None:
    rng = np.random.default_rng(7)
    report = drift_report(window(rng, 300), window(rng, 200, **change))
    assert {test.name for test in report.tests if test.alert} == fires
    assert len(report.alerts) == len(fires)


def test_ks_names_the_shifted_features_only() -> None:
    rng = np.random.default_rng(1)
    result = ks_drift(window(rng, 400).inputs, window(rng, 400, shift=0.8).inputs)
    assert set(result.drifted) == {0, 1, 2, 3}
    assert result.min_p_value < 1e-6 and result.drift
    assert result.p_values.max() <= 1.0  # Bonferroni-corrected, capped


def test_mmd_sees_a_joint_change_that_no_single_feature_shows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 1))
    reference = np.hstack([x, x + 0.1 * rng.normal(size=(300, 1))])
    y = rng.normal(size=(300, 1))
    current = np.hstack([y, -y + 0.1 * rng.normal(size=(300, 1))])  # same marginals, correlation flipped
    assert not ks_drift(reference, current).drift
    result = mmd_drift(reference, current, seed=3)
    assert result.drift and result.p_value == pytest.approx(1 / 201)
    assert mmd_drift(reference, current, seed=3) == result  # deterministic for a seed


def test_mmd_subsamples_to_max_points() -> None:
    rng = np.random.default_rng(0)
    result = mmd_drift(rng.normal(size=(500, 3)), rng.normal(size=(400, 3)), max_points=100, permutations=100)
    assert (result.reference_points, result.current_points) == (100, 100)
    assert not result.drift


def test_chi2_handles_empty_classes() -> None:
    reference = np.repeat([0, 1], 50)
    unchanged = chi2_drift(reference, np.repeat([0, 1], 30), num_classes=10)
    assert unchanged.dof == 1 and unchanged.p_value == pytest.approx(1.0)  # the 8 unused classes are left out
    new_class = chi2_drift(reference, np.repeat([0, 1, 5], 20), num_classes=10)
    assert new_class.drift and new_class.current_counts[5] == 20
    one_class = chi2_drift(np.zeros(30, dtype=int), np.zeros(30, dtype=int), num_classes=3)
    assert (one_class.statistic, one_class.p_value, one_class.drift) == (0.0, 1.0, False)


def test_psi_bins_by_reference_quantiles_and_survives_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    same = psi(scores, rng.random(1000))
    assert same.value < 0.05 and same.level == "stable" and len(same.reference_share) == 10
    moved = psi(scores, rng.random(1000) * 0.5)
    assert moved.level == "alert" and moved.value > 0.25 and moved.p_value < 0.01
    ties = psi(np.r_[np.ones(600), rng.random(400)], np.r_[np.ones(100), rng.random(900)])
    assert np.isfinite(ties.value) and ties.level == "alert"  # the point mass at 1 is a bin of its own


def test_psi_in_tiny_windows_is_noise_not_an_alert() -> None:
    rng = np.random.default_rng(2)
    report = drift_report(window(rng, 20), window(rng, 20))
    psi_test = report.tests[3]
    assert psi_test.statistic > 0.25 and not psi_test.alert  # small windows inflate the PSI
    assert "noise" in psi_test.detail


@pytest.mark.parametrize(("reference", "current", "message"), [
    (np.zeros((0, 3)), np.zeros((30, 3)), "has 0 instance"),
    (np.zeros((10, 3)), np.zeros((30, 3)), "at least 20"),
    (np.zeros((30, 3)), np.zeros((30, 4)), "3 features per input, the current one 4"),
])
def test_drift_report_refuses_windows_it_cannot_compare(reference, current, message) -> None:
    def make(inputs: np.ndarray, label: str) -> TrafficWindow:
        n = len(inputs)
        return TrafficWindow(inputs, np.full(n, 0.9), np.zeros(n, dtype=int), CLASSES, label)

    with pytest.raises(InputError, match=message) as raised:
        drift_report(make(reference, "monday"), make(current, "tuesday"))
    assert "monday" in str(raised.value) or "current" in str(raised.value)


def test_bad_arrays_and_settings_are_input_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="NaN"):
        ks_drift(np.full((5, 2), np.nan), rng.normal(size=(5, 2)))
    with pytest.raises(InputError, match="at least 100"):
        mmd_drift(rng.normal(size=(30, 2)), rng.normal(size=(30, 2)), permutations=50)
    with pytest.raises(InputError, match="alpha"):
        ks_drift(rng.normal(size=(30, 2)), rng.normal(size=(30, 2)), alpha=1.5)
    with pytest.raises(InputError, match=r"\[0, 4\)"):
        TrafficWindow(np.zeros((3, 2)), np.ones(3), np.array([0, 1, 4]), 4, "w")
    with pytest.raises(InputError, match="3 inputs, 2 confidences"):
        TrafficWindow(np.zeros((3, 2)), np.ones(2), np.zeros(3, dtype=int), 4, "w")
    with pytest.raises(ValueError, match="psi_watch"):
        DriftThresholds(psi_watch=0.3, psi_alert=0.2)
    with pytest.raises(ValueError, match="at least 1000"):
        DriftThresholds(alpha=0.001)


# --- windows from the audit log ----------------------------------------------------------------------------


def test_read_window_decodes_logged_requests(session: Session) -> None:
    rng = np.random.default_rng(0)
    logged = requests(rng, 5, per_request=3)
    log_requests(session, logged)
    log_requests(session, requests(rng, 2), decision="refuse")  # refused: not what the model answered
    log_requests(session, [(logged[0][0], None)], decision="error")  # no probabilities
    log_requests(session, requests(rng, 2), model="other")

    current = read_window(session, model="digits")
    assert len(current) == 15 and current.num_features == 64 and current.sample_shape == (1, 8, 8)
    expected = np.concatenate([x for x, _ in logged]).reshape(15, 64)
    np.testing.assert_array_equal(current.inputs, expected)
    probabilities = np.concatenate([p for _, p in logged])
    np.testing.assert_allclose(current.confidence, probabilities.max(axis=1))
    np.testing.assert_array_equal(current.predicted, probabilities.argmax(axis=1))
    assert current.num_classes == CLASSES and current.model == "digits"
    assert current.label.startswith("requests 1-5, 2026-11-20 08:01")
    assert count_records(session, model="digits") == 5


def test_read_window_by_time_and_limit(session: Session) -> None:
    log_requests(session, requests(np.random.default_rng(0), 10, per_request=1))
    timed = read_window(session, model="digits", since=START + timedelta(minutes=3),
                        until=(START + timedelta(minutes=6)).replace(tzinfo=None))  # naive: UTC
    assert timed.label.startswith("requests 3-5,")
    newest = read_window(session, model="digits", limit=2, newest=True)
    assert newest.label.startswith("requests 9-10,")
    with pytest.raises(InputError, match="no logged predictions for model 'digits' from 2026-11-21"):
        read_window(session, model="digits", since=START + timedelta(days=1), name="current")


def test_read_window_wants_one_model_and_one_shape(session: Session) -> None:
    rng = np.random.default_rng(0)
    log_requests(session, requests(rng, 2))
    log_requests(session, requests(rng, 2), model="other")
    with pytest.raises(InputError, match="2 models .*pass --model"):
        read_window(session, model=None)
    log_requests(session, [(np.zeros((1, 10), dtype=np.float32), np.full((1, CLASSES), 0.25))])
    with pytest.raises(InputError, match="mixes input shapes"):
        read_window(session, model="digits")


def test_split_windows_takes_first_and_last_without_overlap(session: Session) -> None:
    log_requests(session, requests(np.random.default_rng(0), 9, per_request=2))
    reference, current = split_windows(session, model="digits")
    assert reference.label.startswith("requests 1-4,") and current.label.startswith("requests 6-9,")
    reference, current = split_windows(session, model="digits", reference_first=6, current_last=3)
    assert (len(reference), len(current)) == (12, 6)
    with pytest.raises(InputError, match="6 \\+ 4 records but the audit log holds 9"):
        split_windows(session, model="digits", reference_first=6, current_last=4)


# --- the HTML report -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_shape", [(1, 4, 4), None])
def test_report_writes_html_with_plots_and_json(tmp_path: Path, sample_shape) -> None:
    rng = np.random.default_rng(0)
    base, moved = window(rng, 200, label="week 1"), window(rng, 100, shift=1.0, label="week 2")
    reference = TrafficWindow(base.inputs, base.confidence, base.predicted, CLASSES, "week 1", sample_shape, "m")
    current = TrafficWindow(moved.inputs, moved.confidence, moved.predicted, CLASSES, "week 2", sample_shape, "m")
    report = drift_report(reference, current)
    html = write_drift_report(report, reference, current, tmp_path / "out")

    assert html == tmp_path / "out" / "drift.html"
    page = html.read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert "DRIFT" in page and "week 1" in page and "Kolmogorov" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    saved = DriftReport.model_validate_json((tmp_path / "out" / "drift.json").read_text())
    assert saved.alerts == report.alerts and saved.drifted_features == report.drifted_features


# --- bastion monitor report ----------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bastion home whose audit log holds 40 stable requests, then 40 drifted ones."""
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    rng = np.random.default_rng(0)
    with open_database(home=tmp_path / "home") as database, database.transaction() as opened:
        log_requests(opened, requests(rng, 40) + requests(rng, 40))
        log_requests(opened, requests(rng, 40, shift=0.3, weights=[0.1, 0.1, 0.1, 0.7]))
    return tmp_path / "home"


def monitor(*args: str):
    return runner.invoke(app, ["monitor", "report", *args])


def test_cli_reports_no_drift_on_stable_traffic(home: Path, tmp_path: Path) -> None:
    # requests 1-40 against 41-80 (logged 08:41 to 09:20 UTC); the drifted ones come after
    result = monitor("--home", str(home), "--model", "digits", "--reference-until", "2026-11-20T08:41",
                     "--current-since", "2026-11-20T08:41", "--current-until", "2026-11-20T10:21+01:00",
                     "--out", str(tmp_path / "stable"), "--fail-on-alert")
    assert result.exit_code == 0, result.output
    assert "no drift detected" in result.output and "drift.html" in result.output
    assert (tmp_path / "stable" / "drift.html").is_file()


def test_cli_fails_on_alert_only_when_asked(home: Path, tmp_path: Path) -> None:
    args = ["--home", str(home), "--reference-first", "40", "--current-last", "40", "--out", str(tmp_path / "r")]
    result = monitor(*args)
    assert result.exit_code == 0, result.output
    assert "ALERT" in result.output and "predicted classes" in result.output
    assert json.loads((tmp_path / "r" / "drift.json").read_text())["alerts"]
    result = monitor(*args, "--fail-on-alert")
    assert result.exit_code == 1, result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--current-since", "yesterday"], "--current-since must be an ISO time"),
    (["--reference-until", "2026-11-21T00:00"], "the current window has no logged predictions"),
    (["--reference-until", "2026-11-20T09:00", "--current-since", "2026-11-20T08:30"], "the windows overlap"),
    (["--reference-first", "100", "--current-last", "50"], "ask for at most 120"),
    (["--model", "absent"], "no logged predictions of model 'absent' in the audit log (models logged: digits)"),
    (["--model", "absent", "--reference-until", "2026-11-20T08:41"], "(models logged: digits)"),
    *[(["--alpha", alpha], f"--alpha must be a number strictly between 0 and 1, such as 0.01; got {alpha}")
      for alpha in ("nan", "inf", "-inf", "0", "1", "-0.5", "2")],
])
def test_cli_bad_arguments_exit_2(home: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = monitor("--home", str(home), "--out", str(tmp_path / "bad" / "drift"), *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "bad").exists(), "a failed run left its new --out folders behind"


@pytest.mark.parametrize(("args", "message"), [
    (["--reference-first", "30", "--reference-since", "2026-11-20T08:00"],
     "--reference-first and --reference-since are two ways of choosing the reference window"),
    (["--reference-first", "30", "--reference-since", "2026-11-20T08:00", "--reference-until", "2026-11-20T09:00"],
     "--reference-first and --reference-since/--reference-until are two ways"),
    (["--current-last", "5", "--current-until", "2026-11-20T10:00"],
     "--current-last and --current-until are two ways of choosing the current window"),
])
def test_cli_refuses_a_window_chosen_by_count_and_by_time(home: Path, tmp_path: Path, args: list[str],
                                                          message: str) -> None:
    result = monitor("--home", str(home), "--out", str(tmp_path / "both"), *args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1
    assert message in result.output and "not both" in result.output


@pytest.mark.parametrize(("count", "per_request", "needed"), [(30, 1, 40), (9, 3, 14)])
def test_too_small_windows_say_how_many_requests_to_log(session: Session, count: int, per_request: int,
                                                        needed: int) -> None:
    log_requests(session, requests(np.random.default_rng(0), count, per_request=per_request))
    reference, current = split_windows(session, model="digits")
    assert reference.requests == count // 2
    with pytest.raises(InputError, match="drift tests need at least 20 in each window") as raised:
        drift_report(reference, current)
    message = str(raised.value)
    assert f"at least {needed} logged requests in all" in message and f"these windows hold {count // 2 * 2}" in message
    assert f"windows of at least {needed // 2} requests each (--reference-first N --current-last M" in message


def test_cli_without_a_store_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    result = monitor("--home", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no bastion store" in result.output
