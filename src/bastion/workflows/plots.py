"""Figures of the harden and certify reports (PNG bytes, drawn off-screen like the scan's)."""

from __future__ import annotations

from typing import Any

from bastion.core.evidence import CertifyRecord
from bastion.scan.report._common import norm_symbol
from bastion.scan.report.plots import _new_figure, _percent_formatter, _to_png


def certified_curve_plot(record: CertifyRecord) -> bytes:
    """Certified accuracy against radius, with clean (and robust, when measured) accuracy as references."""
    figure = _new_figure(width=7.0, height=3.6)
    axes = figure.add_subplot(1, 1, 1)
    points = sorted(record.curve, key=lambda point: point.radius)
    axes.plot([p.radius for p in points], [p.certified_accuracy for p in points], color="#1f3a93",
              linewidth=2.4, marker="o", label="certified accuracy")
    axes.axhline(record.clean_accuracy, color="#2e7d32", linewidth=1.4, label="clean accuracy")
    if record.robust_accuracy is not None:
        axes.scatter([record.config.radius], [record.robust_accuracy], color="#c62828", zorder=3,
                     label="accuracy under attack")
    axes.axvline(record.config.radius, color="#5b6475", linestyle=":", linewidth=1.0)
    axes.set_xlabel(f"radius ({norm_symbol(record.config.norm)})")
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.yaxis.set_major_formatter(_percent_formatter())
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    return _to_png(figure)


def training_history_plot(history: list[dict[str, Any]]) -> bytes | None:
    """Training loss and, where recorded, validation clean/robust accuracy per epoch; ``None`` without history."""
    if not history:
        return None
    validated = [(key, label, color) for key, label, color in (("val_clean", "validation clean", "#2e7d32"),
                                                                ("val_robust", "validation robust", "#c62828"))
                 if any(entry.get(key) is not None for entry in history)]
    figure = _new_figure(width=7.0 if validated else 3.8, height=3.6)
    loss_axes = figure.add_subplot(1, 2 if validated else 1, 1)
    epochs = [entry.get("epoch", i + 1) for i, entry in enumerate(history)]
    loss_axes.plot(epochs, [entry.get("loss") for entry in history], marker=".", color="#1f3a93")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("training loss")
    loss_axes.grid(True, alpha=0.3)
    if validated:
        accuracy_axes = figure.add_subplot(1, 2, 2)
        for key, label, color in validated:
            accuracy_axes.plot(epochs, [entry.get(key) for entry in history], marker=".", color=color, label=label)
        accuracy_axes.set_xlabel("epoch")
        accuracy_axes.set_ylim(-0.02, 1.02)
        accuracy_axes.yaxis.set_major_formatter(_percent_formatter())
        accuracy_axes.grid(True, alpha=0.3)
        accuracy_axes.legend(loc="best", fontsize="small")
    return _to_png(figure)
