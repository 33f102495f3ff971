"""Dataset manifests: every sample's id, label, location and size, per-class counts, a Merkle root,
provenance and signatures; verification of the data on disk against one, and diffs between two.

A manifest is JSON (``write_manifest``): the header fields, then ``entries``, one sample per line,
sorted by location. ``merkle_root`` is the root of a Merkle tree (:mod:`bastion.data.merkle`) whose
leaves are the entries' canonical bytes (:func:`entry_bytes`), so any change to any entry changes it;
:func:`read_manifest` recomputes it and reports a manifest whose entries do not match as tampered.
Signatures (:mod:`bastion.data.signing`) cover everything else too.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from json.encoder import encode_basestring as _json_text  # type: ignore[attr-defined]
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from bastion.core.errors import InputError
from bastion.core.files import write_atomically
from bastion.data.changes import Changes, Sample, compare
from bastion.data.listing import (
    FORMATS,
    DatasetListing,
    SampleRow,
    dataset_format,
    gc_paused,
    list_rows,
    list_samples,
)
from bastion.data.merkle import InclusionProof, inclusion_proof, root_of_leaf_hashes, verify_inclusion
from bastion.data.schema import TabularSchema

FORMAT_VERSION = 1
_HEX64 = r"^[0-9a-f]{64}$"
_PARTIAL_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")


class ManifestError(InputError):
    """A manifest file that cannot be used: unreadable, malformed, or of another format version."""


class ManifestTamperedError(ManifestError):
    """A manifest whose contents contradict each other: it was edited after it was built."""


def default_creator() -> str:
    """``user@host`` of whoever runs bastion."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Provenance(BaseModel):
    """Where the data came from: ``source``, ``owner``, ``collected`` (an ISO date: ``2026-10-05``,
    ``2026-10`` or ``2026``), the ``transforms`` applied to it, and who built the manifest when."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = None
    owner: str | None = None
    collected: str | None = None
    transforms: list[str] = []
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    created_by: str = Field(default_factory=default_creator)

    @field_validator("collected")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is None or _PARTIAL_DATE.match(value):
            return value
        try:
            date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"collected must be an ISO date such as 2026-10-05, 2026-10 or 2026; got "
                             f"{value!r}") from None
        return value


class Signature(BaseModel):
    """An ed25519 signature over the manifest's canonical JSON without its signatures.

    ``key_id`` is the SHA-256 (hex) of the raw 32-byte public key; ``public_key`` and ``signature``
    are base64. See :mod:`bastion.data.signing`.
    """

    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["ed25519"] = "ed25519"
    signer: str
    key_id: str = Field(pattern=_HEX64)
    public_key: str
    signed_at: datetime
    signature: str


class ManifestEntry(BaseModel):
    """One sample: see :class:`bastion.data.listing.SampleEntry` (``digest``: its content without label)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_HEX64)
    label: str
    location: str = Field(min_length=1)
    size: int = Field(ge=0)
    digest: str | None = Field(default=None, pattern=_HEX64)


