"""What differs between two lists of samples: added, removed, changed, relabelled and moved, by id.

Used by :func:`bastion.data.manifest.verify_dataset` (a manifest against the data on disk) and
:func:`bastion.data.manifest.diff_manifests` (two manifests). Samples are matched in this order:

1. same location, same id: unchanged;
2. same id elsewhere: **moved** (same content and label, new location, e.g. a renamed file);
3. same content digest, other label: **relabelled** (e.g. an image moved to another class folder,
   a table row whose label cell changed);
4. same location, other content: **changed** (e.g. one byte of a file edited);
5. the rest: **added** (only in the new list) and **removed** (only in the old one).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, computed_field

ChangeKind = Literal["added", "removed", "changed", "relabelled", "moved"]


class Sample(Protocol):
    """What a comparison needs of an entry (``SampleEntry`` and ``ManifestEntry`` both have it)."""

    id: str
    label: str
    location: str
    size: int
    digest: str | None


class SampleChange(BaseModel):
    """One difference. ``id``, ``location``, ``label`` are the sample as it is now (as it was, for a
    removed one); ``old_*`` what the old list said, where that differs or the sample was matched."""

    kind: ChangeKind
    id: str
    location: str
    label: str
    size: int
    old_id: str | None = None
    old_location: str | None = None
    old_label: str | None = None
    old_size: int | None = None

    @property
    def description(self) -> str:
        """What changed, in words: ``"label cat -> dog"``, ``"content changed (312 -> 313 bytes)"``."""
        if self.kind == "added":
            return "new sample"
        if self.kind == "removed":
            return "missing"
        if self.kind == "moved":
            return f"moved from {self.old_location}"
        if self.kind == "relabelled":
            where = "" if self.old_location == self.location else f" (was {self.old_location})"
            return f"label {self.old_label} -> {self.label}{where}"
        label = "" if self.old_label == self.label else f", label {self.old_label} -> {self.label}"
        return f"content changed ({self.old_size} -> {self.size} bytes){label}"


class ClassCount(BaseModel):
    """Samples of one class before and after."""

    old: int
    new: int

    @computed_field
    @property
    def delta(self) -> int:
        return self.new - self.old


class Changes(BaseModel):
    """Every difference between an old and a new list of samples, and the count per class."""

    added: list[SampleChange] = []
    removed: list[SampleChange] = []
    changed: list[SampleChange] = []
    relabelled: list[SampleChange] = []
    moved: list[SampleChange] = []
    class_counts: dict[str, ClassCount] = {}

    @property
    def all(self) -> list[SampleChange]:
        """Every change, sorted by location."""
        changes = self.added + self.removed + self.changed + self.relabelled + self.moved
        return sorted(changes, key=lambda c: (c.location, c.kind))

    @property
    def identical(self) -> bool:
        """No sample added, removed, changed, relabelled or moved."""
        return not (self.added or self.removed or self.changed or self.relabelled or self.moved)

    @property
    def class_changes(self) -> dict[str, ClassCount]:
        """Classes whose count changed."""
        return {name: count for name, count in self.class_counts.items() if count.delta}

    def summary(self) -> str:
        """``"2 added, 1 removed, ..."`` (kinds with none left out), or ``"no differences"``."""
        parts = [f"{len(getattr(self, kind))} {kind}" for kind in ("added", "removed", "changed", "relabelled",
                                                                 "moved") if getattr(self, kind)]
        return ", ".join(parts) or "no differences"


def compare(old: Sequence[Sample], new: Sequence[Sample]) -> Changes:
    """The differences from ``old`` to ``new`` (see the module docstring for the matching rules)."""
    old_at = {e.location: e for e in old}
    new_at = {e.location: e for e in new}
    old_rest = [e for e in old if not _same(e, new_at.get(e.location))]
    new_rest = [e for e in new if not _same(e, old_at.get(e.location))]

    moved, old_rest, new_rest = _pair(old_rest, new_rest, lambda e: e.id)
    relabelled, old_rest, new_rest = _pair(old_rest, new_rest, lambda e: e.digest or None)
    changed, old_rest, new_rest = _pair(old_rest, new_rest, lambda e: e.location)
    counts_old, counts_new = Counter(e.label for e in old), Counter(e.label for e in new)
    return Changes(
        added=[_change("added", e) for e in new_rest],
        removed=[_change("removed", e) for e in old_rest],
        changed=[_change("changed", n, o) for o, n in changed],
        relabelled=[_change("relabelled", n, o) for o, n in relabelled],
        moved=[_change("moved", n, o) for o, n in moved],
        class_counts={name: ClassCount(old=counts_old[name], new=counts_new[name])
                      for name in sorted(counts_old.keys() | counts_new.keys())},
    )


def _pair(old: list[Sample], new: list[Sample], key) -> tuple[list[tuple[Sample, Sample]], list[Sample], list[Sample]]:
    """Pairs ``(old, new)`` with the same ``key`` (preferring the same location, then the same file name),
    and what is left of ``old`` and ``new``."""
    waiting: dict[object, list[Sample]] = defaultdict(list)
    for entry in old:
        if key(entry) is not None:
            waiting[key(entry)].append(entry)
    pairs, unmatched, taken = [], [], set()
    for entry in new:
        candidates = [c for c in waiting.get(key(entry), ()) if id(c) not in taken] if key(entry) is not None else []
        if not candidates:
            unmatched.append(entry)
            continue
        best = min(candidates, key=lambda c: (c.location != entry.location, _name(c) != _name(entry), c.location))
        taken.add(id(best))
        pairs.append((best, entry))
    return pairs, [e for e in old if id(e) not in taken], unmatched


def _same(entry: Sample, other: Sample | None) -> bool:
    """The same sample in the same place: id, size and content digest all equal (a missing digest matches)."""
    return (other is not None and entry.id == other.id and entry.size == other.size
            and (not entry.digest or not other.digest or entry.digest == other.digest))


def _name(entry: Sample) -> str:
    return entry.location.rsplit("/", 1)[-1]


def _change(kind: ChangeKind, entry: Sample, old: Sample | None = None) -> SampleChange:
    change = SampleChange(kind=kind, id=entry.id, location=entry.location, label=entry.label, size=entry.size)
    if old is not None:
        change.old_id, change.old_location = old.id, old.location
        change.old_label, change.old_size = old.label, old.size
    return change
