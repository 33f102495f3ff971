"""Figures of the privacy and extraction reports (PNG bytes, drawn off-screen like the scan's)."""

from __future__ import annotations

import numpy as np

from bastion.attacks.inference import MembershipResult
from bastion.scan.report.plots import _new_figure, _percent_formatter, _show, _to_display, _to_png, is_image_batch
from bastion.workflows.privacy_records import ExtractionScanRecord, InversionRecord

#: Reconstructions drawn per row of the inversion grid.
INVERSION_COLUMNS = 10
#: At most this many classes are drawn; the JSON record holds every reconstruction.
MAX_INVERSION_IMAGES = 40
_COLOURS = ("#1f3a93", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f")


def roc_plot(results: list[MembershipResult]) -> bytes:
    """ROC curves of membership attacks on log-log axes, with the chance diagonal and the 1% and 0.1% FPR marks.

    Log axes show the low false-positive end, where privacy is lost (Carlini et al. 2022). Points at
    FPR or TPR 0 cannot be drawn on a log axis: the x axis starts at half the smallest non-zero FPR
    that ``M`` non-members allow (``1 / M``).
    """
    figure = _new_figure(width=5.6, height=4.4)
    axes = figure.add_subplot(1, 1, 1)
    smallest = min((1.0 / max(result.non_members, 1) for result in results), default=1e-3)
    low = min(smallest / 2, 5e-4)
    grid = np.logspace(np.log10(low), 0, 50)
    axes.plot(grid, grid, color="#5b6475", linestyle=":", linewidth=1.0, label="chance")
    for colour, result in zip(_COLOURS, results, strict=False):
        fpr, tpr = np.asarray(result.fpr), np.asarray(result.tpr)
        drawn = tpr > 0  # members found at zero false positives are drawn from the left edge
        axes.step(np.maximum(fpr[drawn], low), tpr[drawn], where="post", color=colour, linewidth=2.0,
                  label=f"{result.attack} (AUC {result.auc:.3f}, TPR@1% {result.tpr_at_1pct:.1%})")
    for mark in (0.01, 0.001):
        axes.axvline(mark, color="#9aa3b5", linewidth=0.8, linestyle="--")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, 1.0)
    axes.set_ylim(low, 1.05)
    axes.set_xlabel("false-positive rate (non-members called members)")
    axes.set_ylabel("true-positive rate (members found)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small", framealpha=0.9)
    return _to_png(figure)


def inversion_plot(inversion: InversionRecord, class_names: list[str], bounds: tuple[float, float]) -> bytes | None:
    """One MI-Face reconstruction per class with its name and the model's confidence; ``None`` for non-images."""
    images = np.asarray(inversion.reconstructions, dtype=np.float32)[:MAX_INVERSION_IMAGES]
    if not len(images) or not is_image_batch(images):
        return None
    shown = _to_display(images, bounds)
    columns = min(INVERSION_COLUMNS, len(shown))
    rows = -(-len(shown) // columns)
    figure = _new_figure(width=1.15 * columns + 0.4, height=1.45 * rows + 0.2)
    axes = figure.subplots(rows, columns, squeeze=False)
    for position, cell in enumerate(axes.flat):
        if position >= len(shown):
            cell.set_axis_off()
            continue
        label = inversion.classes[position]
        name = class_names[label] if label < len(class_names) else str(label)
        _show(cell, shown[position], f"{name[:12]}\np={inversion.confidences[position]:.3f}")
    return _to_png(figure)


def extraction_curve_plot(record: ExtractionScanRecord) -> bytes:
    """Fidelity (solid) and copy accuracy (dashed) against victim queries, one colour per run."""
    figure = _new_figure(width=7.0, height=4.4)
    axes = figure.add_subplot(1, 1, 1)
    queries_seen: set[int] = set()
    for colour, run in zip(_COLOURS, record.runs, strict=False):
        queries = [point.queries for point in run.record.curve]
        queries_seen.update(queries)
        axes.plot(queries, [point.fidelity for point in run.record.curve], color=colour, marker="o", linewidth=2.0,
                  label=run.name)
        accuracy = [point.accuracy for point in run.record.curve]
        if all(value is not None for value in accuracy):
            axes.plot(queries, accuracy, color=colour, marker=".", linewidth=1.0, linestyle="--", alpha=0.8)
    axes.plot([], [], color="#5b6475", linestyle="--", linewidth=1.0, label="dashed: the copy's accuracy")
    axes.axhline(record.victim_accuracy, color="#5b6475", linewidth=1.2, linestyle=":", label="victim accuracy")
    ticks = sorted(queries_seen)
    if len(ticks) > 2:
        axes.set_xscale("log")
        axes.minorticks_off()
    axes.set_xticks(ticks, [f"{value:,}" for value in ticks])
    axes.set_xlabel("victim queries")
    axes.set_ylabel("fidelity (solid) / accuracy (dashed)")
    axes.set_ylim(-0.02, 1.02)
    axes.yaxis.set_major_formatter(_percent_formatter())
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small", framealpha=0.9, ncol=2)
    return _to_png(figure)
