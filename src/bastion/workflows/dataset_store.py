"""Dataset versions: commit, log, checkout, release, rollback and quarantine, with every change in the ledger.

A version is two objects in the content-addressed store, the manifest (sample ids, labels, locations,
Merkle root) and a file index (each file of the dataset and the object holding its bytes), plus one
row in ``dataset_versions``. The bytes of every file are objects too, so any version can be restored
byte for byte. Each operation that changes something writes its database rows and one ledger entry
in one transaction; when anything fails, the objects it added, the files it moved and the rows it
wrote are all undone.

Formats: an image folder (one sub-folder per class) is stored file by file; an ``.npz``, ``.csv`` or
``.parquet`` dataset is one file and stored as one object (quarantine writes a new file without the
rows).

Layout under ``home`` (``.bastion`` by default)::

    bastion.db                            the database (unless BASTION_DATABASE_URL says otherwise)
    ledger.head                           the ledger's head anchor
    objects/ab/cdef...                    file bytes, manifests, file indexes
    quarantine/<dataset>/v<N>/...         samples taken out to make version N, bytes unchanged
    store.lock                            held while an operation writes (one writer per home)

Finding rows and checking names is in :mod:`bastion.workflows.dataset_catalog`, the file index and
the working-copy changes in :mod:`bastion.workflows.dataset_files`, taking samples out in
:mod:`bastion.workflows.dataset_quarantine`.

Example::

    store = open_dataset_store(home)
    v1 = store.commit(Path("train"), message="vendor export", actor="alice")
    store.quarantine("train", [sample_id], reason="suspected poison", actor="alice", approved=True)
    store.rollback("train", 1, actor="bob")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.core.ids import file_digest
from bastion.data.manifest import Manifest, Provenance, build_manifest
from bastion.data.schema import TabularSchema
from bastion.storage.database import Database, open_database
from bastion.storage.ledger import append as append_entry
from bastion.storage.ledger import current_actor
from bastion.storage.objects import CorruptObjectError, MissingObjectError, ObjectStore
from bastion.storage.tables import DatasetRow, DatasetVersionRow, QuarantinedSampleRow
from bastion.workflows.dataset_catalog import (
    check_dataset_name,
    check_release_tag,
    check_version,
    current_version_row,
    dataset_for_commit,
    find_dataset,
    find_version,
    next_version_number,
)
from bastion.workflows.dataset_files import (
    FileIndex,
    FileRecord,
    Swap,
    refuse_unsaved,
    stage_files,
    store_files,
    undo_new_objects,
    undone_on_failure,
)
from bastion.workflows.dataset_quarantine import FolderRemoval, RowRemoval, check_removed, select_entries

__all__ = ["IMAGE_FOLDER", "SINGLE_FILE_FORMATS", "DatasetInfo", "DatasetStore", "FileIndex", "FileRecord",
           "VersionInfo", "open_dataset_store"]

IMAGE_FOLDER = "image-folder"
SINGLE_FILE_FORMATS = ("npz", "csv", "parquet")


class VersionInfo(BaseModel):
    """One version of a dataset, as ``log`` lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: str
    version: int = Field(description="1, 2, ... per dataset")
    created_at: datetime
    author: str
    message: str
    sample_count: int
    merkle_root: str = Field(description="the manifest's Merkle root over its sample ids")
    manifest_object: str = Field(description="object id of the manifest JSON")
    files_object: str = Field(description="object id of the file index JSON")
    parent: int | None = Field(description="the version this one was made from")
    status: Literal["committed", "released"]
    release_tag: str | None = None
    current: bool = Field(description="the version the working copy should hold")
    format: str
    path: str = Field(description="the dataset's working copy (a folder or one file)")

    @property
    def label(self) -> str:
        """``v3``."""
        return f"v{self.version}"


