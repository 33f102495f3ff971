"""Dataset manifests: every tampering (a byte, a label, an added or removed sample) is detected and
located by id and location; formats (image folder, npz, CSV, Parquet + schema); Merkle proofs;
malformed or tampered manifests; signatures; ids that follow a sample from the manifest to a scan."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bastion.core.errors import InputError
from bastion.core.ids import sample_ids, stored_sample_id
from bastion.data.listing import list_samples
from bastion.data.manifest import (
    Manifest,
    ManifestError,
    ManifestTamperedError,
    Provenance,
    build_manifest,
    diff_manifests,
    entry_bytes,
    entry_proof,
    proves_entry,
    read_manifest,
    verify_dataset,
    write_manifest,
)
from bastion.data.merkle import inclusion_proof, leaf_hash, merkle_root, node_hash, verify_inclusion
from bastion.data.schema import SchemaViolationError, TabularSchema, load_schema
from bastion.data.signing import (
    generate_key_pair,
    load_private_key,
    load_public_key,
    sign_manifest,
    verify_signatures,
)
from bastion.data.sources import Dataset, load_dataset


def write_digits(root: Path, count: int = 200) -> Path:
    """scikit-learn digits as 8x8 grey PNGs, ``root/<digit>/<index>.png``."""
    digits = load_dataset("digits")
    for i in range(count):
        folder = root / str(int(digits.y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.rint(digits.x[i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("pristine") / "digits")


@pytest.fixture
def train(pristine, tmp_path) -> Path:
    """A fresh copy of 200 digit PNGs to tamper with."""
    return Path(shutil.copytree(pristine, tmp_path / "train"))


def first_file(folder: Path) -> Path:
    return min(folder.iterdir())


# --- image folders ----------------------------------------------------------------------------


def test_image_folder_listing_hashes_file_bytes_and_class(train):
    listing = list_samples(train)
    assert listing.format == "image-folder" and len(listing.entries) == 200
    assert [e.location for e in listing.entries] == sorted(e.location for e in listing.entries)
    entry = listing.entries[0]
    file = train / entry.location
    assert entry.location == f"{file.parent.name}/{file.name}" and entry.label == file.parent.name
    assert entry.id == stored_sample_id(file.read_bytes(), entry.label)
    assert entry.size == file.stat().st_size
    assert sum(listing.class_counts.values()) == 200 and set(listing.class_counts) == {str(d) for d in range(10)}
    assert list_samples(train, workers=1).entries == listing.entries


def test_loaded_folder_carries_the_manifest_ids(train):
    manifest = build_manifest(train)
    data = load_dataset(str(train))
    by_location = {e.location: e.id for e in manifest.entries}
    files = sorted(train.glob("*/*.png"))  # the loader's order: class folders, then files, sorted
    assert data.sample_ids == [by_location[f"{f.parent.name}/{f.name}"] for f in files]
    limited = load_dataset(str(train), limit=7)
    assert limited.sample_ids == data.sample_ids[:7]


@pytest.mark.parametrize("tamper", ["byte", "label", "added", "removed", "renamed"])
def test_every_tampering_is_detected_and_located(train, tamper):
    manifest = build_manifest(train)
    old = {e.location: e for e in manifest.entries}
    victim = first_file(train / "3")
    location = f"3/{victim.name}"
    if tamper == "byte":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        expected = ("changed", location, stored_sample_id(bytes(data), "3"))
    elif tamper == "label":
        victim.rename(train / "8" / victim.name)
        expected = ("relabelled", f"8/{victim.name}", stored_sample_id((train / "8" / victim.name).read_bytes(), "8"))
    elif tamper == "added":
        shutil.copy(first_file(train / "5"), train / "3" / "intruder.png")
        expected = ("added", "3/intruder.png", stored_sample_id((train / "3" / "intruder.png").read_bytes(), "3"))
    elif tamper == "removed":
        victim.unlink()
        expected = ("removed", location, old[location].id)
    else:
        victim.rename(victim.with_name("renamed.png"))
        expected = ("moved", "3/renamed.png", old[location].id)

    report = verify_dataset(train, manifest)
    assert not report.ok and report.found_root != manifest.merkle_root
    assert [(c.kind, c.location, c.id) for c in report.all] == [expected]
    change = report.all[0]
    if tamper in ("byte", "label", "renamed"):
        assert change.old_location == location and change.old_id == old[location].id
    if tamper == "label":
        assert (change.old_label, change.label) == ("3", "8")
        assert (report.class_changes["3"].delta, report.class_changes["8"].delta) == (-1, 1)


def test_many_changes_at_once_are_all_named(train):
    manifest = build_manifest(train)
    first_file(train / "0").unlink()
    first_file(train / "1").rename(train / "2" / "from-one.png")
    shutil.copy(first_file(train / "4"), train / "4" / "copy.png")
    edited = first_file(train / "9")
    edited.write_bytes(edited.read_bytes() + b"\x00")
    report = verify_dataset(train, manifest)
    assert (len(report.removed), len(report.relabelled), len(report.added), len(report.changed)) == (1, 1, 1, 1)
    assert report.summary() == "1 added, 1 removed, 1 changed, 1 relabelled"


def test_intact_folder_verifies(train):
    manifest = build_manifest(train)
    report = verify_dataset(train, manifest)
    assert report.ok and report.identical and report.found_count == report.expected_count == 200


def test_emptied_class_shows_every_removed_sample(train):
    manifest = build_manifest(train)
    removed = sorted(f"7/{f.name}" for f in (train / "7").iterdir())
    for file in (train / "7").iterdir():
        file.unlink()
    report = verify_dataset(train, manifest)
    assert sorted(c.location for c in report.removed) == removed and not report.added
    assert report.class_counts["7"].new == 0


def test_hidden_files_are_skipped(train):
    manifest = build_manifest(train)
    (train / ".DS_Store").write_bytes(b"x")
    (train / "3" / ".thumbs").write_bytes(b"x")
    assert verify_dataset(train, manifest).ok


@pytest.mark.parametrize("odd, message", [
    ("notes", r"3/notes\.txt is not an image"),
    ("stray", r"README\.md is a file at the top of the image folder"),
    ("nested", r"3/sub is a folder inside the class folder '3'"),
    ("outside", r"3/link\.png is a symbolic link to .*outside the dataset folder"),
])
def test_odd_entries_are_named_in_clear_errors(train, tmp_path, odd, message):
    if odd == "notes":
        (train / "3" / "notes.txt").write_text("hello")
    elif odd == "stray":
        (train / "README.md").write_text("hello")
    elif odd == "nested":
        (train / "3" / "sub").mkdir()
    else:
        outside = tmp_path / "elsewhere.png"
        shutil.copy(first_file(train / "5"), outside)
        os.symlink(outside, train / "3" / "link.png")
    with pytest.raises(InputError, match=message):
        list_samples(train)


def test_links_inside_the_folder_are_followed(train):
    os.symlink(first_file(train / "5"), train / "5" / "alias.png")
    entry = next(e for e in list_samples(train).entries if e.location == "5/alias.png")
    assert entry.id == stored_sample_id(first_file(train / "5").read_bytes(), "5")


def test_bad_paths_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="dataset not found"):
        list_samples(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no class folders"):
        list_samples(tmp_path / "empty")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(InputError, match="unknown dataset format"):
        list_samples(tmp_path / "data.txt")


# --- npz --------------------------------------------------------------------------------------


def test_npz_ids_match_in_memory_ids_and_a_changed_row_is_located(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((70_000, 4), dtype=np.float32), rng.integers(0, 10, 70_000)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    manifest = build_manifest(path)
    assert manifest.format == "npz" and manifest.count == 70_000
    assert {e.location: e.id for e in manifest.entries}["x[17]"] == sample_ids(x[17:18], y[17:18])[0]
    x[41_234, 2] += 0.5  # one changed value in one row of 70,000
    y[9] = (y[9] + 1) % 10
    np.savez(path, x=x, y=y)
    report = verify_dataset(path, manifest)
    assert [(c.kind, c.location) for c in report.all] == [("changed", "x[41234]"), ("relabelled", "x[9]")]
    assert report.changed[0].id == sample_ids(x[41_234:41_235], y[41_234:41_235])[0]


# --- tables and schemas -----------------------------------------------------------------------

SCHEMA = """
label: species
columns:
  - {name: length, type: float, min: 0, max: 10}
  - {name: petals, type: int, min: 0, nullable: true}
  - {name: colour, type: category, categories: [red, blue]}
  - {name: wild, type: bool}
  - {name: species, type: category, categories: [a, b]}