class Manifest(BaseModel):
    """A dataset's samples (``entries``, sorted by location), counts, Merkle root, provenance, signatures.

    ``label_column`` and ``table_schema`` are set for CSV/Parquet tables: verifying reads the table the
    same way.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    format: Literal["image-folder", "npz", "csv", "parquet"]
    label_column: str | None = None
    table_schema: TabularSchema | None = None
    class_counts: dict[str, int]
    merkle_root: str = Field(pattern=_HEX64)
    provenance: Provenance = Field(default_factory=Provenance)
    signatures: list[Signature] = []
    entries: list[ManifestEntry]

    @property
    def count(self) -> int:
        """Number of samples."""
        return len(self.entries)

    def signed_bytes(self) -> bytes:
        """The canonical JSON that signatures cover: every field but ``signatures``, keys sorted, compact."""
        data = self.model_dump(mode="json", exclude={"signatures"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_ENTRY_LIST = TypeAdapter(list[ManifestEntry])


class ManifestDiff(Changes):
    """Differences between two manifests (see :mod:`bastion.data.changes`) and their roots."""

    old_root: str
    new_root: str


class VerifyReport(Changes):
    """The data at ``path`` against a manifest: every difference, by sample id and location."""

    path: str
    format: str
    manifest_root: str
    found_root: str
    expected_count: int
    found_count: int
    seconds: float
    strays: list[str] = Field(default=[], description="entries of an image folder that are not samples (a stray "
                              "file, a nested folder, a link out of the folder...), each named: put there since")

    @property
    def ok(self) -> bool:
        """The data is exactly what the manifest lists, and nothing else is in its folder."""
        return self.identical and not self.strays and self.found_root == self.manifest_root

    @property
    def unrelated(self) -> bool:
        """Not one of the manifest's samples is where the manifest puts it (a wrong folder, or all replaced)."""
        return self.expected_count > 0 and len(self.removed) == self.expected_count

    def summary(self) -> str:
        """:meth:`Changes.summary`, and the entries that are not samples (``"1 changed, 2 not a sample"``)."""
        if not self.strays:
            return super().summary()
        changes = [] if self.identical else [super().summary()]
        return ", ".join([*changes, f"{len(self.strays)} not a sample"])


def entry_bytes(entry: Sample) -> bytes:
    """Canonical bytes of an entry, a Merkle leaf: UTF-8 of the compact JSON ``[id, label, location, size,
    digest]`` (what ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` writes)."""
    digest = _json_text(entry.digest) if entry.digest else "null"
    return (f"[{_json_text(entry.id)},{_json_text(entry.label)},{_json_text(entry.location)},{int(entry.size)},"
            f"{digest}]").encode()


def entries_root(entries: Sequence[Sample]) -> str:
    """The Merkle root (hex) over ``entries`` in their order: ``merkle_root([entry_bytes(e) for e in entries])``."""
    return root_of_leaf_hashes(_leaf_hashes(entries))


def _leaf_hashes(entries: Sequence[Sample]) -> list[bytes]:
    """``leaf_hash(entry_bytes(e))`` of each entry, the same bytes hashed, with ``entry_bytes`` inlined and each
    distinct label's JSON text made once: this runs once per sample, and a dataset has few labels."""
    sha256, text = hashlib.sha256, _json_text
    labels: dict[str, str] = {}
    hashes = []
    append = hashes.append
    for entry in entries:
        label = labels.get(entry.label)
        if label is None:
            label = labels[entry.label] = text(entry.label)
        digest = entry.digest
        # "\x00" + the entry's text, encoded: the leaf prefix of merkle.leaf_hash, then entry_bytes(entry).
        append(sha256(f"\x00[{text(entry.id)},{label},{text(entry.location)},{int(entry.size)},"
                      f"{text(digest) if digest else 'null'}]".encode()).digest())
    return hashes


def build_manifest(
    path: Path,
    *,
    provenance: Provenance | None = None,
    schema: TabularSchema | None = None,
    label_column: str | None = None,
    workers: int | None = None,
) -> Manifest:
    """A manifest of the dataset at ``path`` (see :func:`bastion.data.listing.list_samples` for formats).

    Raises:
        InputError: what ``list_samples`` raises (a missing path, an entry that does not belong, rows
            that break ``schema``, ...).
    """
    with gc_paused():
        listed = list_rows(path, schema=schema, label_column=label_column, workers=workers)
        return _manifest(listed.format, listed.rows, provenance, schema, label_column)


def manifest_from_listing(listing: DatasetListing, *, provenance: Provenance | None = None,
                          schema: TabularSchema | None = None, label_column: str | None = None) -> Manifest:
    """A manifest of an existing listing (``schema`` and ``label_column``: those the listing was read with)."""
    with gc_paused():
        return _manifest(listing.format, list(map(_ROW, listing.entries)), provenance, schema, label_column)


_ROW = attrgetter("id", "label", "location", "size", "digest")  # a SampleEntry as a SampleRow


