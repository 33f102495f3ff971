"""Figures for the HTML report, rendered off-screen and returned as PNG bytes or data URIs.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas instead of
``pyplot``: no global backend is switched and no pyplot state is touched, so rendering a
report never disturbs a notebook or GUI that imported bastion.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np

from bastion.core.records import EpsResult, ScanRecord
from bastion.scan.outcome import ExampleGrid
from bastion.scan.report._common import class_name, format_eps, norm_symbol

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

#: At most this many examples are drawn per grid; the rest stay in the JSON record.
MAX_GRID_COLUMNS = 8
#: Longer class names are cut in image titles so neighbouring titles do not overlap.
MAX_TITLE_NAME = 14
_DPI = 110


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in a self-contained HTML file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def robust_accuracy_plot(record: ScanRecord) -> bytes:
    """Robust accuracy against eps as PNG bytes.

    One bold line for overall robust accuracy, one thin dashed line per attack for the cumulative
    robust accuracy after it ran in the cascade, clean accuracy and ``fail_under`` as references.
    """
    figure = _new_figure(width=7.0, height=3.8)
    axes = figure.add_subplot(1, 1, 1)
    results = sorted(record.results, key=lambda result: result.eps)
    eps = [result.eps for result in results]

    for name, points in _cumulative_by_attack(results).items():
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, linestyle="--", linewidth=1.0, marker=".", alpha=0.8,
                  label=f"after {name}")
    axes.plot(eps, [result.robust_accuracy for result in results], color="#1f3a93",
              linewidth=2.4, marker="o", label="robust accuracy")
    axes.axhline(record.headline.clean_accuracy, color="#2e7d32", linewidth=1.4,
                 label="clean accuracy")
    if record.config.fail_under is not None:
        axes.axhline(record.config.fail_under, color="#c62828", linestyle=":", linewidth=1.4,
                     label="fail-under threshold")

    axes.set_xlabel(f"ε ({norm_symbol(record.config.norm)})")
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.yaxis.set_major_formatter(_percent_formatter())
    axes.set_xticks(eps, [format_eps(value) for value in eps])
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    return _to_png(figure)


def example_grid_plot(
    grid: ExampleGrid, class_names: list[str], bounds: tuple[float, float] = (0.0, 1.0)
) -> bytes | None:
    """Clean / adversarial / amplified |difference| rows for image examples, as PNG bytes.

    Returns ``None`` when the examples are not images (flat ``(K, D)`` tabular rows) or there are
    none; the HTML report shows a table of feature changes for those instead.
    """
    if not is_image_batch(grid.clean) or len(grid.sample_ids) == 0:
        return None
    count = min(len(grid.sample_ids), MAX_GRID_COLUMNS)
    clean = _to_display(grid.clean[:count], bounds)
    adversarial = _to_display(grid.adversarial[:count], bounds)
    difference = np.abs(adversarial - clean)
    largest = float(difference.max())
    gain = 1.0 / largest if largest > 0 else 1.0

    figure = _new_figure(width=1.45 * count + 0.9, height=5.0)
    axes = figure.subplots(3, count, squeeze=False)
    for column in range(count):
        label = _short_name(class_names, int(grid.labels[column]))
        clean_pred = _short_name(class_names, int(grid.clean_predictions[column]))
        adv_pred = _short_name(class_names, int(grid.adversarial_predictions[column]))
        _show(axes[0][column], clean[column], f"label: {label}\npred: {clean_pred}")
        _show(axes[1][column], adversarial[column], f"pred: {adv_pred}", color="#c62828")
        _show(axes[2][column], np.clip(difference[column] * gain, 0.0, 1.0),
              f"by {grid.broken_by[column]}")
    for row, text in enumerate(("clean", "adversarial", f"|diff| ×{gain:.3g}")):
        axes[row][0].set_ylabel(text, fontsize="small", parse_math=False)
    figure.suptitle(f"ε = {format_eps(grid.eps)}", fontsize="medium")
    return _to_png(figure)


def is_image_batch(batch: np.ndarray) -> bool:
    """True for ``(K, H, W)`` or ``(K, C, H, W)`` arrays with 1, 3 or 4 channels."""
    if batch.ndim == 3:
        return True
    return batch.ndim == 4 and batch.shape[1] in (1, 3, 4)


def _cumulative_by_attack(results: list[EpsResult]) -> dict[str, list[tuple[float, float]]]:
    """Per attack, the ``(eps, robust accuracy after it)`` points where it ran.

    An attack whose line would lie on the overall robust accuracy everywhere (the last attack of
    the cascade, usually) is left out: it would only hide the bold line.
    """
    overall = {result.eps: result.robust_accuracy for result in results}
    lines: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        for attack in result.attacks:
            if attack.robust_accuracy_after is not None and attack.skipped is None:
                lines.setdefault(attack.name, []).append((result.eps, attack.robust_accuracy_after))
    return {
        name: points for name, points in lines.items()
        if any(abs(after - overall[eps]) > 1e-9 for eps, after in points)
    }


def _short_name(class_names: list[str], label: int) -> str:
    name = class_name(class_names, label)
    return name if len(name) <= MAX_TITLE_NAME else name[: MAX_TITLE_NAME - 1] + "…"


def _to_display(batch: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """``(K, H, W)`` grey or ``(K, H, W, 3)`` colour images scaled from ``bounds`` to [0, 1]."""
    low, high = bounds
    images = (np.asarray(batch, dtype=np.float64) - low) / (high - low)
    if images.ndim == 4:
        images = images[:, :3] if images.shape[1] == 4 else images
        images = images[:, 0] if images.shape[1] == 1 else np.transpose(images, (0, 2, 3, 1))
    return np.clip(images, 0.0, 1.0)


def _show(axes: Axes, image: np.ndarray, title: str, color: str = "black") -> None:
    """One image cell: no ticks, small title that matplotlib must not parse as math."""
    if image.ndim == 2:
        axes.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axes.imshow(image, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize="x-small", color=color, parse_math=False)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _percent_formatter() -> PercentFormatter:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


def _to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()
