"""Static scans of model files for code they would run when loaded (malicious pickles), without loading them.

``scan_artifact(path)`` reads pickle, joblib, torch (zip and legacy), TorchScript, ``.npy``/``.npz``,
safetensors and skops files; it walks pickle opcodes with ``pickletools`` and never unpickles or imports.
The layers: :mod:`~bastion.artifacts.headers` (format signatures, ``.npy``/safetensors headers),
:mod:`~bastion.artifacts.machine` (the symbolic pickle stack), :mod:`~bastion.artifacts.policy` (which
imports are dangerous), :mod:`~bastion.artifacts.pickle_scan` (one pickle stream) and
:mod:`~bastion.artifacts.scanner` (files and archives).
"""

from __future__ import annotations

from bastion.artifacts.findings import ArtifactScan, Finding, FindingKind, Severity
from bastion.artifacts.policy import classify_import
from bastion.artifacts.scanner import scan_artifact, scan_bytes

__all__ = ["ArtifactScan", "Finding", "FindingKind", "Severity", "classify_import", "scan_artifact", "scan_bytes"]
