"""``drift.json`` (canonical) and ``drift.html`` (self-contained, plots as PNG data URIs) of a drift check."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment

from bastion.monitor.drift import DriftReport, TrafficWindow
from bastion.scan.report._common import write_text_atomically
from bastion.scan.report.html import report_environment
from bastion.scan.report.plots import _new_figure, _percent_formatter, _to_png, png_data_uri
from bastion.scan.report.writer import prepare_folder

REFERENCE_COLOR = "#1f3a93"
CURRENT_COLOR = "#c62828"
#: Features labelled on the KS line plot when there is no image shape to draw them in.
LABELLED_FEATURES = 5


def write_drift_report(report: DriftReport, reference: TrafficWindow, current: TrafficWindow,
                       out_dir: str | Path) -> Path:
    """Write ``drift.json`` (the report) and ``drift.html`` into ``out_dir``; returns the HTML's path.

    The page shows the verdict, every test, and plots: the confidence histograms of both windows, their
    predicted-class histograms side by side, and the per-feature KS distance (as an image when the inputs
    are images, or ``D`` is a square number; else as a line over the features).

    Raises:
        InputError: ``out_dir`` is a file or cannot be written.
    """
    folder = prepare_folder(out_dir)
    write_text_atomically(folder / "drift.json", report.model_dump_json(indent=2))
    html = _environment().get_template("drift.html").render(**_context(report, reference, current))
    return write_text_atomically(folder / "drift.html", html)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return report_environment("bastion.monitor")


def _context(report: DriftReport, reference: TrafficWindow, current: TrafficWindow) -> dict[str, Any]:
    return {
        "report": report,
        "verdict": "DRIFT" if report.drifted else "STABLE",
        "plots": [
            ("Confidence (largest class probability) of each window; a drop means inputs the model is less "
             "sure about.", png_data_uri(confidence_plot(reference, current))),
            ("Share of predictions per class.", png_data_uri(class_plot(report))),
            ("How far each input feature's distribution moved (KS distance, 0 = identical, 1 = disjoint).",
             png_data_uri(feature_plot(report))),
        ],
        "threshold_items": [(k, json.dumps(v)) for k, v in report.thresholds.model_dump(mode="json").items()],
    }


def confidence_plot(reference: TrafficWindow, current: TrafficWindow) -> bytes:
    """Histograms of both windows' confidence on shared bins, as shares of each window, PNG bytes."""
    figure = _new_figure(width=7.0, height=3.4)
    axes = figure.add_subplot(1, 1, 1)
    low = min(float(reference.confidence.min()), float(current.confidence.min()), 1 / reference.num_classes)
    edges = np.linspace(low, 1.0, 21)
    for window, name, color in ((reference, "reference", REFERENCE_COLOR), (current, "current", CURRENT_COLOR)):
        weights = np.full(len(window), 1 / len(window))
        axes.hist(np.clip(window.confidence, low, 1.0), bins=edges, weights=weights, histtype="stepfilled",
                  alpha=0.35, color=color, edgecolor=color, linewidth=1.4, label=f"{name} (n = {len(window):,})")
    axes.set_xlabel("confidence")
    axes.set_ylabel("share of instances")
    axes.yaxis.set_major_formatter(_percent_formatter())
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    return _to_png(figure)


def class_plot(report: DriftReport) -> bytes:
    """Share of predictions per class, reference and current side by side, PNG bytes."""
    classes = len(report.reference.class_counts)
    figure = _new_figure(width=min(11.0, max(5.0, 0.45 * classes + 2.5)), height=3.4)
    axes = figure.add_subplot(1, 1, 1)
    positions = np.arange(classes)
    highest = 0.0
    for offset, summary, name, color in ((-0.2, report.reference, "reference", REFERENCE_COLOR),
                                         (0.2, report.current, "current", CURRENT_COLOR)):
        counts = np.asarray(summary.class_counts, dtype=np.float64)
        axes.bar(positions + offset, counts / counts.sum(), width=0.4, color=color, label=name)
        highest = max(highest, float(counts.max() / counts.sum()))
    axes.set_ylim(0, min(1.0, highest * 1.25) if highest < 0.8 else 1.05)  # room for the legend
    axes.set_xticks(positions, [str(c) for c in positions] if classes <= 30 else None)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("share of predictions")
    axes.yaxis.set_major_formatter(_percent_formatter())
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="upper right", fontsize="small", ncols=2)
    return _to_png(figure)


def feature_plot(report: DriftReport) -> bytes:
    """The per-feature KS distance: a heatmap in the input's image shape when there is one, else a line."""
    statistics = np.asarray(report.feature_statistics, dtype=np.float64)
    grid = _image_grid(statistics, report.reference.sample_shape)
    if grid is not None:
        return _heatmap(grid, report)
    figure = _new_figure(width=7.0, height=3.2)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(np.arange(len(statistics)), statistics, color=REFERENCE_COLOR, linewidth=1.2, marker="." if
              len(statistics) <= 100 else None)
    drifted = report.drifted_features
    if drifted:
        axes.scatter(drifted, statistics[drifted], color=CURRENT_COLOR, zorder=3, s=14, label="drifted")
        for feature in drifted[:LABELLED_FEATURES]:
            axes.annotate(str(feature), (feature, statistics[feature]), textcoords="offset points", xytext=(3, 3),
                          fontsize="x-small")
        axes.legend(loc="best", fontsize="small")
    axes.set_xlabel("input feature")
    axes.set_ylabel("KS distance")
    axes.set_ylim(0, max(0.05, float(statistics.max()) * 1.15))
    axes.grid(True, alpha=0.3)
    return _to_png(figure)


def _image_grid(statistics: np.ndarray, sample_shape: list[int] | None) -> np.ndarray | None:
    """``(H, W)`` KS distances (the largest over channels) for image inputs or a square ``D``; else None."""
    shape = tuple(sample_shape or ())
    if len(shape) == 3 and min(shape[1:]) > 1:
        return statistics.reshape(shape).max(axis=0)  # (C, H, W)
    if len(shape) == 2 and min(shape) > 1:
        return statistics.reshape(shape)
    side = math.isqrt(len(statistics))
    if side > 1 and side * side == len(statistics):
        return statistics.reshape(side, side)
    return None


def _heatmap(grid: np.ndarray, report: DriftReport) -> bytes:
    figure = _new_figure(width=4.8, height=4.0)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(grid, cmap="magma", vmin=0.0, vmax=max(0.05, float(grid.max())), interpolation="nearest")
    figure.colorbar(image, ax=axes, label="KS distance")
    drifted = len(report.drifted_features)
    axes.set_title(f"{drifted} of {len(report.feature_statistics)} features drifted", fontsize="small")
    axes.set_xticks([])
    axes.set_yticks([])
    return _to_png(figure)
