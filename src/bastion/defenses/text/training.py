"""Training the text guard's classifier on bastion's corpus: family-grouped cross-validation, ``bastion guard train``.

:func:`train_default` makes the shipped ``data/injection_classifier.json``; :class:`TrainingPieces` holds the
embeddings of every piece of a training set, so that cross-validation and the final fit embed each piece once.
"""

from __future__ import annotations

import logging
import platform
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.defenses.text.adapter import AdapterSettings, EncoderAdapter, fit_adapter
from bastion.defenses.text.calibration import apply_calibration, calibrate, shipped_calibration_texts
from bastion.defenses.text.classifier import (
    C_GRID,
    LEXICAL_C_GRID,
    THRESHOLD_FPR,
    InjectionClassifier,
    Pieces,
    lexical_embeddings,
    logistic_regression,
)
from bastion.defenses.text.corpus import (
    DOCSTRING_MODULES,
    LONG_PROMPT_CHARS,
    Example,
    assemble,
    corpus_digest,
    is_encoded,
    long_prompt,
    split_examples,
    summary,
)

logger = logging.getLogger(__name__)

#: Folds of a cross-validation: ``(fit_rows, held_rows)`` text indices of each.
Folds = list[tuple[np.ndarray, np.ndarray]]
#: The highest threshold either rule picks.
MAX_THRESHOLD = 0.95
#: Long benign prompts made from each fold's held-out texts to choose a long-text threshold.
LONG_PROMPTS_PER_FOLD = 100
#: A document paragraph of at least this many characters found in a fold's training texts is left out of the
#: fold's long benign prompts.
SHARED_PARAGRAPH_CHARS = 40
#: Categories of the requests that open a long benign prompt, and of the documents that fill it.
LONG_PROMPT_OPENINGS = ("benign", "benign-trigger")
LONG_PROMPT_DOCUMENTS = "benign-document"