def _manifest(format: str, rows: list[SampleRow], provenance: Provenance | None, schema: TabularSchema | None,
              label_column: str | None) -> Manifest:
    """The manifest of a dataset's samples, ``rows`` sorted by location."""
    entries, leaves = _entries_and_leaves(rows)
    table = format in ("csv", "parquet")
    return Manifest(
        format=format,
        label_column=(label_column or (schema.label if schema else "label")) if table else None,
        table_schema=schema if table else None,
        class_counts=dict(sorted(Counter(map(itemgetter(1), rows)).items())),
        merkle_root=root_of_leaf_hashes(leaves),
        provenance=provenance or Provenance(),
        entries=entries,
    )


#: ManifestEntry's fields, in order: what ``_entries_and_leaves`` sets (it validates the usual way should they change).
_ENTRY_FIELDS = ("id", "label", "location", "size", "digest")
_HEX_DIGITS = b"0123456789abcdef"


def _entries_and_leaves(rows: list[SampleRow]) -> tuple[list[ManifestEntry], list[bytes]]:
    """Each sample's ``ManifestEntry``, and its Merkle leaf hash (``leaf_hash(entry_bytes(entry))``), in order.

    Validating N entries one model at a time (even in one ``TypeAdapter`` call) costs more than hashing N
    small images, so the fields are checked column by column instead, against the rules ``ManifestEntry``
    states (:func:`_valid_columns`), and the entries are made as ``ManifestEntry.model_construct`` makes them,
    without its generic per-field loop. Rows that break a rule (or have no content digest) are validated
    the usual way, which raises a ``ValidationError`` naming what is wrong.
    """
    if not rows:
        return [], []
    ids, labels, locations, sizes, digests = map(list, zip(*rows, strict=True))
    if tuple(ManifestEntry.model_fields) != _ENTRY_FIELDS or not _valid_columns(ids, labels, locations, sizes,
                                                                               digests):
        entries = _ENTRY_LIST.validate_python([
            {"id": id_, "label": label, "location": location, "size": size, "digest": digest or None}
            for id_, label, location, size, digest in rows])  # "" (no digest) is null in a manifest
        return entries, _leaf_hashes(entries)
    new, set_, sha256, text = object.__new__, object.__setattr__, hashlib.sha256, _json_text
    label_text = {label: text(label) for label in set(labels)}
    # One set of field names for all, as model_construct(_fields_set=...) shares the set it is given: every
    # field is set, so the only change pydantic makes to it (adding a field on assignment) leaves it as it is.
    fields_set = set(_ENTRY_FIELDS)
    entries, leaves = [], []
    add_entry, add_leaf = entries.append, leaves.append
    for id_, label, location, size, digest in rows:
        entry = new(ManifestEntry)
        set_(entry, "__dict__", {"id": id_, "label": label, "location": location, "size": size, "digest": digest})
        set_(entry, "__pydantic_fields_set__", fields_set)
        set_(entry, "__pydantic_extra__", None)
        set_(entry, "__pydantic_private__", None)
        add_entry(entry)
        # entry_bytes(entry) after the leaf prefix; ids and digests are hex, so their JSON text is them in quotes.
        add_leaf(sha256(f'\x00["{id_}",{label_text[label]},{text(location)},{size},"{digest}"]'.encode()).digest())
    return entries, leaves


def _valid_columns(ids: list[str], labels: list[str], locations: list[str], sizes: list[int],
                   digests: list[str]) -> bool:
    """Whether every value passes ``ManifestEntry``'s rules and has a content digest: ids and digests 64
    lowercase hex characters, labels strings, locations non-empty strings, sizes integers >= 0.

    Each rule is one pass in C over a column (``set(map(type, ...))``, ``bytes.translate``): a few ms
    for 70,000 entries.
    """
    hexes = ids + digests
    if set(map(type, hexes)) - {str} or set(map(len, hexes)) - {64}:
        return False
    joined = "".join(hexes)
    if not joined.isascii() or joined.encode("ascii").translate(None, _HEX_DIGITS):
        return False  # a character that is not a lowercase hex digit
    return (not set(map(type, labels)) - {str} and not set(map(type, locations)) - {str} and all(locations)
            and not set(map(type, sizes)) - {int} and min(sizes, default=0) >= 0)


