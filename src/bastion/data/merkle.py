"""A Merkle tree over byte strings (the manifest's entries), with inclusion proofs.

Hashes are domain-separated so that a leaf can never pass for an inner node: a leaf is
``SHA-256(0x00 || data)``, an inner node ``SHA-256(0x01 || left || right)``. Each level pairs its
nodes from the left; an odd node out is carried up unchanged. The root of no leaves is
``SHA-256(b"")``. Hashes are hex strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from bastion.core.errors import InputError

_LEAF = b"\x00"
_NODE = b"\x01"


class ProofStep(BaseModel):
    """One sibling on the way up: ``side`` says whether it sits left or right of the running hash."""

    sibling: str
    side: Literal["left", "right"]


class InclusionProof(BaseModel):
    """Proves that the leaf ``index`` of a tree of ``count`` leaves hashes into ``root``."""

    index: int
    count: int
    leaf: str
    steps: list[ProofStep]
    root: str


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an inner node."""
    return hashlib.sha256(_NODE + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> str:
    """Hex root over the leaf data ``leaves`` (in order)."""
    sha256 = hashlib.sha256
    return root_of_leaf_hashes([sha256(_LEAF + d).digest() for d in leaves])


def root_of_leaf_hashes(hashes: list[bytes]) -> str:
    """Hex root of the tree whose leaf hashes (``leaf_hash`` of each leaf's data, in order) are ``hashes``.

    For callers that hash their leaves as they make them; ``merkle_root(leaves)`` equals
    ``root_of_leaf_hashes([leaf_hash(d) for d in leaves])``.
    """
    return _levels(hashes)[-1][0].hex()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> InclusionProof:
    """The proof that ``leaves[index]`` is in the tree over ``leaves``.

    Raises:
        InputError: ``index`` outside ``0 .. len(leaves) - 1``.
    """
    if not 0 <= index < len(leaves):
        raise InputError(f"leaf index {index} is outside the tree of {len(leaves)} leaves")
    levels = _levels([leaf_hash(d) for d in leaves])
    steps = []
    position = index
    for level in levels[:-1]:
        sibling = position ^ 1
        if sibling < len(level):
            steps.append(ProofStep(sibling=level[sibling].hex(), side="left" if sibling < position else "right"))
        position //= 2
    return InclusionProof(index=index, count=len(leaves), leaf=levels[0][index].hex(), steps=steps,
                          root=levels[-1][0].hex())


def verify_inclusion(data: bytes, proof: InclusionProof, root: str) -> bool:
    """Whether ``data`` is the leaf ``proof`` names in the tree whose root is ``root``."""
    running = leaf_hash(data)
    if running.hex() != proof.leaf:
        return False
    try:
        for step in proof.steps:
            sibling = bytes.fromhex(step.sibling)
            running = node_hash(sibling, running) if step.side == "left" else node_hash(running, sibling)
    except ValueError:
        return False
    return running.hex() == root


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, the root's level (one hash) last."""
    sha256 = hashlib.sha256
    levels = [hashes or [sha256(b"").digest()]]
    while len(levels[-1]) > 1:
        level = levels[-1]
        # node_hash of each pair, inlined: this runs once per inner node (N - 1 times for N leaves).
        pairs = zip(level[0:len(level) - 1:2], level[1::2], strict=True)
        parents = [sha256(_NODE + left + right).digest() for left, right in pairs]
        if len(level) % 2:
            parents.append(level[-1])
        levels.append(parents)
    return levels