@dataclass
class TrainingPieces:
    """Embeddings of the pieces (:meth:`InjectionClassifier.piece_spans`) of a set of training texts.

    ``spans``: every piece, text after text; ``owner`` ``(P,)``: the text of each; ``windows`` ``(N,)``: how
    many of a text's pieces are windows; ``starts`` ``(N,)``: each text's first piece (its first window, what
    both layers are fitted on). ``lexical`` ``(P, 384)``: lexical embeddings of every piece; ``contextual``
    ``(P, 384)``: sentence embeddings of the pieces the contextual layer may read (each text's first window,
    and the pieces after the windows), NaN elsewhere. ``texts`` and ``text_pieces``: the texts and each one's
    :meth:`~InjectionClassifier.piece_spans`, to read them again through another encoder (:meth:`read`).
    """

    spans: list[tuple[int, int]]
    owner: np.ndarray
    windows: np.ndarray
    starts: np.ndarray
    lexical: np.ndarray
    contextual: np.ndarray
    texts: list[str]
    text_pieces: list[Pieces]

    @classmethod
    def embed(cls, classifier: InjectionClassifier, texts: Sequence[str], *, contextual: bool = True
              ) -> TrainingPieces:
        """Embed every piece of ``texts``: lexically, and (``contextual``) through ``classifier``'s encoder."""
        texts = list(texts)
        pieces = [classifier.piece_spans(text) for text in texts]
        owner = np.repeat(np.arange(len(texts)), [len(spans) for spans, _ in pieces])
        spans = [span for text_spans, _ in pieces for span in text_spans]
        windows = np.array([count for _, count in pieces], dtype=np.int64)
        starts = np.searchsorted(owner, np.arange(len(texts)))
        logger.info("embedding %d pieces of %d training texts", len(owner), len(texts))
        lexical = lexical_embeddings(texts, pieces)
        made = cls(spans, owner, windows, starts, lexical, np.empty((0, lexical.shape[1]), np.float32), texts, pieces)
        made.contextual = made.read(classifier, np.arange(len(texts)) if contextual else np.empty(0, np.int64))
        return made

    def read(self, classifier: InjectionClassifier, texts: np.ndarray, heads: np.ndarray | None = None
             ) -> np.ndarray:
        """Sentence embeddings ``(P, 384)`` through ``classifier``'s encoder of the readable pieces of ``texts``
        and the first window only of ``heads`` (text indices); NaN in the rows of pieces not read."""
        chosen: list[list[int]] = [[] for _ in self.texts]
        for text in np.asarray(heads if heads is not None else [], dtype=np.int64).tolist():
            chosen[text] = [0]
        for text in np.asarray(texts, dtype=np.int64).tolist():
            spans, count = self.text_pieces[text]
            chosen[text] = (list(range(len(spans))) if classifier.is_short(spans[:count])
                            else [0, *range(count, len(spans))])
        contextual = np.full((len(self.owner), self.lexical.shape[1]), np.nan, dtype=np.float32)
        if any(chosen):
            embeddings, rows = classifier.read_contextually(self.texts, chosen, self.text_pieces)
            contextual[rows] = embeddings
        return contextual

    def text_max(self, piece_scores: np.ndarray) -> np.ndarray:
        """Each text's highest score ``(N,)`` over its pieces' ``piece_scores`` ``(P,)``."""
        best = np.full(len(self.starts), -np.inf)
        np.maximum.at(best, self.owner, piece_scores)
        return best

    def lexical_training_rows(self, labels: np.ndarray, texts: np.ndarray | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, targets)`` the lexical layer is fitted on: each text's first window, with the text's label,
        and every other piece of the benign texts, as benign (of the texts ``texts``, default all)."""
        return self._training_rows(labels, texts, benign_pieces=True)

    def contextual_training_rows(self, labels: np.ndarray, texts: np.ndarray | None = None,
                                 contextual: np.ndarray | None = None, benign_pieces: bool = False
                                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, targets)`` the contextual layer is fitted on, of the texts ``texts`` (default all): each one's
        first window, with the text's label, and with ``benign_pieces`` every other piece of the benign texts
        that ``contextual`` ``(P, 384)`` (default :attr:`contextual`) holds (rows not read are NaN), as benign."""
        return self._training_rows(labels, texts, benign_pieces=benign_pieces,
                                   read=self.contextual if contextual is None else contextual)

    def _training_rows(self, labels: np.ndarray, texts: np.ndarray | None, *, benign_pieces: bool,
                       read: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        chosen = np.arange(len(labels)) if texts is None else np.asarray(texts)
        heads = self.starts[chosen]
        if not benign_pieces:
            return heads, labels[chosen]
        benign = np.setdiff1d(np.flatnonzero(np.isin(self.owner, chosen[labels[chosen] == 0])), heads)
        if read is not None:
            benign = benign[~np.isnan(read[benign]).any(axis=1)]
        return (np.concatenate([heads, benign]),
                np.concatenate([labels[chosen], np.zeros(len(benign), dtype=np.int64)]))

    def lexical_models(self, labels: np.ndarray, folds: Folds, C: float, seed: int) -> list[Any]:
        """The lexical layer fitted on each fold's training texts."""
        models = []
        for fit_rows, _ in folds:
            rows, targets = self.lexical_training_rows(labels, fit_rows)
            models.append(logistic_regression(C, seed).fit(self.lexical[rows], targets))
        return models

    def lexical_out_of_fold(self, labels: np.ndarray | None, folds: Folds, C: float, seed: int,
                            models: Sequence[Any] | None = None) -> np.ndarray:
        """Each piece's lexical probability ``(P,)``, from a model fitted without its text's fold: ``models[k]``
        for fold ``k`` where given (then ``labels`` may be ``None``), else :meth:`lexical_models`."""
        if models is None:
            models = self.lexical_models(_known(labels), folds, C, seed)
        predicted = np.zeros(len(self.owner))
        for model, (_, held_rows) in zip(models, folds, strict=True):
            held = np.isin(self.owner, held_rows)
            if held.any():
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

    def contextual_models(self, labels: np.ndarray, folds: Folds, C: float, seed: int,
                          per_fold: Sequence[np.ndarray] | None = None, benign_pieces: bool = False) -> list[Any]:
        """The contextual layer fitted on each fold's training texts (:meth:`contextual_training_rows`), read from
        ``per_fold[k]`` ``(P, 384)`` for fold ``k`` where given (each fold's own encoder), else from
        :attr:`contextual`."""
        models = []
        for index, (fit_rows, _) in enumerate(folds):
            contextual = self.contextual if per_fold is None else per_fold[index]
            rows, targets = self.contextual_training_rows(labels, fit_rows, contextual, benign_pieces)
            models.append(logistic_regression(C, seed).fit(contextual[rows], targets))
        return models

    def contextual_out_of_fold(self, labels: np.ndarray | None, folds: Folds, C: float, seed: int,
                               focus: np.ndarray, per_fold: Sequence[np.ndarray] | None = None,
                               models: Sequence[Any] | None = None, benign_pieces: bool = False) -> np.ndarray:
        """Each text's highest contextual probability ``(N,)`` over the pieces ``focus`` it reads, from a model
        fitted without its fold (``models[k]`` for fold ``k`` where given, then ``labels`` may be ``None``; else
        :meth:`contextual_models`), reading ``per_fold[k]`` ``(P, 384)`` for fold ``k`` where given, else
        :attr:`contextual`."""
        if models is None:
            models = self.contextual_models(_known(labels), folds, C, seed, per_fold, benign_pieces)
        predicted = np.zeros(len(self.starts))
        for index, (model, (_, held_rows)) in enumerate(zip(models, folds, strict=True)):
            contextual = self.contextual if per_fold is None else per_fold[index]
            held = focus[np.isin(self.owner[focus], held_rows)]
            if len(held):
                np.maximum.at(predicted, self.owner[held], model.predict_proba(contextual[held])[:, 1])
        return predicted

    def first_windows(self, max_tokens: int) -> list[list[int]]:
        """Token ids of each text's first piece (with [CLS] and [SEP], at most ``max_tokens``): what adapters train
        on (cut further to their own ``max_tokens``)."""
        from bastion.defenses.text.embedding import load_model

        model = load_model()
        return [model.tokenize(self.texts[text][slice(*self.spans[start])], max_tokens)
                for text, start in enumerate(self.starts.tolist())]


def train_default(out_path: str | Path, seed: int = 0, *, threads: int | None = 1,
                  adapter: AdapterSettings | None = AdapterSettings(), benign_pieces: bool = False) -> dict[str, Any]:
    """Train the shipped classifier, and the encoder adapter it reads through, on the train split of
    :func:`~bastion.defenses.text.corpus.assemble`.

    Texts made by encoding another (Base64, hex, ROT13, reversed, zero-width, homoglyphs) are left out of
    training: they are the normalisation layer's to decode, and a classifier trained on them learns that any
    blob is an attack. Everything is chosen on the train split only, by cross-validation that holds out whole
    template families (so each fold, like the eval split, scores phrasings its model never saw): each layer's
    ``C`` maximises its out-of-fold average precision, the combination is fitted on the out-of-fold scores,
    and the threshold is the lowest value, not under 0.5, whose out-of-fold false-positive rate on the
    training negatives is at most :data:`THRESHOLD_FPR`. A threshold for texts read by pieces is chosen by the
    same bound on long benign prompts (:func:`long_benign_prompts`) made from each fold's held-out texts, scored
    by that fold's layers with the final combination and gate (a long text's score is its most suspicious
    piece's, so benign documents' false alarms add up over its pieces); it is recorded under
    ``training.cross_validation.long_texts``, not applied (an attacker can pad a prompt past the length that
    selects it), for :class:`~bastion.defenses.text.guard.PromptGuard`'s ``long_threshold``. With ``adapter``
    settings (the default; ``None``: the encoder as published), an adapter is trained in every fold on that
    fold's training texts, so the out-of-fold contextual scores come from an encoder that never saw their
    families either, and a last one on the whole split is shipped (six adapters, each a soup of ``adapter.soup``
    trainings: 18 by default, the longest part, about 2.5 minutes each on 2 cores).
    ``threads`` applies to the embedding and, where ``adapter.threads`` is ``None``, to the adapter's training.
    With ``benign_pieces``, the contextual layer is fitted also on every piece it can read of the benign texts
    (:meth:`TrainingPieces.contextual_training_rows`), as the lexical layer is.
    Last, the threshold is calibrated (:func:`~bastion.defenses.text.calibration.calibrate`): the lowest at which
    the whole guard flags at most 4% of bastion's calibration prompts (benign, full of trigger words, never trained
    on); the out-of-fold one stays in the record. The eval split is scored once, at the end, by the classifier
    alone. Writes the classifier to ``out_path`` (and its adapter beside it) and returns its metrics.
    """
    examples = assemble(seed)
    train = [example for example in split_examples(examples, "train") if not is_encoded(example)]
    held_out = split_examples(examples, "eval")
    texts, labels = [e.text for e in train], np.array([e.label for e in train])
    classifier = InjectionClassifier(threads=threads, seed=seed)
    pieces = TrainingPieces.embed(classifier, texts, contextual=adapter is None)
    folds = grouped_folds(labels, [e.family for e in train], seed)
    long_texts, long_folds = long_benign_prompts(train, folds, seed)
    long_pieces = TrainingPieces.embed(classifier, long_texts, contextual=adapter is None)
    lexical_models = {c: pieces.lexical_models(labels, folds, c, seed) for c in LEXICAL_C_GRID}
    lexical_pieces = {c: pieces.lexical_out_of_fold(labels, folds, c, seed, lexical_models[c]) for c in LEXICAL_C_GRID}
    lexical_c, lexical_oof, lexical_ap = _best_c(LEXICAL_C_GRID, lambda c: pieces.text_max(lexical_pieces[c]), labels)
    focus = pieces.focus_rows(classifier, lexical_pieces[lexical_c])
    long_lexical = long_pieces.lexical_out_of_fold(None, long_folds, lexical_c, seed, lexical_models[lexical_c])
    long_focus = long_pieces.focus_rows(classifier, long_lexical)
    per_fold = long_per_fold = None
    if adapter is not None:
        if adapter.threads is None and threads is not None:
            adapter = replace(adapter, threads=threads)
        windows = pieces.first_windows(classifier.max_tokens)
        per_fold, long_per_fold = _fold_encoders(classifier, pieces, labels, folds, adapter, windows,
                                                 (long_pieces, long_folds), benign_pieces)
        classifier.adapter_ = _fit_adapter(windows, labels, np.arange(len(labels)), adapter, "the whole train split")
        pieces.contextual = pieces.read(classifier, *_fitted_reads(labels, np.arange(len(labels)), benign_pieces))
    contextual_c, contextual_oof, contextual_ap = _best_c(C_GRID, lambda c: pieces.contextual_out_of_fold(
        labels, folds, c, seed, focus, per_fold, benign_pieces=benign_pieces), labels)
    contextual_models = pieces.contextual_models(labels, folds, contextual_c, seed, per_fold, benign_pieces)
    long_contextual = long_pieces.contextual_out_of_fold(None, long_folds, contextual_c, seed, long_focus,
                                                         long_per_fold, contextual_models)
    classifier.set_params(C=contextual_c, lexical_C=lexical_c)
    classifier.fit_pieces(pieces, labels, contextual_oof, lexical_oof, corpus_sha256=corpus_digest(texts, labels),
                          benign_pieces=benign_pieces)
    combined = classifier.combine(lexical_oof, contextual_oof)
    classifier.threshold = _threshold(combined, labels)
    classifier.set_gate(lexical_oof, contextual_oof, labels)
    long_scores = classifier.gated(long_pieces.text_max(long_lexical), long_contextual)
    long_threshold = _threshold(long_scores, np.zeros(len(long_scores), np.int64), classifier.threshold)
    read_long = ~np.array([classifier.is_short(spans[:count]) for spans, count in pieces.text_pieces])
    judged_at = np.where(read_long, long_threshold, classifier.threshold)
    skipped = lexical_oof < classifier.lexical_.skip_below  # type: ignore[union-attr]
    cv = {"folds": len(folds), "grouped_by": "template family",
          "threshold_rule": f"lowest >= 0.5 with out-of-fold FPR <= {THRESHOLD_FPR}", "threshold": classifier.threshold,
          "adapter_per_fold": adapter is not None, "contextual_benign_pieces": benign_pieces,
          "combined": _rates(combined >= classifier.threshold, labels),
          "long_texts": {
              "threshold_rule": f"lowest >= threshold, at most {MAX_THRESHOLD}, with out-of-fold FPR <= "
                                f"{THRESHOLD_FPR} on long benign prompts (with the gate); not applied unless asked",
              "long_threshold": long_threshold, "long_benign_prompts": len(long_texts),
              "capped": bool((long_scores >= MAX_THRESHOLD).mean() > THRESHOLD_FPR),
              "prompt_fpr_at_threshold": float((long_scores >= classifier.threshold).mean()),
              "prompt_fpr_at_long_threshold": float((long_scores >= long_threshold).mean()),
              "training_texts_read_by_pieces": int(read_long.sum()),
              "recall_figures": "the combination's out-of-fold scores without the gate, as 'combined'",
              "applied": False,
              "combined_at_both_thresholds": _rates(combined >= judged_at, labels),
              "long_injections_recall": {
                  "at_threshold": _recall(combined[read_long] >= classifier.threshold, labels[read_long]),
                  "at_long_threshold": _recall(combined[read_long] >= long_threshold, labels[read_long])}},
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
    if adapter is not None:
        classifier.training_["adapter"] = {**adapter.as_record(), "trained_on": "each text's first window"}
    calibration = calibrate(classifier, shipped_calibration_texts())
    apply_calibration(classifier, calibration)
    logger.info("calibrated threshold %s (out of fold %.4f)", calibration.threshold, calibration.previous_threshold)
    metrics = score_eval_split(classifier, seed, held_out)
    classifier.evaluation_ = metrics
    classifier.threads = None  # a setting of the process that loads the file, not of the model
    classifier.save(out_path)
    return metrics


def score_eval_split(classifier: InjectionClassifier, seed: int = 0,
                     held_out: Sequence[Example] | None = None) -> dict[str, Any]:
    """The figures of ``classifier`` alone, at its threshold, on the eval split of
    :func:`~bastion.defenses.text.corpus.assemble` (``held_out``, where given, is that split), as kept in its file
    (``evaluation``)."""
    from bastion.defenses.text.evaluate import evaluate

    if held_out is None:
        held_out = split_examples(assemble(seed), "eval")
    logger.info("scoring %d eval texts with the classifier alone", len(held_out))
    evaluation = evaluate(classifier.screen, held_out, guard="classifier alone",
                          data=f"bastion corpus, eval split (seed {seed}): template families never trained on")
    return {**_metrics(evaluation), "threshold": classifier.threshold}


def _fold_encoders(classifier: InjectionClassifier, pieces: TrainingPieces, labels: np.ndarray, folds: Folds,
                   settings: AdapterSettings, windows: list[list[int]],
                   extra: tuple[TrainingPieces, Folds] | None = None, benign_pieces: bool = False
                   ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """For each fold, the contextual embeddings ``(P, 384)`` through an adapter trained on the fold's training
    texts (their ``windows``, :meth:`TrainingPieces.first_windows`): of those texts' first windows (to fit the
    layer; with ``benign_pieces``, all the readable pieces of the benign ones) and of the held-out texts' readable
    pieces; and, where ``extra`` (other texts and their folds) is given, of the readable pieces of the other texts
    each fold holds out (``None`` when not given)."""
    per_fold, extra_per_fold = [], []
    for index, (fit_rows, held_rows) in enumerate(folds):
        fold = InjectionClassifier(**classifier.get_params())
        fold.adapter_ = _fit_adapter(windows, labels, fit_rows, settings, f"fold {index + 1} of {len(folds)}")
        whole, heads = _fitted_reads(labels, fit_rows, benign_pieces)
        per_fold.append(pieces.read(fold, np.concatenate([held_rows, whole]), heads=heads))
        if extra is not None:
            other, other_folds = extra
            extra_per_fold.append(other.read(fold, other_folds[index][1]))
    return per_fold, extra_per_fold if extra is not None else None


def _fitted_reads(labels: np.ndarray, rows: np.ndarray, benign_pieces: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(whole, heads)``: of the texts ``rows`` a contextual layer is fitted on, those whose readable pieces are
    all read (the benign ones, with ``benign_pieces``) and those of which only the first window is."""
    if not benign_pieces:
        return np.empty(0, np.int64), rows
    benign = labels[rows] == 0
    return rows[benign], rows[~benign]


def long_benign_prompts(train: Sequence[Example], folds: Folds, seed: int,
                        per_fold: int = LONG_PROMPTS_PER_FOLD) -> tuple[list[str], Folds]:
    """``(texts, folds)``: ``per_fold`` long benign prompts (:func:`~bastion.defenses.text.corpus.long_prompt`:
    a benign or trigger-word request, then benign documents, :data:`LONG_PROMPT_CHARS` characters) made from each
    fold's held-out ``train`` texts only, and folds over them (nothing fitted on; each fold holds out its own), so
    that the fold's models score prompts none of whose parts they were fitted on: a document paragraph of at least
    :data:`SHARED_PARAGRAPH_CHARS` characters that also appears in one of the fold's training texts (families share
    carrier documents, e.g. an injection planted in the same docstring) is left out. A fold without openings or
    documents makes none.

    Raises:
        InputError: ``per_fold`` is under 1, or no fold has both openings and documents.
    """
    if per_fold < 1:
        raise InputError(f"per_fold must be at least 1, got {per_fold}")
    rng = random.Random(seed)
    texts: list[str] = []
    long_folds: Folds = []
    for fit_rows, held_rows in folds:
        held = [train[i] for i in held_rows.tolist()]
        openings = [e.text for e in held if e.category in LONG_PROMPT_OPENINGS and e.label == 0]
        fitted = "\x00".join(train[i].text for i in fit_rows.tolist())
        documents = [_unseen_paragraphs(e.text, fitted) for e in held
                     if e.category == LONG_PROMPT_DOCUMENTS and e.label == 0]
        documents = [document for document in documents if document]
        count = per_fold if openings and documents else 0
        made = ["\n\n".join(long_prompt(rng.choice(openings), documents, rng))[:LONG_PROMPT_CHARS]
                for _ in range(count)]
        long_folds.append((np.empty(0, np.int64), np.arange(len(texts), len(texts) + len(made))))
        texts += made
    if not texts:
        raise InputError("no fold holds both benign requests and benign documents to make long benign prompts "
                         "from; the train split needs texts of both categories")
    logger.info("made %d long benign prompts from the folds' held-out texts", len(texts))
    return texts, long_folds


def _unseen_paragraphs(document: str, fitted: str) -> str:
    """The paragraphs of ``document``, joined by blank lines, less those of at least :data:`SHARED_PARAGRAPH_CHARS`
    characters that occur in ``fitted`` (texts joined; shorter ones, such as "Thanks,", are common to many)."""
    paragraphs = [part.strip() for part in document.split("\n\n") if part.strip()]
    return "\n\n".join(part for part in paragraphs if len(part) < SHARED_PARAGRAPH_CHARS or part not in fitted)


def _fit_adapter(windows: list[list[int]], labels: np.ndarray, rows: np.ndarray, settings: AdapterSettings,
                 what: str) -> EncoderAdapter:
    logger.info("training an encoder adapter (a soup of %d) on %d texts (%s)", settings.soup, len(rows), what)
    return fit_adapter([windows[i] for i in rows.tolist()], labels[rows], settings)


def _best_c(grid: Sequence[float], out_of_fold: Any, labels: np.ndarray
            ) -> tuple[float, np.ndarray, dict[str, float]]:
    """``(C, its out-of-fold scores, average precision of each C)``: the C of ``grid`` scoring best."""
    from sklearn.metrics import average_precision_score

    scores = {c: out_of_fold(c) for c in grid}
    precision = {c: float(average_precision_score(labels, scores[c])) for c in grid}
    best = max(grid, key=lambda c: (precision[c], -c))
    return best, scores[best], {str(c): value for c, value in precision.items()}


def _recall(predicted: np.ndarray, labels: np.ndarray) -> float | None:
    return float(predicted[labels == 1].mean()) if (labels == 1).any() else None


def _known(labels: np.ndarray | None) -> np.ndarray:
    if labels is None:
        raise InputError("labels are needed to fit the folds' models (or pass the fitted models)")
    return labels


def _rates(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"out_of_fold_recall": float(predicted[labels == 1].mean()),
            "out_of_fold_fpr": float(predicted[labels == 0].mean())}


def grouped_folds(labels: np.ndarray, groups: Sequence[str] | None, seed: int) -> Folds:
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


def _threshold(scores: np.ndarray, labels: np.ndarray, floor: float = 0.5) -> float:
    """The lowest threshold, not under ``floor`` (nor over :data:`MAX_THRESHOLD`), flagging at most
    :data:`THRESHOLD_FPR` of the negatives."""
    negatives = np.sort(scores[labels == 0])
    allowed = int(np.floor(THRESHOLD_FPR * len(negatives)))  # negatives that may score at or above it
    cut = negatives[len(negatives) - allowed - 1] if allowed < len(negatives) else 0.0
    return float(min(max(floor, np.nextafter(cut, 1.0)), MAX_THRESHOLD))


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