def verify_dataset(path: Path, manifest: Manifest, *, workers: int | None = None) -> VerifyReport:
    """Compare the dataset at ``path`` with ``manifest``: every added, removed, changed, relabelled and
    moved sample, each with its id and location (see :mod:`bastion.data.changes`).

    An image folder's entries that are not samples (a stray file, a nested folder, a link out of the folder) are
    differences too, named in ``strays``.

    Raises:
        InputError: a dataset that cannot be listed, or of another format than the manifest's.
    """
    started = time.perf_counter()
    found_format = dataset_format(Path(path)) if Path(path).exists() else None  # checked before anything is hashed
    if found_format is not None and found_format != manifest.format:
        raise InputError(f"the manifest describes a {manifest.format} dataset but {path} is a {found_format}; give "
                         "the dataset the manifest was built from")
    with gc_paused():
        listing = list_samples(path, schema=manifest.table_schema, label_column=manifest.label_column,
                               workers=workers, collect_strays=True)
        found = listing.entries
        changes = compare(manifest.entries, found)
        # Identical entries (location, id, size and digest) are identical leaves: the root need not be recomputed.
        found_root = manifest.merkle_root if changes.identical else entries_root(found)
    return VerifyReport(
        **changes.model_dump(), path=str(path), format=listing.format, manifest_root=manifest.merkle_root,
        found_root=found_root, expected_count=manifest.count, found_count=len(found),
        seconds=time.perf_counter() - started, strays=listing.strays,
    )


def diff_manifests(old: Manifest, new: Manifest) -> ManifestDiff:
    """What changed from ``old`` to ``new``: samples added, removed, changed, relabelled, moved; counts by class.

    Raises:
        InputError: manifests of different formats (an image folder against a table, say).
    """
    if old.format != new.format:
        raise InputError(f"cannot compare a {old.format} manifest with a {new.format} one")
    changes = compare(old.entries, new.entries)
    return ManifestDiff(**changes.model_dump(), old_root=old.merkle_root, new_root=new.merkle_root)


def entry_proof(manifest: Manifest, location: str) -> InclusionProof:
    """Proof that the entry at ``location`` is one of the manifest's (checked with :func:`proves_entry`).

    Raises:
        InputError: no entry at ``location``.
    """
    index = next((i for i, e in enumerate(manifest.entries) if e.location == location), None)
    if index is None:
        raise InputError(f"the manifest has no sample at {location!r}")
    return inclusion_proof([entry_bytes(e) for e in manifest.entries], index)


def proves_entry(entry: ManifestEntry, proof: InclusionProof, root: str) -> bool:
    """Whether ``proof`` shows ``entry`` to be in the manifest whose Merkle root is ``root``."""
    return verify_inclusion(entry_bytes(entry), proof, root)


# --- files ------------------------------------------------------------------------------------


