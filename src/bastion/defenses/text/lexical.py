"""The text guard's lexical embeddings: all-MiniLM-L6-v2's input token vectors, averaged, no transformer pass.

A text's lexical embedding is the unit-length mean of its tokens' input vectors (the model's word embedding
plus its token-type embedding, through the model's embedding LayerNorm; no position). It costs a tokenisation
and a table look-up (tens of microseconds for a sentence, against tens of milliseconds for a contextual
embedding), and it carries what a text is about and how it addresses its reader, not how its words relate.

Why it is in the guard: in family-held-out evaluation a logistic regression on these vectors recognised
injection phrasings it had never seen better than one on the contextual sentence embeddings (which in turn
tell documents full of imperative prose from injections far better). The classifier combines the two
(:class:`~bastion.defenses.text.classifier.InjectionClassifier`), and because this layer is nearly free it also
decides which texts are worth a contextual pass at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from bastion.core.errors import InputError
from bastion.defenses.text.embedding import DIMENSION, check_texts, load_model, unit_length


@lru_cache(maxsize=1)
def token_table() -> np.ndarray:
    """The model's input vector of every token id, ``(vocabulary, 384)`` float32 (LayerNorm of word + type)."""
    model = load_model()
    vectors = (model.word + model.token_type)[None]
    return np.ascontiguousarray(model._layer_norm(vectors, model.embedding_norm)[0], dtype=np.float32)


def encode_lexical(texts: Sequence[str]) -> np.ndarray:
    """Lexical embeddings of ``texts``, shape ``(N, 384)`` float32, unit length (zeros for a text with no token).

    Every token of every text counts (no window): the caller bounds the texts' length.
    """
    table = token_table()
    encodings = load_model().tokenizer.encode_batch(check_texts(texts), add_special_tokens=False)
    out = np.zeros((len(encodings), DIMENSION), dtype=np.float32)
    for row, encoding in enumerate(encodings):
        if encoding.ids:
            out[row] = table[encoding.ids].mean(axis=0)
    return unit_length(out)


def encode_lexical_pieces(text: str, spans: Sequence[tuple[int, int]], windows: int) -> np.ndarray:
    """Lexical embeddings of the pieces ``text[a:b]`` for ``(a, b)`` in ``spans``, ``(P, 384)`` float32, unit length;
    equal to :func:`encode_lexical` of the cut pieces, at the cost of one tokenisation of the windows.

    The first ``windows`` spans are windows holding all the others (as
    :meth:`~bastion.defenses.text.classifier.InjectionClassifier.piece_spans` gives them). Each run of adjacent
    windows is tokenised once, and a piece whose ends fall between words of that tokenisation (sentences, lines
    and windows cut at spaces do) gets the mean of the run's tokens inside it. A piece with an end inside a token
    or between two tokens of one word is tokenised alone: that word would be split differently.
    """
    table = token_table()
    model = load_model()
    out = np.zeros((len(spans), DIMENSION), dtype=np.float32)
    pending = np.ones(len(spans), dtype=bool)
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    for run_start, run_end in _runs(spans[:windows]):
        inside = np.flatnonzero(pending & (bounds[:, 0] >= run_start) & (bounds[:, 1] <= run_end))
        pending[inside] = False
        ids, offsets, words = model.encode_plain(text[run_start:run_end])
        starts, ends = offsets[:, 0] + run_start, offsets[:, 1] + run_start
        cut = [index for index in inside.tolist()
               if any(_splits_a_word(int(end), starts, ends, words) for end in bounds[index])]
        if cut:
            out[cut] = encode_lexical([text[slice(*spans[index])] for index in cut])
        whole = np.setdiff1d(inside, cut)
        if not len(whole) or not len(ids):
            continue
        member = (starts[None, :] >= bounds[whole, :1]) & (ends[None, :] <= bounds[whole, 1:])
        counts = member.sum(axis=1, keepdims=True)
        out[whole] = (member.astype(np.float32) @ table[ids]) / np.maximum(counts, 1).astype(np.float32)
    if pending.any():
        raise InputError(f"piece {spans[int(np.argmax(pending))]} lies in none of the first {windows} spans "
                         "(the windows)")
    return unit_length(out)


def _runs(windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``windows`` sorted, with adjacent or overlapping ones merged."""
    runs: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        if runs and start <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(end, runs[-1][1]))
        else:
            runs.append((start, end))
    return runs


def _splits_a_word(position: int, starts: np.ndarray, ends: np.ndarray, words: np.ndarray) -> bool:
    """Whether a cut at character ``position`` falls inside a token or between two tokens of one word, given the
    tokens' character ``starts`` and ``ends`` and word indices ``words`` (``(T,)`` each)."""
    after = int(np.searchsorted(starts, position, side="left"))  # the first token starting at or after the cut
    if after > 0 and ends[after - 1] > position:
        return True
    return 0 < after < len(starts) and words[after - 1] >= 0 and words[after - 1] == words[after]