class DatasetInfo(BaseModel):
    """A dataset under version control."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    path: str
    format: str
    current_version: int | None
    versions: int


class DatasetStore:
    """Versions of datasets in ``database`` (rows and ledger) and ``objects`` (bytes).

    Args:
        database: from ``open_database``; its ``home`` holds ``quarantine/``.
        objects: the object store; default ``<home>/objects``.

    Every method takes keyword-only options; ``actor=None`` means ``current_actor()`` (``--as``,
    ``$BASTION_USER``, the OS user name). ``name=None`` means the only dataset, when there is one.
    A version is named by its number (``3``, ``"3"``, ``"v3"``) or its release tag.
    """

    def __init__(self, database: Database, *, objects: ObjectStore | None = None) -> None:
        self.database = database
        self.objects = objects if objects is not None else ObjectStore(database.home / "objects")

    @property
    def quarantine_root(self) -> Path:
        """``<home>/quarantine``: samples taken out of datasets, by dataset and version."""
        return self.database.home / "quarantine"

    def close(self) -> None:
        """Release the database's connections."""
        self.database.dispose()

    def __enter__(self) -> DatasetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------

    def datasets(self) -> list[DatasetInfo]:
        """Every dataset under version control, by name."""
        with self.database.sessions() as session:
            rows = session.scalars(select(DatasetRow).order_by(DatasetRow.name)).all()
            return [_dataset_info(row) for row in rows]

    def dataset_for_path(self, path: str | Path) -> DatasetInfo | None:
        """The dataset whose working copy is ``path``, if one is under version control."""
        root = str(Path(path).resolve())
        with self.database.sessions() as session:
            row = session.scalar(select(DatasetRow).where(DatasetRow.root == root))
            return _dataset_info(row) if row else None

    def log(self, name: str | None = None) -> list[VersionInfo]:
        """Every version of the dataset, oldest first."""
        with self.database.sessions() as session:
            dataset = find_dataset(session, name)
            return [_version_info(dataset, row) for row in dataset.versions]

    def version(self, name: str | None, version: int | str | None = None) -> VersionInfo:
        """One version (default: the current one)."""
        with self.database.sessions() as session:
            dataset = find_dataset(session, name)
            return _version_info(dataset, find_version(dataset, version))

    def manifest(self, name: str | None, version: int | str | None = None) -> Manifest:
        """The stored manifest of a version (default: the current one), its object's hash checked."""
        info = self.version(name, version)
        return Manifest.model_validate_json(self.objects.get_bytes(info.manifest_object))

    def file_index(self, name: str | None, version: int | str | None = None) -> FileIndex:
        """The stored file index of a version (default: the current one)."""
        info = self.version(name, version)
        return FileIndex.model_validate_json(self.objects.get_bytes(info.files_object))

    def object_problems(self) -> list[str]:
        """Re-hash every stored object a version uses (its manifest, its file index and each file's bytes, each
        object once): one message per missing, corrupt or unreadable object, naming the first version and file
        that use it and how many others do. An empty list: every version can be checked out byte for byte."""
        users: dict[str, list[str]] = {}  # object -> what uses it, in order
        indexes: dict[str, FileIndex | None] = {}  # read (and so re-hashed) here, not checked again below
        unindexed: list[str] = []
        with self.database.sessions() as session:
            versions = [(dataset.name, row.number, row.manifest_object, row.files_object)
                        for dataset in session.scalars(select(DatasetRow).order_by(DatasetRow.name))
                        for row in dataset.versions]
        for name, number, manifest_object, files_object in versions:
            users.setdefault(manifest_object, []).append(f"{name} v{number}'s manifest")
            users.setdefault(files_object, []).append(f"{name} v{number}'s file index")
            if files_object not in indexes:
                try:
                    indexes[files_object] = FileIndex.model_validate_json(self.objects.get_bytes(files_object))
                except (MissingObjectError, CorruptObjectError, OSError):
                    indexes[files_object] = None  # named below with the other damaged objects
            index = indexes[files_object]
            if index is None:
                unindexed.append(f"{name} v{number}")
                continue
            for path, record in index.files.items():
                users.setdefault(record.object, []).append(f"{name} v{number}'s {path}")
        problems = []
        for digest, used_by in users.items():
            if indexes.get(digest) is not None:
                continue
            try:
                self.objects.check(digest)
            except (MissingObjectError, CorruptObjectError) as error:
                problems.append(_damage(used_by, str(error)))
            except OSError as error:
                problems.append(_damage(used_by, f"object {digest} cannot be read: {error.strerror or error}"))
        problems.extend(f"{version}'s files were not checked: its file index is damaged" for version in unindexed)
        return problems

    # --- commit ---------------------------------------------------------------------------------

    def commit(self, path: str | Path, *, message: str, actor: str | None = None, name: str | None = None,
               provenance: Provenance | None = None, schema: TabularSchema | None = None,
               label_column: str | None = None) -> VersionInfo:
        """Record the dataset at ``path`` as a new version and make it current.

        Lists and hashes every sample (``build_manifest``), stores each file's bytes, the manifest and
        the file index as objects, then adds the version and a ``dataset.commit`` ledger entry in one
        transaction. ``name`` defaults to the folder's name (or the file's stem).

        Args:
            provenance: where the data came from; default: the current version's (source, owner,
                collection date, transforms), created by ``actor`` now.
            schema, label_column: for a CSV/Parquet table (see ``build_manifest``); kept in the manifest
                and reused when samples are quarantined.

        Raises:
            InputError: a malformed dataset, an empty message, nothing changed since the current
                version, or ``name`` already tracking another path. The store is left as it was.
        """
        actor = current_actor(actor)
        if not message or not message.strip():
            raise InputError("a commit needs a message (-m) saying what changed and why")
        root = Path(path).resolve()
        if not root.exists():
            raise InputError(f"{path} does not exist; commit a folder of images per class, or an .npz, .csv "
                             "or .parquet file")
        name = check_dataset_name(name or (root.name if root.is_dir() else root.stem))
        with _store_lock(self.database.home), undo_new_objects(self.objects) as created:
            before = file_digest(str(root)) if root.is_file() else None
            provenance = provenance or self._inherited_provenance(name, actor)
            manifest = build_manifest(root, provenance=provenance, schema=schema, label_column=label_column)
            if not manifest.entries:
                raise InputError(f"{path} holds no samples; there is nothing to commit")
            index = store_files(self.objects, root, manifest, before, created)
            with self.database.transaction() as session:
                dataset = dataset_for_commit(session, name, root, manifest.format, created_at=_now())
                current = current_version_row(dataset)
                if current is not None and current.merkle_root == manifest.merkle_root and \
                        self._index_of(current).digests() == index.digests():
                    raise InputError(f"nothing changed in {path} since {name} v{current.number}; nothing to commit")
                row = self._add_version(session, dataset, manifest, index, message=message.strip(), actor=actor,
                                        created=created)
                append_entry(session, action="dataset.commit", subject=f"dataset:{name}", actor=actor,
                             payload=_version_payload(row, message=row.message))
                info = _version_info(dataset, row)
        return info

    # --- checkout, rollback ---------------------------------------------------------------------

    def checkout(self, name: str | None, version: int | str, *, dest: str | Path | None = None, force: bool = False
                 ) -> Path:
        """Write a version's files, byte for byte, to ``dest`` (default: the dataset's working copy).

        The files are written into a temporary sibling of ``dest`` (every object's hash checked) and
        then swapped in, so ``dest`` never holds half a version. For a one-file dataset ``dest`` is the
        file when it has the dataset's suffix (``.npz``...), else a folder to put the file in. The
        current version does not change (``rollback`` does that).

        Raises:
            InputError: ``dest`` holds content that is not exactly one of the dataset's committed
                versions (it would be lost) and ``force`` is false.
            CorruptObjectError, MissingObjectError: the store is damaged; ``dest`` is left untouched.
        """
        with self.database.sessions() as session:
            dataset = find_dataset(session, name)
            row = check_version(session, dataset, find_version(dataset, version))
            target = self._target(dataset, dest)
            self._refuse_home(target)
            _refuse_working_copies(session, target)
            if not force:
                self._refuse_unsaved(dataset, target)
            staged = stage_files(self.objects, self._index_of(row), target)
        Swap(staged, target).apply().discard()
        return target

    def rollback(self, name: str | None, version: int | str, *, actor: str | None = None, force: bool = False
                 ) -> VersionInfo:
        """Make ``version`` current again and restore its files into the working copy, byte for byte.

        Recorded as a ``dataset.rollback`` ledger entry. Refuses, like ``checkout``, to overwrite a
        working copy with uncommitted content unless ``force``.
        """
        actor = current_actor(actor)
        with _store_lock(self.database.home):
            with self.database.sessions() as session:
                dataset = find_dataset(session, name)
                row = check_version(session, dataset, find_version(dataset, version))
                if dataset.current_version == row.number:
                    raise InputError(f"{dataset.name} v{row.number} is already the current version; use checkout "
                                     "to restore its files")
                root = Path(dataset.root)
                self._refuse_home(root)
                if not force:
                    self._refuse_unsaved(dataset, root, instead="check out the version elsewhere first "
                                         f"(bastion data checkout {row.number} --out DIR)")
                staged = stage_files(self.objects, self._index_of(row), root)
            swap = Swap(staged, root)
            with undone_on_failure(swap), self.database.transaction() as session:
                dataset = find_dataset(session, name)
                row = find_version(dataset, version)
                previous = dataset.current_version
                dataset.current_version = row.number
                append_entry(session, action="dataset.rollback", subject=f"dataset:{dataset.name}", actor=actor,
                             payload={"dataset": dataset.name, "version": row.number, "from_version": previous,
                                      "merkle_root": row.merkle_root})
                session.flush()
                swap.apply()
                info = _version_info(dataset, row)
        return info

    # --- release --------------------------------------------------------------------------------

    def release(self, name: str | None, version: int | str, *, tag: str, actor: str | None = None) -> VersionInfo:
        """Mark a version as released under ``tag`` (unique per dataset); recorded in the ledger."""
        actor = current_actor(actor)
        tag = check_release_tag(tag)
        with self.database.transaction() as session:
            dataset = find_dataset(session, name)
            row = check_version(session, dataset, find_version(dataset, version))
            if row.release_tag is not None:
                raise InputError(f"{dataset.name} v{row.number} is already released as {row.release_tag!r}")
            taken = session.scalar(select(DatasetVersionRow).where(
                DatasetVersionRow.dataset_id == dataset.id, DatasetVersionRow.release_tag == tag))
            if taken is not None:
                raise InputError(f"tag {tag!r} already names {dataset.name} v{taken.number}; choose another tag")
            row.status, row.release_tag = "released", tag
            append_entry(session, action="dataset.release", subject=f"dataset:{dataset.name}", actor=actor,
                         payload={"dataset": dataset.name, "version": row.number, "tag": tag,
                                  "merkle_root": row.merkle_root, "manifest_object": row.manifest_object})
            return _version_info(dataset, row)

    # --- quarantine -----------------------------------------------------------------------------

    def quarantine(self, name: str | None, ids: Iterable[str], *, reason: str, actor: str | None = None,
                   approved: bool = False, locations: Iterable[str] | None = None) -> VersionInfo:
        """Take samples out of the dataset: a new current version without them, their bytes kept aside.

        Moves every file of the named samples from the working copy to
        ``<home>/quarantine/<dataset>/v<N>/`` (N: the new version), keeping its path and bytes; for a
        one-file dataset, writes a new file without those rows and keeps the removed rows in a file of
        the same format there. Records each sample in ``quarantined_samples`` and one
        ``dataset.quarantine`` ledger entry, all in one transaction; any failure puts everything back.

        Args:
            ids: sample ids (64-hex) of the current version; a duplicated sample (the same bytes and
                label at several locations) is removed at every location.
            reason: why (shown in the log and the ledger).
            approved: must be ``True``: a person reviewed the selection.
            locations: when given, only the samples at these locations (each must hold one of ``ids``)
                are taken: how one copy of a duplicated sample is kept.

        Raises:
            InputError: not approved, no ids, ids not in the current version, or a working copy that
                differs from the current version.
        """
        actor = current_actor(actor)
        if approved is not True:
            raise InputError("quarantine takes samples out of the dataset: review the selection, then approve it "
                             "(approved=True, --approve on the command line)")
        if not reason or not reason.strip():
            raise InputError("a quarantine needs a reason (e.g. 'suspected poison, audit 2026-05-01')")
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            raise InputError("no sample ids to quarantine")
        with _store_lock(self.database.home), undo_new_objects(self.objects) as created:
            with self.database.sessions() as session:
                dataset = find_dataset(session, name)
                current = current_version_row(dataset)
                if current is None:
                    raise InputError(f"{dataset.name} has no current version to quarantine samples from")
                check_version(session, dataset, current)
                number = next_version_number(session, dataset)
                name, root = dataset.name, Path(dataset.root)
                manifest = Manifest.model_validate_json(self.objects.get_bytes(current.manifest_object))
                index = self._index_of(current)
            chosen = select_entries(manifest, wanted, f"{name} v{current.number}",
                                    None if locations is None else set(locations))
            kept_root = self.quarantine_root / name / f"v{number}"
            if kept_root.exists() and any(kept_root.iterdir()):
                raise InputError(f"{kept_root} already holds files; move them away before quarantining again")
            removal = f"quarantine: removed {len(wanted)} sample(s) from v{current.number} ({reason.strip()})"
            provenance = manifest.provenance.model_copy(update={
                "transforms": [*manifest.provenance.transforms, removal], "created_at": _now(), "created_by": actor})
            move = (FolderRemoval if index.kind == "folder" else RowRemoval)(root, kept_root, chosen, index)
            with undone_on_failure(move):
                new_manifest = move.apply(lambda path: build_manifest(
                    path, provenance=provenance, schema=manifest.table_schema, label_column=manifest.label_column))
                check_removed(manifest, new_manifest, chosen, name, current.number)
                new_index = move.new_index(self.objects, created)
                with self.database.transaction() as session:
                    dataset = find_dataset(session, name)
                    row = self._add_version(session, dataset, new_manifest, new_index, actor=actor, created=created,
                                            message=f"quarantine {len(wanted)} sample(s): {reason.strip()}")
                    for entry in chosen:
                        session.add(QuarantinedSampleRow(
                            version=row, sample_id=entry.id, label=entry.label, location=entry.location,
                            kept_at=str(move.kept_at(entry)), reason=reason.strip(), actor=actor,
                            created_at=row.created_at))
                    append_entry(session, action="dataset.quarantine", subject=f"dataset:{name}", actor=actor,
                                 payload={**_version_payload(row, message=row.message), "from_version": current.number,
                                          "reason": reason.strip(), "ids": wanted, "kept_at": str(kept_root)})
                    session.flush()
                    move.commit_files()
                    info = _version_info(dataset, row)
        return info

    # --- internals ------------------------------------------------------------------------------

    def _inherited_provenance(self, name: str, actor: str) -> Provenance:
        with self.database.sessions() as session:
            dataset = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
            current = current_version_row(dataset) if dataset is not None else None
            if current is None:
                return Provenance(created_by=actor)
            old = Manifest.model_validate_json(self.objects.get_bytes(current.manifest_object)).provenance
        return old.model_copy(update={"created_at": _now(), "created_by": actor})

    def _add_version(self, session: Session, dataset: DatasetRow, manifest: Manifest, index: FileIndex, *,
                     message: str, actor: str, created: set[str]) -> DatasetVersionRow:
        manifest_object = self.objects.put_bytes(manifest.model_dump_json().encode("utf-8"), created=created)
        files_object = self.objects.put_bytes(index.model_dump_json().encode("utf-8"), created=created)
        row = DatasetVersionRow(
            dataset=dataset, number=next_version_number(session, dataset), manifest_object=manifest_object,
            files_object=files_object, merkle_root=manifest.merkle_root, sample_count=len(manifest.entries),
            message=message, author=actor, created_at=_now(), parent=dataset.current_version, status="committed")
        session.add(row)
        dataset.current_version = row.number
        session.flush()
        return row

    def _index_of(self, row: DatasetVersionRow) -> FileIndex:
        return FileIndex.model_validate_json(self.objects.get_bytes(row.files_object))

    def _target(self, dataset: DatasetRow, dest: str | Path | None) -> Path:
        root = Path(dataset.root)
        if dest is None:
            return root
        target = Path(dest).resolve()
        if dataset.format in SINGLE_FILE_FORMATS and (target.is_dir() or target.suffix.lower() != root.suffix.lower()):
            return target / root.name  # a folder to put the file in
        return target

    def _refuse_unsaved(self, dataset: DatasetRow, target: Path, *, instead: str = "choose another --out") -> None:
        """Raise unless ``target`` is absent, an empty folder, or exactly one committed version."""
        refuse_unsaved(target, kind="file" if dataset.format in SINGLE_FILE_FORMATS else "folder", name=dataset.name,
                       versions=(self._index_of(row) for row in reversed(dataset.versions)), instead=instead)

    def _refuse_home(self, target: Path) -> None:
        """Raise when replacing ``target`` would replace or move the store's own home (or anything in it)."""
        home = self.database.home.resolve()
        resolved = target.resolve()
        if resolved == home or home.is_relative_to(resolved) or resolved.is_relative_to(home):
            where = "is inside" if resolved != home and resolved.is_relative_to(home) else "holds"
            raise InputError(f"refusing to restore into {target}: it {where} "
                             f"bastion's own store {home} (database, objects, ledger anchor), which the restore would "
                             "replace. Keep the store outside the dataset (--home or $BASTION_HOME), or check the "
                             "version out elsewhere with --out DIR")


