"""Duplicate audits: exact copies, near copies, and train/test leakage.

- :func:`exact_duplicates`: samples with byte-identical content (a SHA-256 of the array, the label
  left out). A group of copies that agree on the label wastes capacity and skews the class balance;
  one that disagrees is a labelling error (or a label-flip attack) and is flagged whole.
- :func:`near_duplicates`: pairs whose cosine similarity is at least ``threshold``, from model
  features when given, else from the raw inputs (images averaged down to at most 16x16). Vectors are
  centred on the data's mean first: raw pixels are all positive, and without centring any two
  images of the same class look alike.
- :func:`leakage`: test samples that copy, exactly or nearly, a training sample; a test score on
  such samples measures memory, not generalisation.

Scores (higher = more suspicious): exact: 0 unique, 1 one of a group of copies, 2 one of a group
whose labels conflict; near and leakage: the cosine similarity to the nearest other (training) sample.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from bastion.core.errors import InputError
from bastion.data.audit.inputs import (
    ArrayLike,
    as_array,
    check_ids,
    check_labels,
    check_length,
    sample_vectors,
    unit_rows,
)
from bastion.data.audit.result import AuditResult

#: Default cosine similarity from which two samples count as near duplicates.
NEAR_THRESHOLD = 0.99
#: Neighbour search runs on at most this many principal components; the match is then re-scored exactly.
SEARCH_DIMS = 64


def content_hashes(x: ArrayLike) -> list[str]:
    """SHA-256 per sample of its shape and float32 bytes: equal for equal content, whatever the label."""
    array = as_array(x, "x")
    if array.ndim == 0:
        raise InputError("x must be an array of samples (N, ...)")
    rows = np.ascontiguousarray(array, dtype=np.float32).reshape(len(array), -1)
    shape = str(tuple(array.shape[1:])).encode()
    return [hashlib.sha256(shape + row.tobytes()).hexdigest() for row in rows]


def exact_duplicates(ids: Sequence[str], x: ArrayLike, labels: ArrayLike) -> AuditResult:
    """Find byte-identical samples.

    Args:
        ids: ``N`` sample ids. x: ``(N, ...)`` samples. labels: ``(N,)`` class indices.

    Returns:
        An :class:`AuditResult` named ``exact-duplicates``. Flags: every copy after the first in a
        group that agrees on the label (keep one), and every member of a group whose labels conflict.
        ``summary["groups"]`` lists each group's ids and labels.
    """
    ids = check_ids(ids)
    array = as_array(x, "x")
    check_length(array, len(ids), "x")
    y = check_labels(labels, len(ids))
    members: dict[str, list[int]] = defaultdict(list)
    for index, digest in enumerate(content_hashes(array)):
        members[digest].append(index)
    scores = np.zeros(len(ids))
    flags = np.zeros(len(ids), dtype=bool)
    groups = []
    for rows in members.values():
        if len(rows) < 2:
            continue
        conflicting = len(set(y[rows].tolist())) > 1
        scores[rows] = 2.0 if conflicting else 1.0
        flags[rows if conflicting else rows[1:]] = True
        groups.append({"ids": [ids[i] for i in rows], "labels": y[rows].tolist(), "conflicting": conflicting})
    summary = {"groups": groups, "group_count": len(groups),
               "conflicting_groups": sum(g["conflicting"] for g in groups),
               "redundant_copies": sum(len(g["ids"]) - 1 for g in groups if not g["conflicting"]),
               "flagged": int(flags.sum())}
    return AuditResult(name="exact-duplicates", params={}, ids=ids, scores=scores.tolist(),
                       flags=flags.tolist(), summary=summary)


def near_duplicates(
    ids: Sequence[str],
    x: ArrayLike | None = None,
    *,
    features: ArrayLike | None = None,
    threshold: float = NEAR_THRESHOLD,
    max_side: int = 16,
) -> AuditResult:
    """Find samples nearly identical to another one.

    Args:
        ids: ``N`` sample ids.
        x: ``(N, ...)`` samples (used when ``features`` is not given).
        features: ``(N, D)`` vectors to compare, e.g. a model's penultimate features.
        threshold: cosine similarity (of mean-centred vectors) from which a pair is a near duplicate,
            default 0.99.
        max_side: raw images are averaged down to at most this side, default 16.

    Returns:
        An :class:`AuditResult` named ``near-duplicates``; scores: similarity to the nearest other
        sample. Samples linked by a similarity >= ``threshold`` form groups; all but the first member
        of each group are flagged. ``summary["groups"]`` lists the groups' ids.
    """
    ids = check_ids(ids)
    _check_threshold(threshold)
    vectors = sample_vectors(x, features, len(ids), max_side=max_side)
    if len(ids) < 2:
        return AuditResult(name="near-duplicates", params={"threshold": threshold}, ids=ids, scores=[0.0],
                           flags=[False], summary={"groups": [], "group_count": 0, "flagged": 0})
    units = unit_rows(vectors, vectors.mean(axis=0))
    neighbour = _nearest(units, units, exclude_self=True)
    similarity = np.einsum("ij,ij->i", units, units[neighbour])
    groups = _link_groups(len(ids), [(i, int(j)) for i, j in enumerate(neighbour) if similarity[i] >= threshold])
    flags = np.zeros(len(ids), dtype=bool)
    for rows in groups:
        flags[rows[1:]] = True
    summary = {"groups": [[ids[i] for i in rows] for rows in groups], "group_count": len(groups),
               "flagged": int(flags.sum()), "vectors": "features" if features is not None else "raw inputs"}
    return AuditResult(name="near-duplicates", params={"threshold": threshold, "max_side": max_side}, ids=ids,
                       scores=similarity.tolist(), flags=flags.tolist(), summary=summary)


def leakage(
    train_ids: Sequence[str],
    x_train: ArrayLike | None,
    test_ids: Sequence[str],
    x_test: ArrayLike | None,
    *,
    features_train: ArrayLike | None = None,
    features_test: ArrayLike | None = None,
    threshold: float = NEAR_THRESHOLD,
    max_side: int = 16,
) -> AuditResult:
    """Find test samples that duplicate a training sample, exactly or nearly.

    Args:
        train_ids, test_ids: sample ids of the two sets.
        x_train, x_test: ``(N_train, ...)`` and ``(N_test, ...)`` samples (needed for exact matches, and
            for near matches when no features are given).
        features_train, features_test: optional ``(N, D)`` vectors for the near matches (both or neither).
        threshold: cosine similarity (vectors centred on the training mean) from which a test sample
            leaks, default 0.99.
        max_side: raw images are averaged down to at most this side, default 16.

    Returns:
        An :class:`AuditResult` named ``leakage`` over the *test* ids: scores are the similarity to the
        nearest training sample (1.0 for an exact copy); flags mark leaked test samples.
        ``summary["matches"]`` names, per leaked test id, its training twin and whether it is exact.
    """
    train_ids, test_ids = check_ids(train_ids, "train_ids"), check_ids(test_ids, "test_ids")
    _check_threshold(threshold)
    if (features_train is None) != (features_test is None):
        raise InputError("give features for both the training and the test samples, or for neither")
    if x_train is None or x_test is None:
        if features_train is None:
            raise InputError("leakage needs the samples (x_train, x_test) or features for both sets")
        exact = np.full(len(test_ids), -1)
    else:
        exact = _exact_matches(x_train, len(train_ids), x_test, len(test_ids))
    train_vectors = sample_vectors(x_train, features_train, len(train_ids), max_side=max_side, x_name="x_train")
    test_vectors = sample_vectors(x_test, features_test, len(test_ids), max_side=max_side, x_name="x_test")
    if train_vectors.shape[1] != test_vectors.shape[1]:
        raise InputError(f"training and test vectors differ in size ({train_vectors.shape[1]} and "
                         f"{test_vectors.shape[1]}); the two sets must have the same sample shape")
    centre = train_vectors.mean(axis=0)
    train_units, test_units = unit_rows(train_vectors, centre), unit_rows(test_vectors, centre)
    neighbour = _nearest(train_units, test_units, exclude_self=False)
    similarity = np.einsum("ij,ij->i", test_units, train_units[neighbour])
    is_exact = exact >= 0
    similarity[is_exact] = 1.0
    twin = np.where(is_exact, exact, neighbour)
    flags = is_exact | (similarity >= threshold)
    matches = [{"test_id": test_ids[i], "train_id": train_ids[int(twin[i])], "similarity": float(similarity[i]),
                "exact": bool(is_exact[i])} for i in np.flatnonzero(flags)]
    summary = {"matches": matches, "exact": int(is_exact.sum()), "near": int((flags & ~is_exact).sum()),
               "flagged": int(flags.sum()), "test_size": len(test_ids),
               "vectors": "features" if features_train is not None else "raw inputs"}
    return AuditResult(name="leakage", params={"threshold": threshold, "max_side": max_side}, ids=test_ids,
                       scores=similarity.tolist(), flags=flags.tolist(), summary=summary)


def _check_threshold(threshold: float) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not -1.0 < threshold <= 1.0:
        raise InputError(f"threshold must be a cosine similarity in (-1, 1], got {threshold!r}")


def _exact_matches(x_train: ArrayLike, n_train: int, x_test: ArrayLike, n_test: int) -> np.ndarray:
    """Per test sample, the index of a training sample with identical content, or -1."""
    train, test = as_array(x_train, "x_train"), as_array(x_test, "x_test")
    check_length(train, n_train, "x_train", "train_ids")
    check_length(test, n_test, "x_test", "test_ids")
    if train.shape[1:] != test.shape[1:]:
        raise InputError(f"training samples have shape {train.shape[1:]} but test samples {test.shape[1:]}")
    first = {}
    for index, digest in enumerate(content_hashes(train)):
        first.setdefault(digest, index)
    return np.array([first.get(digest, -1) for digest in content_hashes(test)])


def _nearest(reference: np.ndarray, queries: np.ndarray, *, exclude_self: bool) -> np.ndarray:
    """Index in ``reference`` of each query's nearest row (unit vectors: nearest = most similar).

    The search runs on the top principal components when vectors are long, then the few candidates
    found are re-scored on the full vectors, so the returned similarity is exact.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    ref, qry = reference, queries
    if reference.shape[1] > SEARCH_DIMS and len(reference) > SEARCH_DIMS:
        pca = PCA(n_components=SEARCH_DIMS, random_state=0).fit(reference)
        ref, qry = pca.transform(reference), pca.transform(queries)
    candidates = min(len(reference), 5 + int(exclude_self))
    found = NearestNeighbors(n_neighbors=candidates).fit(ref).kneighbors(qry, return_distance=False)
    similarity = np.einsum("ikd,id->ik", reference[found], queries)
    if exclude_self:
        similarity[found == np.arange(len(queries))[:, None]] = -np.inf
    return found[np.arange(len(queries)), similarity.argmax(axis=1)]


def _link_groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected groups (each sorted, listed by first member) of the graph on ``n`` nodes with ``pairs``."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in {i for pair in pairs for i in pair}:
        groups[root(i)].append(i)
    return sorted((sorted(rows) for rows in groups.values()), key=lambda rows: rows[0])
