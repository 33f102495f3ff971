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

from bastion.defenses.text.embedding import DIMENSION, check_texts, load_model


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
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, np.float32(1e-12))
