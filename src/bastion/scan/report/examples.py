"""What the report shows for each example grid: an image grid, or for tabular data the features
an attack changed most."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bastion.core.errors import InputError
from bastion.scan.outcome import ExampleGrid
from bastion.scan.report._common import class_name, format_eps
from bastion.scan.report.plots import example_grid_plot, png_data_uri

#: Features listed per tabular example, largest absolute change first.
TOP_FEATURES = 5
#: Examples listed per eps; the full per-sample record is in the JSON.
MAX_EXAMPLES = 8


@dataclass(frozen=True)
class FeatureChange:
    """One input feature an attack moved: its index, the value before and after."""

    index: int
    clean: float
    adversarial: float

    @property
    def delta(self) -> float:
        return self.adversarial - self.clean


@dataclass(frozen=True)
class ExampleRow:
    """One broken example: who it is, what the model said before and after, what changed."""

    sample_id: str
    label: str
    clean_prediction: str
    adversarial_prediction: str
    broken_by: str
    changes: list[FeatureChange]


@dataclass(frozen=True)
class ExampleView:
    """The examples at one eps, with an embedded image grid when the inputs are images."""

    eps: str
    image_uri: str | None
    rows: list[ExampleRow]
    total: int


def example_views(
    grids: list[ExampleGrid], class_names: list[str], bounds: tuple[float, float]
) -> list[ExampleView]:
    """One view per grid, in eps order."""
    return [_view(grid, class_names, bounds) for grid in sorted(grids, key=lambda g: g.eps)]


def top_feature_changes(
    clean: np.ndarray, adversarial: np.ndarray, limit: int
) -> list[FeatureChange]:
    """The ``limit`` features of one flattened example with the largest absolute change."""
    before = np.asarray(clean, dtype=np.float64).reshape(-1)
    after = np.asarray(adversarial, dtype=np.float64).reshape(-1)
    change = np.abs(after - before)
    order = np.argsort(-change, kind="stable")[:limit]
    return [
        FeatureChange(int(index), float(before[index]), float(after[index]))
        for index in order
        if change[index] > 0
    ]


def check_grid(grid: ExampleGrid) -> None:
    """Raise when a grid's arrays and lists do not all hold the same number of examples.

    Raises:
        InputError: the lengths differ, or clean and adversarial inputs differ in shape.
    """
    lengths = {
        "sample_ids": len(grid.sample_ids), "clean": len(grid.clean),
        "adversarial": len(grid.adversarial), "labels": len(grid.labels),
        "clean_predictions": len(grid.clean_predictions),
        "adversarial_predictions": len(grid.adversarial_predictions),
        "broken_by": len(grid.broken_by),
    }
    if len(set(lengths.values())) > 1:
        raise InputError(f"example grid at eps={format_eps(grid.eps)} has fields of different "
                         f"lengths: {lengths}")
    if np.shape(grid.clean) != np.shape(grid.adversarial):
        raise InputError(f"example grid at eps={format_eps(grid.eps)}: clean inputs "
                         f"{np.shape(grid.clean)} and adversarial inputs "
                         f"{np.shape(grid.adversarial)} differ in shape")


def _view(grid: ExampleGrid, class_names: list[str], bounds: tuple[float, float]) -> ExampleView:
    check_grid(grid)
    png = example_grid_plot(grid, class_names, bounds)
    shown = min(len(grid.sample_ids), MAX_EXAMPLES)
    # Images speak for themselves; a feature table is only needed when there is no picture.
    limit = 0 if png is not None else TOP_FEATURES
    rows = [_row(grid, position, class_names, limit) for position in range(shown)]
    return ExampleView(
        eps=format_eps(grid.eps),
        image_uri=png_data_uri(png) if png is not None else None,
        rows=rows,
        total=len(grid.sample_ids),
    )


def _row(grid: ExampleGrid, position: int, class_names: list[str], limit: int) -> ExampleRow:
    changes = (
        top_feature_changes(grid.clean[position], grid.adversarial[position], limit)
        if limit
        else []
    )
    return ExampleRow(
        sample_id=grid.sample_ids[position],
        label=class_name(class_names, int(grid.labels[position])),
        clean_prediction=class_name(class_names, int(grid.clean_predictions[position])),
        adversarial_prediction=class_name(class_names, int(grid.adversarial_predictions[position])),
        broken_by=grid.broken_by[position],
        changes=changes,
    )
