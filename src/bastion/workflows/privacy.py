"""``run_privacy_scan``: what a trained model leaks about its training data, in one evidence record.

What ``bastion scan --suite privacy`` runs, given the model, its training data (the *members*) and
data it was not trained on (the *non-members*, e.g. the test set):

1. Membership inference. The loss-threshold attack (Yeom et al. 2018) and LiRA (Carlini et al. 2022).
   LiRA's shadow models are trained by bastion on random halves of the population, which is the
   members and the non-members together (as in the LiRA paper), so it needs a trainable factory:
   the model's own when it was loaded as ``pkg.module:factory``, or ``settings.shadow_model``; without
   one (an ONNX, scikit-learn or TorchScript model, an endpoint) LiRA is skipped with a note. A model
   that answers with labels only gets the gap attack instead (correct = member). The headline numbers
   are ROC AUC and the true-positive rate at 1% and 0.1% false positives, not accuracy.
2. An empirical lower bound on a DP epsilon from the strongest attack
   (:func:`~bastion.attacks.inference.epsilon_lower_bound`, a heuristic for one trained model).
3. MI-Face model inversion, one reconstruction per class, when the model gives gradients.
4. Each output defense (:mod:`bastion.workflows.output_defenses`) in front of a local model: the
   attacks again through the hardened answers (:mod:`bastion.workflows.privacy_defenses`), next to
   the defense's accuracy cost and score distortion on the non-members.

Samples that appear among both members and non-members (same content and label) are dropped from
the non-members, with a note: their membership is not defined.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bastion import __version__
from bastion.attacks.extraction.substitute import predictions
from bastion.attacks.inference import (
    EpsilonBound,
    LiRA,
    LossThreshold,
    MembershipResult,
    MIFace,
    epsilon_lower_bound,
    evaluate_membership,
    shadow_trainer,
)
from bastion.core.errors import InputError
from bastion.core.ids import sample_ids
from bastion.data.sources import Dataset
from bastion.defenses.training.dp import default_delta
from bastion.models.base import Classifier
from bastion.models.loading import LoadedModel
from bastion.models.remote import endpoint_facts
from bastion.scan.engine import ScanEngine
from bastion.scan.runner import library_versions
from bastion.workflows.factories import ModelFactory, check_factory, factory_from_spec, torch_factory_spec
from bastion.workflows.privacy_defenses import GapAttack, defense_rows
from bastion.workflows.privacy_records import InversionRecord, PrivacyRecord, PrivacySettings
from bastion.workflows.refs import dataset_ref, model_ref
from bastion.workflows.scan_common import Progress, check_fits, no_progress


def run_privacy_scan(
    model: LoadedModel,
    members: Dataset,
    non_members: Dataset,
    settings: PrivacySettings,
    *,
    model_spec: str | None = None,
    shadow_factory: ModelFactory | None = None,
    progress: Progress | None = None,
    engine: ScanEngine | None = None,
) -> PrivacyRecord:
    """Attack ``model``'s privacy and return the record (module docstring).

    Args:
        model: the model under test, as loaded (its description and hash go into the record).
        members: its training data, ``x`` ``(M, *input_shape)``, ``y`` ``(M,)``.
        non_members: data from the same distribution it was not trained on, ``(K, *input_shape)``, ``(K,)``.
        settings: shadows, inversion, defenses, seed.
        model_spec: the spec ``model`` was loaded from; a torch ``pkg.module:factory`` builds the
            shadows when ``settings.shadow_model`` names none.
        shadow_factory: builds the shadows instead of any spec (from Python).
        progress: called with a line before each step.
        engine: trains LiRA's shadow models (default: one after another here; see
            :class:`~bastion.scan.engine.RayEngine`).

    Raises:
        InputError: data that does not fit the model, no non-member left after removing shared samples,
            a ``settings.shadow_model`` that cannot be imported or does not fit the model.
    """
    started = time.perf_counter()
    say = progress or no_progress
    classifier = model.classifier
    notes: list[str] = []
    check_fits(members, classifier, "the members (--train-data)")
    check_fits(non_members, classifier, "the non-members (--data)")
    members, non_members = _disjoint(members, non_members, notes)
    x_in, y_in, x_out, y_out = members.x, members.y, non_members.x, non_members.y
    train_accuracy, test_accuracy = _accuracy(classifier, x_in, y_in), _accuracy(classifier, x_out, y_out)
    shadow_spec, factory = _shadow_factory(model, settings, model_spec, shadow_factory, notes)

    attacks: list[MembershipResult] = []
    lira: LiRA | None = None
    population = _population(members, non_members)
    if classifier.access == "labels":
        say("membership: gap attack (the model answers with labels only)")
        attacks.append(evaluate_membership(GapAttack(batch_size=settings.batch_size), classifier,
                                           x_in, y_in, x_out, y_out))
        notes.append("The model answers with labels only, so the loss-threshold attack and LiRA, which read "
                     "scores, cannot run; the gap attack (a correct label means 'member') stands in for them.")
    else:
        say("membership: loss-threshold attack")
        attacks.append(evaluate_membership(LossThreshold(batch_size=settings.batch_size), classifier,
                                           x_in, y_in, x_out, y_out))
        if factory is not None:
            lira = _fit_lira(factory, classifier, population, settings, say, engine)
            say("membership: LiRA scores")
            attacks.append(evaluate_membership(lira, classifier, x_in, y_in, x_out, y_out))
    delta = settings.delta if settings.delta is not None else default_delta(len(members))
    epsilon, epsilon_attack = _epsilon(attacks, delta)
    notes.append(_epsilon_note())
    inversion = _inversion(classifier, settings, notes, say)

    if model.kind == "remote" and settings.defenses != ["none"]:
        notes.append("Output defenses cannot be put in front of a remote endpoint from here; only the "
                     "undefended row is measured. Scan a local copy of the model to compare defenses.")
    names = ["none"] if model.kind == "remote" else settings.defenses
    rows, defense_notes = defense_rows(
        classifier, (x_in, y_in, x_out, y_out), {result.attack: result for result in attacks}, lira,
        population if lira is not None else None, settings.model_copy(update={"defenses": names}), say)
    notes.extend(defense_notes)
    return PrivacyRecord(
        bastion_version=__version__,
        library_versions=library_versions(),
        config=settings,
        model=model_ref(model),
        members=dataset_ref(members),
        non_members=dataset_ref(non_members),
        class_names=_class_names(members, classifier.num_classes),
        bounds=tuple(classifier.bounds),
        shadow_model=shadow_spec if lira is not None else None,
        train_accuracy=train_accuracy,
        test_accuracy=test_accuracy,
        attacks=attacks,
        epsilon=epsilon,
        epsilon_attack=epsilon_attack,
        inversion=inversion,
        defenses=rows,
        endpoint=endpoint_facts(classifier),
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def _disjoint(members: Dataset, non_members: Dataset, notes: list[str]) -> tuple[Dataset, Dataset]:
    """The non-members without the samples (by content and label) that are also members."""
    member_ids = set(sample_ids(members.x, members.y))
    shared = np.array([sample_id in member_ids for sample_id in sample_ids(non_members.x, non_members.y)])
    if shared.all():
        raise InputError("every non-member (--data) is also in the training data (--train-data); pass data the "
                         "model was not trained on")
    if shared.any():
        notes.append(f"{int(shared.sum())} non-member sample(s) are also in the training data (same content and "
                     "label) and were left out: their membership is not defined.")
        non_members = non_members.subset(np.flatnonzero(~shared))
    return members, non_members


def _population(members: Dataset, non_members: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Members and non-members together, each distinct sample once: ``x`` ``(P, ...)``, ``y`` ``(P,)``."""
    x = np.concatenate([members.x, non_members.x]).astype(np.float32)
    y = np.concatenate([members.y, non_members.y]).astype(np.int64)
    _, first = np.unique(np.array(sample_ids(x, y)), return_index=True)
    keep = np.sort(first)
    return x[keep], y[keep]


