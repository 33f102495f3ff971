"""Training the text guard's classifier on bastion's corpus: family-grouped cross-validation, ``bastion guard train``.

:func:`train_default` makes the shipped ``data/injection_classifier.json``; :class:`TrainingPieces` holds the
embeddings of every piece of a training set, so that cross-validation and the final fit embed each piece once.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.defenses.text.classifier import (
    C_GRID,
    LEXICAL_C_GRID,
    THRESHOLD_FPR,
    InjectionClassifier,
    lexical_embeddings,
    logistic_regression,
)
from bastion.defenses.text.corpus import (
    DOCSTRING_MODULES,
    assemble,
    corpus_digest,
    is_encoded,
    split_examples,
    summary,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainingPieces:
    """Embeddings of the pieces (:meth:`InjectionClassifier.piece_spans`) of a set of training texts.

    ``spans``: every piece, text after text; ``owner`` ``(P,)``: the text of each; ``windows`` ``(N,)``: how
    many of a text's pieces are windows; ``starts`` ``(N,)``: each text's first piece (its first window, what
    both layers are fitted on). ``lexical`` ``(P, 384)``: lexical embeddings of every piece; ``contextual``
    ``(P, 384)``: sentence embeddings of the pieces the contextual layer may read (each text's first window,
    and the pieces after the windows), NaN elsewhere.
    """

    spans: list[tuple[int, int]]
    owner: np.ndarray
    windows: np.ndarray
    starts: np.ndarray
    lexical: np.ndarray
    contextual: np.ndarray

    @classmethod
    def embed(cls, classifier: InjectionClassifier, texts: Sequence[str]) -> TrainingPieces:
        texts = list(texts)
        pieces = [classifier.piece_spans(text) for text in texts]
        owner = np.repeat(np.arange(len(texts)), [len(spans) for spans, _ in pieces])
        spans = [span for text_spans, _ in pieces for span in text_spans]
        windows = np.array([count for _, count in pieces], dtype=np.int64)
        starts = np.searchsorted(owner, np.arange(len(texts)))
        # What the contextual layer may read: all of a short text; a longer one's first window (what the layer
        # is fitted on) and every piece after its windows (what it reads, depending on the lexical scores).
        readable = [list(range(len(text_spans))) if classifier.is_short(text_spans[:count])
                    else [0, *range(count, len(text_spans))] for text_spans, count in pieces]
        logger.info("embedding %d pieces of %d training texts (%d contextually)", len(owner), len(texts),
                    sum(map(len, readable)))
        lexical = lexical_embeddings(texts, pieces)
        contextual = np.full((len(owner), lexical.shape[1]), np.nan, dtype=np.float32)
        embeddings, rows = classifier.read_contextually(texts, readable, pieces)
        contextual[rows] = embeddings
        return cls(spans, owner, windows, starts, lexical, contextual)

    def text_max(self, piece_scores: np.ndarray) -> np.ndarray:
        """Each text's highest score ``(N,)`` over its pieces' ``piece_scores`` ``(P,)``."""
        best = np.full(len(self.starts), -np.inf)
        np.maximum.at(best, self.owner, piece_scores)
        return best

    def lexical_training_rows(self, labels: np.ndarray, texts: np.ndarray | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, targets)`` the lexical layer is fitted on: each text's first window, with the text's label,
        and every other piece of the benign texts, as benign (of the texts ``texts``, default all)."""
        chosen = np.arange(len(labels)) if texts is None else np.asarray(texts)
        heads = self.starts[chosen]
        benign_pieces = np.setdiff1d(np.flatnonzero(np.isin(self.owner, chosen[labels[chosen] == 0])), heads)
        return (np.concatenate([heads, benign_pieces]),
                np.concatenate([labels[chosen], np.zeros(len(benign_pieces), dtype=np.int64)]))

    def lexical_out_of_fold(self, labels: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], C: float,
                            seed: int) -> np.ndarray:
        """Each piece's lexical probability ``(P,)``, from a model fitted without its text's fold."""
        predicted = np.zeros(len(self.owner))
        for fit_rows, held_rows in folds:
            rows, targets = self.lexical_training_rows(labels, fit_rows)
            model = logistic_regression(C, seed).fit(self.lexical[rows], targets)
            held = np.isin(self.owner, held_rows)
            predicted[held] = model.predict_proba(self.lexical[held])[:, 1]
        return predicted

    def focus_rows(self, classifier: InjectionClassifier, lexical_pieces: np.ndarray) -> np.ndarray:
        """The pieces the contextual layer reads (:meth:`InjectionClassifier.focus`), given lexical scores ``(P,)``."""
        ends = np.r_[self.starts[1:], len(self.owner)].tolist()
        rows = []
        for text, (start, end) in enumerate(zip(self.starts.tolist(), ends, strict=True)):
            rows += [start + i for i in classifier.focus(self.spans[start:end], int(self.windows[text]),
                                                         lexical_pieces[start:end])]
        return np.asarray(rows, dtype=np.int64)

    def contextual_out_of_fold(self, labels: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], C: float,
                               seed: int, focus: np.ndarray) -> np.ndarray:
        """Each text's highest contextual probability ``(N,)`` over the pieces ``focus`` it reads, from a model
        fitted without its fold."""
        predicted = np.zeros(len(labels))
        for fit_rows, held_rows in folds:
            model = logistic_regression(C, seed).fit(self.contextual[self.starts[fit_rows]], labels[fit_rows])
            held = focus[np.isin(self.owner[focus], held_rows)]
            np.maximum.at(predicted, self.owner[held], model.predict_proba(self.contextual[held])[:, 1])
        return predicted