def read_manifest(path: Path) -> Manifest:
    """Read and check a manifest file.

    Raises:
        ManifestError: a missing or unreadable file, malformed JSON, another format version, missing or
            invalid fields, entries out of order.
        ManifestTamperedError: class counts or a Merkle root that do not match the entries.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc}") from exc
    with gc_paused():
        try:
            manifest = Manifest.model_validate_json(text)
        except ValidationError as exc:
            raise _explain(path, text, exc) from None
        if manifest.format_version != FORMAT_VERSION:
            raise ManifestError(f"{path} has manifest format version {manifest.format_version}; this bastion "
                                f"reads version {FORMAT_VERSION}. Rebuild it with 'bastion data manifest'")
        check_manifest(manifest, source=str(path))
    return manifest


def check_manifest(manifest: Manifest, *, source: str = "the manifest") -> None:
    """Check that a manifest agrees with itself: sorted unique locations, class counts, Merkle root.

    Raises:
        ManifestError: entries out of order or listed twice. ManifestTamperedError: counts or root differ.
    """
    locations = [e.location for e in manifest.entries]
    if all(map(str.__lt__, locations, locations[1:])):
        locations = []  # sorted, each once: nothing to report
    for i in range(1, len(locations)):
        if locations[i] <= locations[i - 1]:
            problem = "listed twice" if locations[i] == locations[i - 1] else f"after {locations[i - 1]!r}"
            raise ManifestError(f"{source}: entry {i} ({locations[i]!r}) is {problem}; entries must be sorted by "
                                "location, each once. Rebuild the manifest with 'bastion data manifest'")
    counts = dict(sorted(Counter(e.label for e in manifest.entries).items()))
    if counts != dict(sorted(manifest.class_counts.items())):
        wrong = sorted(k for k in counts.keys() | manifest.class_counts.keys()
                       if counts.get(k) != manifest.class_counts.get(k))
        details = ", ".join(f"{k}: {manifest.class_counts.get(k, 0)} listed, {counts.get(k, 0)} in the entries"
                            for k in wrong[:5])
        raise ManifestTamperedError(f"{source} is inconsistent (tampered?): class_counts do not match the entries "
                                    f"({details})")
    root = entries_root(manifest.entries)
    if root != manifest.merkle_root:
        raise ManifestTamperedError(f"{source} is tampered: its entries hash to Merkle root {root[:16]}..., not "
                                    f"to the recorded merkle_root {manifest.merkle_root[:16]}...; an entry was "
                                    "edited, added or removed after the manifest was built")


def _explain(path: Path, text: str, error: ValidationError) -> ManifestError:
    """A message for a manifest that failed validation: bad JSON, wrong version, or which fields."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return ManifestError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                             "is it a bastion manifest?")
    if not isinstance(data, dict) or "format_version" not in data:
        return ManifestError(f"{path} is not a bastion manifest: no format_version field")
    if data["format_version"] != FORMAT_VERSION:
        return ManifestError(f"{path} has manifest format version {data['format_version']!r}; this bastion reads "
                             f"version {FORMAT_VERSION}. Rebuild it with 'bastion data manifest'")
    problems = error.errors()
    shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return ManifestError(f"{path} is not a valid manifest: {shown}{more}")


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write ``manifest`` to ``path`` atomically (a temporary file in the same folder, then a rename).

    The header is indented JSON; ``entries`` come last, one compact entry per line, so a manifest under
    version control diffs line by line.
    """
    path = Path(path)
    header = manifest.model_dump(mode="json", exclude={"entries"})
    head = json.dumps(header, indent=2, ensure_ascii=False).rstrip()[:-1].rstrip()
    lines = ",\n".join(map(_entry_line, manifest.entries))
    body = f'{head},\n  "entries": [\n{lines}\n  ]\n}}\n' if lines else f'{head},\n  "entries": []\n}}\n'
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    write_atomically(path, body.encode("utf-8"), sync=True)


def _entry_line(entry: ManifestEntry) -> str:
    """One entry as the JSON object ``json.dumps(entry.model_dump(), ensure_ascii=False)`` writes, indented."""
    digest = _json_text(entry.digest) if entry.digest else "null"
    return (f'    {{"id": {_json_text(entry.id)}, "label": {_json_text(entry.label)}, "location": '
            f'{_json_text(entry.location)}, "size": {int(entry.size)}, "digest": {digest}}}')


__all__ = [
    "FORMATS", "FORMAT_VERSION", "Manifest", "ManifestDiff", "ManifestEntry", "ManifestError",
    "ManifestTamperedError", "Provenance", "Signature", "VerifyReport", "build_manifest", "check_manifest",
    "diff_manifests", "entries_root", "entry_bytes", "entry_proof", "manifest_from_listing", "proves_entry",
    "read_manifest", "verify_dataset", "write_manifest",
]