"""


def write_table(tmp_path: Path, rows: list[str], schema: str = SCHEMA) -> tuple[Path, TabularSchema]:
    (tmp_path / "schema.yaml").write_text(schema)
    path = tmp_path / "t.csv"
    path.write_text("species,length,petals,colour,wild\n" + "\n".join(rows) + "\n")
    return path, load_schema(tmp_path / "schema.yaml")


def test_csv_rows_get_ids_from_canonical_bytes_in_schema_order(tmp_path):
    path, schema = write_table(tmp_path, ["a,1.5,3,red,yes", "b,2,4,blue,false"])
    listing = list_samples(path, schema=schema)
    assert [e.location for e in listing.entries] == ["row 1", "row 2"]
    content = json.dumps(["1.5", "3", "red", "yes"], separators=(",", ":")).encode()
    assert listing.entries[0].id == stored_sample_id(content, "a") and listing.entries[0].size == len(content)
    data = load_dataset(str(path), schema=schema)
    assert data.sample_ids == [e.id for e in listing.entries]
    np.testing.assert_allclose(data.x, [[1.5, 3, 0, 1], [2, 4, 1, 0]])  # categories by index, booleans 0/1
    assert data.class_names == ["a", "b"]


def test_table_row_change_and_relabel_are_located(tmp_path):
    path, schema = write_table(tmp_path, ["a,1.5,3,red,yes", "b,2,1,blue,false", "a,3,2,red,no"])
    manifest = build_manifest(path, schema=schema)
    assert manifest.table_schema == schema and manifest.label_column == "species"
    path.write_text("species,length,petals,colour,wild\na,1.5,3,red,yes\na,2,1,blue,false\na,3.5,2,red,no\n")
    report = verify_dataset(path, manifest)
    assert [(c.kind, c.location) for c in report.all] == [("relabelled", "row 2"), ("changed", "row 3")]


def test_schema_reports_every_bad_row(tmp_path):
    rows = ["a,1.5,3,red,yes", "c,-1,2.5,green,maybe", "b,11,x,blue,true", "a,,1,red,no"]
    rows += [f"a,{20 + i},1,red,no" for i in range(30)] + ["b,2,,blue,no"]  # an empty nullable cell is fine
    path, schema = write_table(tmp_path, rows)
    with pytest.raises(SchemaViolationError) as caught:
        list_samples(path, schema=schema)
    problems = [(p.row, p.column, p.problem.split(" (")[0]) for p in caught.value.problems]
    assert problems[:8] == [
        (2, "species", "is not an allowed category"),
        (2, "length", "is below the minimum 0"),
        (2, "petals", "is not a whole number"),
        (2, "colour", "is not an allowed category"),
        (2, "wild", "is not a boolean"),
        (3, "length", "is above the maximum 10"),
        (3, "petals", "is not a number"),
        (4, "length", "is missing"),
    ]
    assert len(caught.value.problems) == 38
    message = str(caught.value)
    assert "38 problem(s) in 33 row(s)" in message and "row 2, column 'length': '-1' is below the minimum 0" in message
    assert "... and 18 more problem(s)" in message and message.count("\n  row ") == 20
    with pytest.raises(SchemaViolationError):
        load_dataset(str(path), schema=schema)


@pytest.mark.parametrize("header, schema, message", [
    ("species,length,petals,colour", SCHEMA, r"lacks column\(s\) wild"),
    ("species,length,petals,colour,wild,extra", SCHEMA, r"column\(s\) extra that the schema does not list"),
    ("species,length,petals,colour,wild", "columns: [{name: a, type: decimal}]", "schema: column 'a': type: Input"),
    ("species,length,petals,colour,wild", "columns: [{name: a, type: int, min: 5, max: 1}]", "min 5 is above max 1"),
    ("species,length,petals,colour,wild", "columns: [{name: a, type: string, min: 1}]", "min/max apply to int"),
    ("species,length,petals,colour,wild", "label: [", "not a readable schema"),
])
def test_schema_and_column_errors_are_clear(tmp_path, header, schema, message):
    (tmp_path / "schema.yaml").write_text(schema)
    path = tmp_path / "t.csv"
    path.write_text(header + "\n" + ",".join(["a", "1", "1", "red", "yes", "z"][:header.count(",") + 1]) + "\n")
    with pytest.raises(InputError, match=message):
        list_samples(path, schema=load_schema(tmp_path / "schema.yaml"))


def test_json_schema_with_columns_as_a_mapping(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"columns": {"f": {"type": "float"}, "label": {"type": "int"}}}))
    schema = load_schema(tmp_path / "s.json")
    assert [c.name for c in schema.columns] == ["f", "label"] and schema.label == "label"


def test_parquet_loads_lists_and_verifies(tmp_path):
    frame = pd.DataFrame({"f1": [0.5, 1.5, 2.0], "kind": ["dog", "cat", "dog"], "f2": [3, -1, 0]})
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    data = load_dataset(str(path), label_column="kind")
    assert data.class_names == ["cat", "dog"] and data.y.tolist() == [1, 0, 1]
    np.testing.assert_allclose(data.x, [[0.5, 3], [1.5, -1], [2, 0]])
    manifest = build_manifest(path, label_column="kind")
    assert manifest.format == "parquet" and data.sample_ids == [e.id for e in manifest.entries]
    assert manifest.entries[0].id == stored_sample_id(b"[0.5,3]", "dog")
    frame.loc[2, "f2"] = 7
    frame.to_parquet(path)
    assert [(c.kind, c.location) for c in verify_dataset(path, manifest).all] == [("changed", "row 3")]


def test_npz_listing_and_loading_give_the_same_ids(tmp_path):
    x, y = np.arange(24, dtype=np.uint8).reshape(6, 1, 2, 2), np.array([1, 0, 1, 2, 0, 0], dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    listing = list_samples(tmp_path / "d.npz")
    assert load_dataset(str(tmp_path / "d.npz")).sample_ids == [e.id for e in listing.entries]
    assert [e.label for e in listing.entries] == ["1", "0", "1", "2", "0", "0"]
    # String labels are refused by both, not numbered by their sort order in this one file.
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["b", "a", "b", "c", "a", "a"]))
    for read in (list_samples, load_dataset):
        with pytest.raises(InputError, match="labels must be integer class indices"):
            read(tmp_path / "d.npz")


def test_csv_without_schema_keeps_its_ids_and_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n0,1,2\n1,0,0\n")
    data = load_dataset(str(path))
    assert data.sample_ids == [e.id for e in list_samples(path).entries]
    with pytest.raises(InputError, match="the label column is 'kind' but the schema says 'species'"):
        list_samples(path, schema=TabularSchema(columns=[{"name": "a", "type": "int"}], label="species"),
                     label_column="kind")


# --- Merkle tree ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_every_leaf_has_an_inclusion_proof(count):
    leaves = [f"leaf {i}".encode() for i in range(count)]
    root = merkle_root(leaves)
    for index in range(count):
        proof = inclusion_proof(leaves, index)
        assert proof.root == root and verify_inclusion(leaves[index], proof, root)
        assert not verify_inclusion(b"forged", proof, root)
    if count > 1:
        proof = inclusion_proof(leaves, 0)
        proof.steps[0].sibling = leaf_hash(b"other").hex()
        assert not verify_inclusion(leaves[0], proof, root)


def test_merkle_root_is_order_sensitive_and_domain_separated():
    a, b = b"a", b"b"
    assert merkle_root([a, b]) != merkle_root([b, a])
    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b)).hex()
    # An inner node's bytes, offered as one leaf, do not reproduce the parent's hash.
    assert merkle_root([leaf_hash(a) + leaf_hash(b)]) != merkle_root([a, b])


def test_manifest_entry_proofs(train):
    manifest = build_manifest(train)
    entry = manifest.entries[123]
    proof = entry_proof(manifest, entry.location)
    assert proves_entry(entry, proof, manifest.merkle_root)
    assert not proves_entry(entry.model_copy(update={"label": "0"}), proof, manifest.merkle_root)


# --- manifest files ---------------------------------------------------------------------------


@pytest.fixture
def manifest_file(train, tmp_path) -> Path:
    provenance = Provenance(source="vendor-x export", owner="data-team", collected="2026-10",
                            transforms=["grey", "resize 8x8"])
    path = tmp_path / "train.manifest.json"
    write_manifest(build_manifest(train, provenance=provenance), path)
    return path


def test_manifest_round_trips_and_lists_one_entry_per_line(manifest_file):
    manifest = read_manifest(manifest_file)
    assert manifest.provenance.owner == "data-team" and manifest.provenance.transforms == ["grey", "resize 8x8"]
    text = manifest_file.read_text()
    assert text.count('\n    {"id": ') == 200 and json.loads(text)["merkle_root"] == manifest.merkle_root
    plain = manifest_file.with_name("plain.txt")
    plain.write_text("")  # a manifest is meant to be shared: it gets the permissions of any file written here
    assert manifest_file.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_names_that_need_escaping_round_trip(tmp_path):
    root = tmp_path / "odd"
    (root / 'café "quoted"').mkdir(parents=True)
    (root / 'café "quoted"' / "a\\b ü.png").write_bytes(b"not decoded, only hashed")
    manifest = build_manifest(root)
    entry = manifest.entries[0]
    assert entry_bytes(entry) == json.dumps([entry.id, entry.label, entry.location, entry.size, entry.digest],
                                            separators=(",", ":"), ensure_ascii=False).encode()
    write_manifest(manifest, tmp_path / "m.json")
    assert read_manifest(tmp_path / "m.json") == manifest
    assert verify_dataset(root, read_manifest(tmp_path / "m.json")).ok


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, error, message", [
    (lambda d: d["entries"][5].update(label="9"), ManifestTamperedError, "class_counts do not match"),
    (lambda d: d["entries"][5].update(size=1), ManifestTamperedError, "tampered: its entries hash to"),
    (lambda d: d["entries"].pop(), ManifestTamperedError, "class_counts do not match"),
    (lambda d: d.update(format_version=7), ManifestError, "format version 7; this bastion reads version 1"),
    (lambda d: d.pop("merkle_root"), ManifestError, "merkle_root: Field required"),
    (lambda d: d["entries"][0].update(id="xyz"), ManifestError, "entries.0.id"),
    (lambda d: d["entries"].reverse(), ManifestError, "sorted by location"),
])
def test_malformed_or_tampered_manifests_are_refused(manifest_file, change, error, message):
    edit(manifest_file, change)
    with pytest.raises(error, match=message):
        read_manifest(manifest_file)


def test_unreadable_manifests_are_refused(tmp_path):
    (tmp_path / "bad.json").write_text('{"format_version": 1,\n "entries": [')
    with pytest.raises(ManifestError, match=r"not valid JSON \(line 2"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="not a bastion manifest"):
        read_manifest(tmp_path / "other.json")
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "missing.json")


def test_writing_is_atomic(manifest_file, monkeypatch):
    before = manifest_file.read_bytes()
    manifest = read_manifest(manifest_file)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_manifest(manifest.model_copy(update={"provenance": Provenance(owner="someone")}), manifest_file)
    assert manifest_file.read_bytes() == before
    assert [p.name for p in manifest_file.parent.iterdir() if p.name.startswith(".")] == []


def test_invalid_provenance_date():
    with pytest.raises(ValueError, match="collected must be an ISO date"):
        Provenance(collected="last tuesday")


# --- diffs ------------------------------------------------------------------------------------


def test_diff_names_samples_and_counts_by_class(train):
    old = build_manifest(train)
    first_file(train / "2").rename(train / "6" / "moved.png")
    shutil.copy(first_file(train / "1"), train / "1" / "extra.png")
    first_file(train / "0").unlink()
    diff = diff_manifests(old, build_manifest(train))
    assert (len(diff.added), len(diff.removed), len(diff.relabelled), len(diff.changed)) == (1, 1, 1, 0)
    assert diff.relabelled[0].location == "6/moved.png" and diff.relabelled[0].old_label == "2"
    assert {k: v.delta for k, v in diff.class_changes.items()} == {"0": -1, "1": 1, "2": -1, "6": 1}
    assert diff_manifests(old, old).identical


# --- signatures -------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path):
    private, public = generate_key_pair(tmp_path / "release.key")
    assert public == tmp_path / "release.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(InputError, match="already exists"):
        generate_key_pair(tmp_path / "release.key")
    with pytest.raises(InputError, match="not a PEM public key .this is a private key"):
        load_public_key(private)


def test_signatures_trusted_unpinned_untrusted_and_tampered(manifest_file, tmp_path):
    private, public = generate_key_pair(tmp_path / "release.key")
    _, other = generate_key_pair(tmp_path / "other.key")
    signed = sign_manifest(read_manifest(manifest_file), load_private_key(private), signer="alice")
    write_manifest(signed, manifest_file)
    manifest = read_manifest(manifest_file)  # a signature survives writing and reading
    assert verify_signatures(manifest, trusted_key=load_public_key(public)).checks[0].status == "trusted"
    unpinned = verify_signatures(manifest)
    assert unpinned.ok and unpinned.checks[0].status == "valid-unpinned" and "not pinned" in unpinned.summary
    wrong = verify_signatures(manifest, trusted_key=load_public_key(other))
    assert not wrong.ok and wrong.checks[0].status == "untrusted"

    edit(manifest_file, lambda d: d["provenance"].update(owner="mallory"))
    tampered = verify_signatures(read_manifest(manifest_file), trusted_key=load_public_key(public))
    assert not tampered.ok and tampered.checks[0].status == "invalid"
    assert "changed after it was signed" in tampered.checks[0].message


def test_unsigned_manifest_with_a_trusted_key_is_not_ok(manifest_file, tmp_path):
    _, public = generate_key_pair(tmp_path / "release.key")
    report = verify_signatures(read_manifest(manifest_file), trusted_key=load_public_key(public))
    assert not report.ok and "unsigned" in report.summary


# --- Dataset ids ------------------------------------------------------------------------------


def test_dataset_ids_follow_subsets_and_must_match_the_samples():
    x, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 1, 0, 1, 0, 1])
    data = Dataset(x=x, y=y, class_names=["a", "b"], description="d", ids=[f"{i:064x}" for i in range(6)])
    part = data.subset(np.array([4, 1]))
    assert part.sample_ids == [f"{4:064x}", f"{1:064x}"] and part.y.tolist() == [0, 1]
    assert data.subset(slice(0, 2)).sample_ids == data.sample_ids[:2]
    plain = Dataset(x=x, y=y, class_names=["a", "b"], description="d")
    assert plain.sample_ids == sample_ids(x, y) and plain.subset(np.array([True] * 3 + [False] * 3)).ids is None
    with pytest.raises(InputError, match="3 sample ids for 6 samples"):
        Dataset(x=x, y=y, class_names=["a", "b"], description="d", ids=("a", "b", "c"))


def test_manifest_model_counts(train):
    manifest = build_manifest(train)
    assert isinstance(manifest, Manifest) and manifest.count == 200 == sum(manifest.class_counts.values())


def test_built_entries_are_those_validation_makes(tmp_path):
    """build_manifest makes entries without validating each: they must equal validated ones, hash to the root
    entry_bytes gives, sort by location across classes whose names prefix each other, and a listing whose
    values break ManifestEntry's rules is still refused."""
    from pydantic import ValidationError

    from bastion.data.listing import DatasetListing, SampleEntry
    from bastion.data.manifest import ManifestEntry, manifest_from_listing

    root = tmp_path / "data"
    for label in ("a", "a-b", 'we"ird é'):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f'{i} "ü".png').write_bytes(bytes([i]) * (i + 1) + label.encode())
    manifest = build_manifest(root, workers=2)
    validated = [ManifestEntry.model_validate(e.model_dump()) for e in manifest.entries]
    assert manifest.entries == validated and [e.model_fields_set for e in validated] == [
        e.model_fields_set for e in manifest.entries]
    assert [e.location for e in validated] == sorted(e.location for e in validated)
    assert validated[0].location.startswith("a-b/")  # "-" sorts before "/": class order is not location order
    assert manifest.merkle_root == merkle_root([entry_bytes(e) for e in validated])
    assert manifest.class_counts == {"a": 3, "a-b": 3, 'we"ird é': 3}
    assert manifest_from_listing(list_samples(root)).model_dump(exclude={"provenance"}) == manifest.model_dump(
        exclude={"provenance"})
    no_digest = manifest_from_listing(DatasetListing("npz", root, [SampleEntry("a" * 64, "0", "x[0]", 4)]))
    assert no_digest.entries[0].digest is None
    assert no_digest.merkle_root == merkle_root([entry_bytes(no_digest.entries[0])])
    for bad in (SampleEntry("A" * 64, "0", "x[0]", 4, "b" * 64), SampleEntry("a" * 64, "0", "", 4, "b" * 64),
                SampleEntry("a" * 64, "0", "x[0]", -1, "b" * 64)):
        with pytest.raises(ValidationError):
            manifest_from_listing(DatasetListing("npz", root, [bad]))