def train_default(out_path: str | Path, seed: int = 0, *, threads: int | None = 1) -> dict[str, Any]:
    """Train the shipped classifier on the train split of :func:`~bastion.defenses.text.corpus.assemble`.

    Texts made by encoding another (Base64, hex, ROT13, reversed, zero-width, homoglyphs) are left out of
    training: they are the normalisation layer's to decode, and a classifier trained on them learns that any
    blob is an attack. Everything is chosen on the train split only, by cross-validation that holds out whole
    template families (so each fold, like the eval split, scores phrasings its model never saw): each layer's
    ``C`` maximises its out-of-fold average precision, the combination is fitted on the out-of-fold scores,
    and the threshold is the lowest value, not under 0.5, whose out-of-fold false-positive rate on the
    training negatives is at most :data:`THRESHOLD_FPR`. The eval split is scored once, at the end, by the
    classifier alone. Writes the classifier to ``out_path`` and returns its metrics.
    """
    from bastion.defenses.text.evaluate import evaluate

    examples = assemble(seed)
    train = [example for example in split_examples(examples, "train") if not is_encoded(example)]
    held_out = split_examples(examples, "eval")
    texts, labels = [e.text for e in train], np.array([e.label for e in train])
    classifier = InjectionClassifier(threads=threads, seed=seed)
    pieces = TrainingPieces.embed(classifier, texts)
    folds = grouped_folds(labels, [e.family for e in train], seed)
    lexical_pieces = {c: pieces.lexical_out_of_fold(labels, folds, c, seed) for c in LEXICAL_C_GRID}
    lexical_c, lexical_oof, lexical_ap = _best_c(LEXICAL_C_GRID, lambda c: pieces.text_max(lexical_pieces[c]), labels)
    focus = pieces.focus_rows(classifier, lexical_pieces[lexical_c])
    contextual_c, contextual_oof, contextual_ap = _best_c(
        C_GRID, lambda c: pieces.contextual_out_of_fold(labels, folds, c, seed, focus), labels)
    classifier.set_params(C=contextual_c, lexical_C=lexical_c)
    classifier.fit_pieces(pieces, labels, contextual_oof, lexical_oof, corpus_sha256=corpus_digest(texts, labels))
    combined = classifier.combine(lexical_oof, contextual_oof)
    classifier.threshold = _threshold(combined, labels)
    classifier.set_gate(lexical_oof, contextual_oof, labels)
    skipped = lexical_oof < classifier.lexical_.skip_below  # type: ignore[union-attr]
    cv = {"folds": len(folds), "grouped_by": "template family",
          "threshold_rule": f"lowest >= 0.5 with out-of-fold FPR <= {THRESHOLD_FPR}", "threshold": classifier.threshold,
          "combined": _rates(combined >= classifier.threshold, labels),
          "gate": {"skip_below": classifier.lexical_.skip_below,  # type: ignore[union-attr]
                   "negatives_skipped": float(skipped[labels == 0].mean()),
                   "injections_skipped": float(skipped[labels == 1].mean()),
                   "with_gate": _rates((combined >= classifier.threshold) & ~skipped, labels)},
          "contextual": {"C": contextual_c, "average_precision": contextual_ap,
                         **_rates(contextual_oof >= _threshold(contextual_oof, labels), labels)},
          "lexical": {"C": lexical_c, "average_precision": lexical_ap,
                      **_rates(lexical_oof >= _threshold(lexical_oof, labels), labels)}}
    classifier.training_.update({
        "corpus": f"bastion.defenses.text.corpus.assemble(seed={seed}), train split less the encoded families",
        "python_docstrings": platform.python_version(), "docstring_modules": DOCSTRING_MODULES["train"],
        "families": sorted({e.family for e in train}), "counts": summary(examples), "cross_validation": cv})
    logger.info("scoring %d eval texts with the classifier alone", len(held_out))
    evaluation = evaluate(classifier.screen, held_out, guard="classifier alone",
                          data=f"bastion corpus, eval split (seed {seed}): template families never trained on")
    metrics = _metrics(evaluation)
    classifier.evaluation_ = metrics
    classifier.threads = None  # a setting of the process that loads the file, not of the model
    classifier.save(out_path)
    return metrics