def _refuse_working_copies(session: Session, target: Path) -> None:
    """Raise when writing ``target`` would replace, or nest inside, a working copy the store tracks (its own
    working copy aside, which a checkout without ``--out`` rewrites): even ``--force`` only means the content of
    ``target`` itself may go."""
    resolved = target.resolve()
    for name, root in session.execute(select(DatasetRow.name, DatasetRow.root)):
        tracked = Path(root).resolve()
        if resolved == tracked:
            continue
        if tracked.is_relative_to(resolved) or resolved.is_relative_to(tracked):
            where = "holds" if tracked.is_relative_to(resolved) else "is inside"
            raise InputError(f"refusing to write {target}: it {where} the working copy of dataset {name!r} "
                             f"({tracked}), which the checkout would replace or break. Choose an --out outside "
                             "every working copy")


def open_dataset_store(home: str | Path | None = None, *, url: str | None = None, create: bool = True
                       ) -> DatasetStore:
    """A ``DatasetStore`` on the database at ``url`` (default: ``database_url(home)``) and ``<home>/objects``.

    ``create=False`` (reading, restoring): nothing is created; a home without a database is an ``InputError``.
    """
    return DatasetStore(open_database(url, home=home, create=create))


# --- small helpers ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _version_payload(row: DatasetVersionRow, *, message: str) -> dict[str, object]:
    return {"dataset": row.dataset.name, "version": row.number, "parent": row.parent, "merkle_root": row.merkle_root,
            "manifest_object": row.manifest_object, "files_object": row.files_object, "samples": row.sample_count,
            "message": message}


