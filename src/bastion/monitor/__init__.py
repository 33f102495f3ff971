"""Production monitoring: per-key extraction signals (PRADA, OOD rate, coverage, budget), and drift of the
traffic against a reference window (``drift_report`` on ``TrafficWindow``s read from the audit log by
``read_window``/``split_windows``; ``bastion.monitor.report.write_drift_report`` renders it)."""

from bastion.monitor.drift import DriftReport, DriftTest, DriftThresholds, TrafficWindow, drift_report
from bastion.monitor.extraction import ExtractionAlert, ExtractionMonitor, KeySignals
from bastion.monitor.traffic import read_window, split_windows
from bastion.monitor.two_sample import chi2_drift, ks_drift, mmd_drift, psi

__all__ = [
    "DriftReport", "DriftTest", "DriftThresholds", "ExtractionAlert", "ExtractionMonitor", "KeySignals",
    "TrafficWindow", "chi2_drift", "drift_report", "ks_drift", "mmd_drift", "psi", "read_window", "split_windows",
]