def _best_c(grid: Sequence[float], out_of_fold: Any, labels: np.ndarray
            ) -> tuple[float, np.ndarray, dict[str, float]]:
    """``(C, its out-of-fold scores, average precision of each C)``: the C of ``grid`` scoring best."""
    from sklearn.metrics import average_precision_score

    scores = {c: out_of_fold(c) for c in grid}
    precision = {c: float(average_precision_score(labels, scores[c])) for c in grid}
    best = max(grid, key=lambda c: (precision[c], -c))
    return best, scores[best], {str(c): value for c, value in precision.items()}


def _rates(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"out_of_fold_recall": float(predicted[labels == 1].mean()),
            "out_of_fold_fpr": float(predicted[labels == 0].mean())}


def grouped_folds(labels: np.ndarray, groups: Sequence[str] | None, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """5 folds (fewer if a class or the groups are too few), grouped by ``groups`` when given."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    if groups is not None:
        if len(groups) != len(labels):
            raise InputError(f"need one group per text: {len(labels)} texts, {len(groups)} groups")
        splits = min(5, len(set(groups)))
        if splits < 2:
            raise InputError("grouped cross-validation needs at least 2 groups")
        return list(GroupKFold(n_splits=splits).split(labels, labels, groups=list(groups)))
    splits = min(5, int(np.bincount(labels).min()))
    if splits < 2:
        raise InputError("fitting needs at least 2 injections and 2 benign texts")
    return list(StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed).split(labels, labels))


def _threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The lowest threshold, not under 0.5 (nor over 0.95), flagging at most :data:`THRESHOLD_FPR` of the negatives."""
    negatives = np.sort(scores[labels == 0])
    allowed = int(np.floor(THRESHOLD_FPR * len(negatives)))  # negatives that may score at or above it
    cut = negatives[len(negatives) - allowed - 1] if allowed < len(negatives) else 0.0
    return float(min(max(0.5, np.nextafter(cut, 1.0)), 0.95))


def _metrics(evaluation: Any) -> dict[str, Any]:
    """The parts of an evaluation kept with the classifier file."""
    return {
        "data": evaluation.data, "examples": evaluation.examples,
        "overt_recall": evaluation.overt_recall, "benign_trigger_fpr": evaluation.benign_trigger_fpr,
        "overall": evaluation.overall.model_dump(), "overt": evaluation.overt.model_dump(),
        "categories": {row.category: {"count": row.count, "flagged": row.flagged, "recall": row.recall,
                                      "false_positive_rate": row.false_positive_rate}
                       for row in evaluation.categories},
        "latency_ms": evaluation.latency.model_dump() if evaluation.latency else None,
    }
