"""``run_extraction_scan``: how well can a model be stolen through its answers, and what do output defenses change?

What ``bastion scan --suite extraction`` runs against a victim (a local model or a live endpoint):

1. Knockoff Nets (Orekondy et al. 2019) with each query strategy (``random``, ``adaptive``), the copy
   learning once from the victim's probabilities (when it gives scores) and once from its labels only,
   each under the query budget. Every run trains copies from scratch on the first ``n`` queries at the
   curve's checkpoints (``budget / 2^k``), so fidelity (agreement with the victim on held-out data)
   and the copy's accuracy form a curve against the number of queries.
2. For a local victim, each output defense (:mod:`bastion.workflows.output_defenses`) in front of it:
   Knockoff with random queries, learning from whatever the hardened answers give, with the final
   fidelity (to the undefended victim) next to the defense's accuracy cost and score distortion.
   A remote endpoint serves its own answers, so only the undefended row is measured (a note says so).

The copies are built by ``settings.copy_model``, else the victim's own factory when it was loaded
from one, else a zoo network for the victim's input shape (:func:`~bastion.workflows.factories.default_copy_model`).
The pool's labels are never used: the attacker has inputs only.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bastion import __version__
from bastion.attacks.extraction import CopyTraining, ExtractionResult, KnockoffNets, OutputKind
from bastion.attacks.extraction.knockoff import Strategy
from bastion.attacks.extraction.substitute import agreement
from bastion.core.errors import InputError
from bastion.data.sources import Dataset
from bastion.defenses.output import PostprocessedClassifier, accuracy_cost
from bastion.models.base import Classifier
from bastion.models.loading import LoadedModel
from bastion.models.remote import endpoint_facts
from bastion.scan.runner import library_versions
from bastion.workflows.factories import (
    ModelFactory,
    check_factory,
    default_copy_model,
    factory_from_spec,
    torch_factory_spec,
)
from bastion.workflows.output_defenses import defense_steps, describe_steps
from bastion.workflows.privacy_records import (
    ExtractionDefenseRow,
    ExtractionRun,
    ExtractionScanRecord,
    ExtractionSettings,
)
from bastion.workflows.refs import dataset_ref, model_ref
from bastion.workflows.scan_common import Progress, check_fits, no_progress

#: Without separate evaluation data, this share of the data is held out for fidelity (by sample id).
HELD_OUT_FRACTION = 0.2


def held_out_split(data: Dataset, fraction: float = HELD_OUT_FRACTION) -> tuple[Dataset, Dataset]:
    """Split ``data`` into the attacker's pool and held-out evaluation data, deterministically.

    A sample is held out when the first 32 bits of its id (SHA-256 of its content and label, or its
    stored id), read as a fraction of 2^32, are below ``fraction`` (default 0.2): the split does not
    depend on the order of the samples or on any seed, and a sample always lands on the same side.

    Returns:
        ``(pool, held_out)``.

    Raises:
        InputError: either side would be empty (too few samples): pass separate evaluation data.
    """
    position = np.array([int(sample_id[:8], 16) / 2**32 for sample_id in data.sample_ids])
    held = position < fraction
    if held.all() or not held.any():
        raise InputError(f"{len(data)} samples are too few to hold out {fraction:.0%} for measuring fidelity; pass "
                         "--eval-data with held-out samples")
    pool = data.subset(np.flatnonzero(~held), description=f"{data.description}, pool ({int((~held).sum())} samples)")
    held_out = data.subset(np.flatnonzero(held), description=f"{data.description}, held out ({int(held.sum())} "
                           "samples)")
    return pool, held_out


def run_extraction_scan(
    victim: LoadedModel,
    pool: Dataset,
    eval_data: Dataset,
    settings: ExtractionSettings,
    *,
    eval_source: str = "evaluation data given separately",
    model_spec: str | None = None,
    copy_factory: ModelFactory | None = None,
    progress: Progress | None = None,
) -> ExtractionScanRecord:
    """Steal ``victim`` and return the record (module docstring).

    Args:
        victim: the model under attack, as loaded; a remote endpoint works (its answers are paid once:
            a sample asked again is served from the adapter's cache).
        pool: the attacker's inputs ``(N, *input_shape)`` (labels unused); each run asks at most
            ``min(budget, N)`` of them, each once.
        eval_data: held-out ``(M, *input_shape)``, ``(M,)`` for fidelity and the copies' accuracy.
        settings: budget, strategies, copy training, defenses, seed.
        eval_source: how ``eval_data`` was obtained, for the record.
        model_spec: the spec ``victim`` was loaded from; a torch ``pkg.module:factory`` builds the copies
            when ``settings.copy_model`` names none.
        copy_factory: builds the copies instead of any spec (from Python).
        progress: called with a line before each run.

    Raises:
        InputError: data that does not fit the victim, or a copy model that cannot be built or does not fit.
    """
    started = time.perf_counter()
    say = progress or no_progress
    classifier = victim.classifier
    notes: list[str] = []
    check_fits(pool, classifier, "the attacker's pool (--data)")
    check_fits(eval_data, classifier, "the evaluation data")
    copy_name, factory = _copy_factory(victim, settings, model_spec, copy_factory, notes)
    training = CopyTraining(epochs=settings.copy_epochs, batch_size=settings.copy_batch_size, lr=settings.copy_lr,
                            min_steps=settings.copy_min_steps)
    checkpoints = settings.checkpoints()
    x_eval, y_eval = _eval_tensors(eval_data)
    victim_accuracy = agreement(classifier, x_eval, y_eval)
    if len(pool) < settings.budget:
        notes.append(f"The pool holds {len(pool):,} inputs, fewer than the budget of {settings.budget:,}: each run "
                     f"asks each input once, so at most {len(pool):,} queries.")
    outputs: list[OutputKind] = ["labels"] if classifier.access == "labels" else ["probabilities", "labels"]
    if classifier.access == "labels":
        notes.append("The victim answers with labels only: the copies learn from labels.")

    def attack(target: Classifier, strategy: Strategy, output: OutputKind, points: list[int]) -> ExtractionResult:
        knockoff = KnockoffNets(factory, strategy=strategy, output=output, training=training)
        return knockoff.extract(target, pool.x, budget=settings.budget, x_eval=x_eval, y_eval=y_eval,
                                reference=classifier, checkpoints=points, seed=settings.seed)

    runs: list[ExtractionRun] = []
    for strategy in settings.strategies:
        for output in outputs:
            say(f"extraction: knockoff {strategy}, the copy learns from {output}, up to {settings.budget:,} queries "
                f"({len(checkpoints)} curve points)")
            result = attack(classifier, strategy, output, checkpoints)
            runs.append(ExtractionRun(name=f"knockoff {strategy}, {output}", strategy=strategy, record=result.record))

    rows: list[ExtractionDefenseRow] = []
    names = settings.defenses
    if victim.kind == "remote":
        if names != ["none"]:
            notes.append("Output defenses cannot be put in front of a remote endpoint from here; only the "
                         "undefended row is measured. Scan a local copy of the model to compare defenses.")
        names = [name for name in names if name == "none"]
    baseline = next((run.record for run in runs if run.strategy == "random" and run.record.output == outputs[0]), None)
    for name in names:
        steps = defense_steps(name, num_classes=classifier.num_classes, seed=settings.seed)
        if steps is None:
            notes.append(f"The {name} defense was skipped: the model has only {classifier.num_classes} classes.")
            continue
        target = classifier if name == "none" else PostprocessedClassifier(classifier, steps)
        if name == "none" and baseline is not None:
            record = baseline
        else:
            say(f"defense {name}: knockoff random through the hardened answers, {settings.budget:,} queries")
            record = attack(target, "random", "auto", [settings.budget]).record
        rows.append(ExtractionDefenseRow(
            defense=name, steps=describe_steps(steps), access=target.access, targets=record.targets,
            queries=record.queries, fidelity=record.fidelity, accuracy=record.accuracy,
            cost=accuracy_cost(classifier, target, x_eval, y_eval)))

    return ExtractionScanRecord(
        bastion_version=__version__,
        library_versions=library_versions(),
        config=settings,
        model=model_ref(victim),
        pool=dataset_ref(pool),
        eval_data=dataset_ref(eval_data),
        eval_source=eval_source,
        copy_model=copy_name,
        victim_accuracy=victim_accuracy,
        runs=runs,
        defenses=rows,
        endpoint=endpoint_facts(classifier),
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def _copy_factory(victim: LoadedModel, settings: ExtractionSettings, model_spec: str | None,
                  given: ModelFactory | None, notes: list[str]) -> tuple[str, ModelFactory]:
    """The copies' architecture: the one given, ``settings.copy_model``, the victim's factory, or a zoo network."""
    classifier = victim.classifier
    if given is not None:
        check_factory(given, classifier, "the copy factory")
        return getattr(given, "__name__", repr(given)), given
    if settings.copy_model is not None:
        factory = factory_from_spec(settings.copy_model, option="--copy-model")
        check_factory(factory, classifier, f"the copy model {settings.copy_model}")
        return settings.copy_model, factory
    spec = torch_factory_spec(model_spec, victim)
    if spec is not None:
        factory = factory_from_spec(spec, option="--model")
        try:
            check_factory(factory, classifier, f"the victim's architecture {spec}")
            return spec, factory
        except InputError as error:
            notes.append(f"The victim's own architecture cannot be trained as a copy ({error}); a zoo network "
                         "is used instead.")
    name, factory = default_copy_model(classifier)
    check_factory(factory, classifier, f"the copy model {name}")
    return name, factory


def _eval_tensors(eval_data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out inputs ``(M, *input_shape)`` float32 and labels ``(M,)`` int64 as tensors."""
    x = torch.from_numpy(np.ascontiguousarray(eval_data.x, dtype=np.float32))
    return x, torch.from_numpy(eval_data.y.astype(np.int64))