def _accuracy(classifier: Classifier, x: np.ndarray, y: np.ndarray) -> float:
    labels = predictions(classifier, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return float((labels.numpy() == y).mean())


def _shadow_factory(model: LoadedModel, settings: PrivacySettings, model_spec: str | None,
                    given: ModelFactory | None, notes: list[str]) -> tuple[str | None, ModelFactory | None]:
    """The factory LiRA's shadows are built by and its name, or ``(None, None)`` with a note."""
    if model.classifier.access == "labels":
        return None, None
    if given is not None:
        check_factory(given, model.classifier, "the shadow factory")
        return getattr(given, "__name__", repr(given)), given
    explicit = settings.shadow_model is not None
    spec = settings.shadow_model if explicit else torch_factory_spec(model_spec, model)
    if spec is None:
        notes.append(f"LiRA was skipped: it trains shadow models like the target, and a {model.kind} model gives "
                     "bastion no network to train. Pass --shadow-model pkg.module:factory (the target's "
                     "architecture) to run it.")
        return None, None
    factory = factory_from_spec(spec, option="--shadow-model" if explicit else "--model")
    try:
        check_factory(factory, model.classifier, f"the shadow model {spec}")
    except InputError:
        if explicit:
            raise
        notes.append(f"LiRA was skipped: {spec} does not build a network bastion can train as a shadow. Pass "
                     "--shadow-model pkg.module:factory to run it.")
        return None, None
    return spec, factory


#: The fewest samples a LiRA shadow model may train on (each trains on half of the members and non-members).
MIN_SHADOW_SAMPLES = 2


def _fit_lira(factory: ModelFactory, classifier: Classifier, population: tuple[np.ndarray, np.ndarray],
              settings: PrivacySettings, say: Progress, engine: ScanEngine | None = None) -> LiRA:
    if len(population[1]) // 2 < MIN_SHADOW_SAMPLES:
        raise InputError(f"LiRA trains each shadow model on half of the members and non-members, and there are "
                         f"{len(population[1])}: give at least {2 * MIN_SHADOW_SAMPLES} (raise --limit, or give "
                         "more data)")
    train = shadow_trainer(factory, input_shape=classifier.input_shape, num_classes=classifier.num_classes,
                           bounds=classifier.bounds, epochs=settings.shadow_epochs,
                           batch_size=settings.shadow_batch_size, lr=settings.shadow_lr)
    trained = 0

    def train_shadow(x: np.ndarray, y: np.ndarray, seed: int) -> Classifier:
        nonlocal trained
        trained += 1
        say(f"LiRA: training shadow model {trained} of {settings.shadows} on {len(y):,} samples")
        return train(x, y, seed)

    lira = LiRA(shadows=settings.shadows, seed=settings.seed, batch_size=settings.batch_size)
    if engine is None:
        return lira.fit(population[0], population[1], train_shadow)
    say(f"LiRA: training {settings.shadows} shadow models on the {engine.name} engine, "
        f"{len(population[1]) // 2:,} samples each")
    return lira.fit(population[0], population[1], train, engine=engine)


def _epsilon(attacks: list[MembershipResult], delta: float) -> tuple[EpsilonBound | None, str | None]:
    """The largest epsilon lower bound over the attacks, and the attack that gave it."""
    bounds = [(epsilon_lower_bound(r.scores, r.is_member, delta=delta), r.attack) for r in attacks]
    if not bounds:
        return None, None
    return max(bounds, key=lambda pair: pair[0].epsilon)


def _epsilon_note() -> str:
    return ("The epsilon lower bound treats every scored example as an independent trial of one trained model; "
            "Jagielski et al. train one model per trial, so read it as a heuristic (95% confidence, thresholds "
            "searched with a Bonferroni correction). A DP accountant's epsilon below it means broken accounting.")


def _inversion(classifier: Classifier, settings: PrivacySettings, notes: list[str],
               say: Progress) -> InversionRecord | None:
    if not settings.inversion:
        return None
    access = classifier.access
    if access != "white":
        notes.append(f"Model inversion (MI-Face) needs gradients; the model offers only {access} access, so it "
                     "did not run.")
        return None
    say(f"model inversion: MI-Face, {settings.inversion_steps} steps per class")
    tv_weight = settings.inversion_tv_weight if len(classifier.input_shape) >= 2 else 0.0
    result = MIFace(steps=settings.inversion_steps, lr=settings.inversion_lr, tv_weight=tv_weight,
                    stop_cost=0.0).invert(classifier)
    return InversionRecord(classes=result.classes.tolist(),
                           reconstructions=np.round(result.reconstructions.numpy().astype(np.float64), 5).tolist(),
                           confidences=result.confidences.tolist(), steps=result.steps, params=result.params)


def _class_names(dataset: Dataset, num_classes: int) -> list[str]:
    names = list(dataset.class_names)
    return names + [str(i) for i in range(len(names), num_classes)]