def _version_info(dataset: DatasetRow, row: DatasetVersionRow) -> VersionInfo:
    return VersionInfo(
        dataset=dataset.name, version=row.number, created_at=row.created_at.replace(tzinfo=timezone.utc)
        if row.created_at.tzinfo is None else row.created_at, author=row.author, message=row.message,
        sample_count=row.sample_count, merkle_root=row.merkle_root, manifest_object=row.manifest_object,
        files_object=row.files_object, parent=row.parent, status=row.status, release_tag=row.release_tag,
        current=dataset.current_version == row.number, format=dataset.format, path=dataset.root)


def _damage(used_by: list[str], problem: str) -> str:
    others = f" (also used by {len(used_by) - 1} more file(s) of this or other versions)" if len(used_by) > 1 else ""
    return f"{used_by[0]}{others}: {problem}"


def _dataset_info(row: DatasetRow) -> DatasetInfo:
    return DatasetInfo(name=row.name, path=row.root, format=row.format, current_version=row.current_version,
                       versions=len(row.versions))


@contextlib.contextmanager
def _store_lock(home: Path) -> Iterator[None]:
    """One writer at a time per home on this machine (objects written by one commit are not deleted by
    another's failure). A no-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    home.mkdir(parents=True, exist_ok=True)
    with (home / "store.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
