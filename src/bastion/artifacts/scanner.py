"""Scan a model file for code it would run when loaded, without loading it.

Formats, recognised by their first bytes (the suffix only decides how strict to be):

- pickle (``.pkl``, ``.pickle``, ``.pt``/``.pth``/``.bin``/``.ckpt`` legacy torch saves), joblib (``.joblib``):
  every pickle in the stream is scanned (:mod:`bastion.artifacts.pickle_scan`);
- zip archives: ``torch.save``'s ``.pt`` (``archive/data.pkl``), TorchScript, ``.npz``, skops (``.skops``):
  members named ``*.pkl``, members that start like a pickle, ``.npy`` members and nested archives are scanned;
- ``.npy``: an object array's payload is a pickle and is scanned, other arrays hold no code;
- ``.safetensors``: the header is checked (valid JSON, offsets inside the file); tensors hold no code;
- gzip, bz2, xz and zlib streams (joblib's ``compress=``) are decompressed and scanned as what they hold;
- an empty file (or stream) is a ``high`` ``malformed`` finding, format ``empty``: it holds no model to trust.

Archive members and decompressed streams are read into memory up to ``max_bytes`` in all (a zip bomb
stops there, as a ``too_large`` finding); a top-level file is read as a stream and may be larger.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bastion.artifacts.findings import SEVERITY_RANK, ArtifactScan, Finding, FindingKind, Severity
from bastion.artifacts.headers import CODECS, HeaderError, npy_payload_offset, sniff, validate_safetensors
from bastion.artifacts.pickle_scan import PickleStreamScan, scan_pickle_stream
from bastion.artifacts.policy import classify_import
from bastion.core.errors import PICKLE_SUFFIXES, InputError
from bastion.core.ids import file_digest

#: Suffixes of files that are pickles (or legacy ``torch.save`` files) when they are not zip archives.
PICKLE_LIKE_SUFFIXES = PICKLE_SUFFIXES | {".pt", ".pth", ".bin", ".ckpt", ".p", ".pk", ".pck", ".sav", ".dill"}
COMPRESSED_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".z", ".zlib"})
_CHUNK = 1 << 16


@dataclass
class _Scan:
    """The running state of one scan: limits, what is found, and the byte budget left."""

    max_depth: int
    budget: int
    findings: list[Finding] = field(default_factory=list)
    imports: dict[str, None] = field(default_factory=dict)

    def report(self, severity: Severity, kind: FindingKind, message: str, members: list[str],
               offset: int | None = None, symbol: str | None = None) -> None:
        self.findings.append(Finding(severity=severity, kind=kind, message=message, members=members, offset=offset,
                                     symbol=symbol))

    def absorb(self, result: PickleStreamScan) -> None:
        """Take in a pickle stream's findings and imports."""
        self.findings.extend(result.findings)
        self.imports.update(dict.fromkeys(result.imports))

    def charge(self, size: int, members: list[str]) -> bool:
        """Take ``size`` bytes from the budget; ``False`` (and a finding) when they are not there."""
        if size > self.budget:
            self.report("high", "too_large", f"{size:,} bytes would pass the byte budget "
                        f"({self.budget:,} left); not scanned. Raise max_bytes to scan it", members)
            return False
        self.budget -= size
        return True

    def may_open(self, depth: int, what: str, members: list[str]) -> bool:
        """Whether a container at ``depth`` (containers already opened) may be opened."""
        if depth < self.max_depth:
            return True
        self.report("high", "nested_archive", f"{what} more than {self.max_depth} levels deep; not scanned. "
                    "Raise max_depth to scan it", members)
        return False

    def record(self, path: str, format_name: str, sha256: str, size: int) -> ArtifactScan:
        findings = sorted(self.findings, key=lambda f: SEVERITY_RANK[f.severity])
        return ArtifactScan(path=path, format=format_name, sha256=sha256, size=size, findings=findings,
                            imports=list(self.imports))


def scan_artifact(path: str | Path, *, max_depth: int = 3, max_bytes: int = 2**31) -> ArtifactScan:
    """Scan a model file for code that loading it would run; the file is never unpickled or imported from.

    Args:
        path: a pickle, joblib, torch (zip or legacy), TorchScript, ``.npy``, ``.npz``, safetensors or skops file.
        max_depth: how many containers (archives, compressed streams, embedded saves) to open, one inside the
            other; deeper ones are a ``high`` finding. Default 3.
        max_bytes: the most bytes read into memory from archive members and decompressed streams (a zip bomb
            stops there, as a ``high`` finding). Default 2 GiB.

    Returns:
        The scan record: format, SHA-256, findings worst first, imports; ``.safe`` when nothing is ``high`` or
        ``critical``.

    Raises:
        InputError: ``path`` is missing, a folder or unreadable, or a limit is not positive.
    """
    path = Path(path).expanduser()
    _check_limits(max_depth, max_bytes)
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the model files inside it, e.g. {path}/model.pt")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file (a device or a pipe?); copy the model into a file")
    scan = _Scan(max_depth=max_depth, budget=max_bytes)
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, io.SEEK_END)
            handle.seek(0)
            format_name = _scan_stream(scan, handle, path.name, [], depth=0)
        digest = file_digest(str(path))
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}; check its permissions") from error
    return scan.record(str(path), format_name, digest, size)


def scan_bytes(data: bytes, *, name: str = "<bytes>", max_depth: int = 3, max_bytes: int = 2**31) -> ArtifactScan:
    """:func:`scan_artifact` for bytes in memory; ``name``'s suffix plays the file name's part (``x.pkl``)."""
    _check_limits(max_depth, max_bytes)
    scan = _Scan(max_depth=max_depth, budget=max_bytes)
    format_name = _scan_stream(scan, io.BytesIO(data), name, [], depth=0)
    return scan.record(name, format_name, hashlib.sha256(data).hexdigest(), len(data))


def _check_limits(max_depth: int, max_bytes: int) -> None:
    if max_depth < 0:
        raise InputError(f"max_depth must be 0 or more, got {max_depth}")
    if max_bytes <= 0:
        raise InputError(f"max_bytes must be positive, got {max_bytes}")


# --- dispatch ---------------------------------------------------------------------------------------------


def _scan_stream(scan: _Scan, stream: BinaryIO, name: str, members: list[str], *, depth: int) -> str:
    """Scan ``stream`` (positioned at its start) as whatever its first bytes say it is; returns the format."""
    head = stream.read(16)
    stream.seek(0)
    if not head:  # not a model: torch.load, pickle.load and joblib.load all fail on it
        what = "this stream" if members else "the file"
        scan.report("high", "malformed", f"{what} is empty (0 bytes): there is no model to check or load; an "
                    "interrupted download or save? Fetch or save it again", members)
        return "empty"
    kind = sniff(head, name)
    if kind == "zip":
        return _scan_zip(scan, stream, members, depth=depth)
    if kind == "npy":
        return _scan_npy(scan, stream, members)
    if kind == "safetensors":
        try:
            validate_safetensors(stream)
        except HeaderError as error:
            scan.report("high", "malformed", f"not a valid safetensors file: {error}", members, error.offset)
        return "safetensors"
    if kind == "lz4":
        scan.report("high", "not_checked", "an lz4 stream (joblib's compress='lz4'), which this scan cannot open: "
                    "decompress it with lz4.frame and scan the result", members)
        return "lz4"
    suffix = Path(name).suffix.lower()
    if kind in CODECS:  # two signature bytes (zlib's) also start 1 in 8,000 raw tensors: trust the name more
        strict = suffix in PICKLE_LIKE_SUFFIXES | COMPRESSED_SUFFIXES
        return _scan_compressed(scan, stream, kind, name, members, strict=strict, depth=depth)
    strict = kind == "pickle" or suffix in PICKLE_LIKE_SUFFIXES
    return _scan_pickle(scan, stream, members, strict=strict, depth=depth)


def _scan_pickle(scan: _Scan, stream: BinaryIO, members: list[str], *, strict: bool, depth: int) -> str:
    """Scan a pickle stream; data that is not one (and is not named like one) is an unknown format."""
    if not strict:
        start = stream.tell()
        if not scan_pickle_stream(stream, members=members, strict=False).looks_like_pickle:
            scan.report("low", "unknown_format", "not a recognised model format (pickle, joblib, torch, npy, npz, "
                        "safetensors, skops): nothing was checked", members)
            return "unknown"
        stream.seek(start)  # no signature, but it parses as a pickle: scan it as one
    result = scan_pickle_stream(stream, members=members, strict=True)
    scan.absorb(result)
    seen: set[int] = set()
    for offset, payload in result.embedded:
        if id(payload) in seen:
            continue
        seen.add(id(payload))
        inner = [*members, f"<torch.storage._load_from_bytes @ {offset}>"]
        if scan.may_open(depth, "a torch save embedded in a pickle", inner) and scan.charge(len(payload), inner):
            _scan_stream(scan, io.BytesIO(payload), "embedded.pt", inner, depth=depth + 1)
    return result.flavour


# --- containers -------------------------------------------------------------------------------------------


def _scan_zip(scan: _Scan, stream: BinaryIO, members: list[str], *, depth: int) -> str:
    """Scan the members of a zip archive that can hold pickles; returns the archive's format."""
    try:
        archive = zipfile.ZipFile(stream)
    except Exception as error:  # zipfile raises assorted errors on a crafted archive
        scan.report("high", "malformed", f"not a valid zip archive: {error}", members)
        return "zip"
    with archive:
        files = [info for info in archive.infolist() if not info.filename.endswith("/")]  # folders hold nothing
        names = [info.filename for info in files]
        if not scan.may_open(depth, "an archive", members):
            return _zip_format(names)
        for info in files:
            _scan_member(scan, archive, info, [*members, info.filename], depth=depth + 1)
    if any("/code/" in f"/{name}" and name.endswith(".py") for name in names):
        scan.report("info", "not_checked", "TorchScript code (code/*.py) runs in the TorchScript interpreter "
                    "when torch.jit.load loads the archive; this scan checks its pickles only", members)
    return _zip_format(names)


def _scan_member(scan: _Scan, archive: zipfile.ZipFile, info: zipfile.ZipInfo, members: list[str], *,
                 depth: int) -> None:
    name = info.filename.lower()
    named_pickle = name.endswith((".pkl", ".pickle", ".joblib"))
    try:
        with archive.open(info) as handle:
            kind = sniff(handle.read(16), name)
            if kind == "npy":  # read from the archive: a numeric array's bytes are never loaded
                handle.seek(0)
                _scan_npy(scan, handle, members, budget_size=info.file_size)
                return
        if name == "schema.json":
            kind = "skops-schema"
        elif kind == "unknown" and not named_pickle:
            return  # raw tensor bytes, text, JSON: no code
        if not scan.charge(info.file_size, members):
            return
        data = archive.read(info)
    except Exception as error:  # encrypted, unsupported compression, a CRC mismatch, or crafted headers
        scan.report("high", "malformed", f"cannot read this archive member: {error}", members)
        return
    if kind == "skops-schema":
        _check_skops_schema(scan, data, members)
    elif kind == "zip":
        scan.report("low", "nested_archive", "an archive inside an archive", members)
        _scan_zip(scan, io.BytesIO(data), members, depth=depth)
    elif kind in ("safetensors", "lz4") or kind in CODECS:
        _scan_stream(scan, io.BytesIO(data), info.filename, members, depth=depth)
    else:
        scan.absorb(scan_pickle_stream(io.BytesIO(data), members=members, strict=named_pickle))


def _zip_format(names: list[str]) -> str:
    if any(name.endswith("constants.pkl") for name in names):
        return "torchscript"
    if any(name.endswith("data.pkl") for name in names):
        return "torch-zip"
    if "schema.json" in names:
        return "skops"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    return "zip"


def _scan_npy(scan: _Scan, stream: BinaryIO, members: list[str], *, budget_size: int | None = None) -> str:
    """An ``.npy`` file: an object array's payload (after the header) is a pickle, anything else is data.
    ``budget_size``: the bytes to take from the budget before scanning a payload (archive members)."""
    try:
        payload_offset = npy_payload_offset(stream)
    except HeaderError as error:
        scan.report("high", "malformed", f"not a valid .npy file: {error}", members, error.offset)
        return "npy"
    if payload_offset is not None and (budget_size is None or scan.charge(budget_size, members)):
        stream.seek(payload_offset)
        scan.absorb(scan_pickle_stream(stream, members=members, strict=True))
    return "npy"


def _scan_compressed(scan: _Scan, stream: BinaryIO, codec: str, name: str, members: list[str], *, strict: bool,
                     depth: int) -> str:
    """Decompress (within the byte budget) and scan what the stream holds, e.g. a ``compress=3`` joblib file.
    ``strict``: the name says it is compressed (or a pickle), so a corrupt stream is ``high``, not ``low``."""
    inner_members = [*members, f"<{codec}>"]
    if not scan.may_open(depth, f"a {codec} stream", inner_members):
        return codec
    data = bytearray()
    try:
        for chunk in _inflate(stream, codec):
            data += chunk
            if len(data) > scan.budget:
                scan.charge(len(data), inner_members)
                return codec
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as error:
        if not strict and not data:
            scan.report("low", "malformed", f"starts like a {codec} stream but is not one ({error}): raw data?",
                        members)
            return "unknown"
        scan.report("high" if strict else "low", "malformed", f"the {codec} stream is corrupt: {error}; "
                    "scanning what it held", inner_members)
    scan.charge(len(data), inner_members)
    inner_name = Path(name).stem if Path(name).suffix.lower() in COMPRESSED_SUFFIXES else name
    inner = _scan_stream(scan, io.BytesIO(bytes(data)), inner_name, inner_members, depth=depth + 1)
    return f"{codec}+{inner}"


def _inflate(stream: BinaryIO, codec: str) -> Iterator[bytes]:
    """Decompressed chunks of at most 64 KiB each, so that the caller can stop at its budget."""
    if codec in ("gzip", "zlib"):
        decompressor: Any = zlib.decompressobj(31 if codec == "gzip" else 15)
        pending = b""
        while not decompressor.eof:
            pending = pending or stream.read(_CHUNK)
            if not pending:
                raise EOFError("the stream ends before its end marker")
            yield decompressor.decompress(pending, _CHUNK)
            pending = decompressor.unconsumed_tail
        return
    decompressor = bz2.BZ2Decompressor() if codec == "bz2" else lzma.LZMADecompressor()
    while not decompressor.eof:
        chunk = stream.read(_CHUNK) if decompressor.needs_input else b""
        if decompressor.needs_input and not chunk:
            raise EOFError("the stream ends before its end marker")
        yield decompressor.decompress(chunk, _CHUNK)


def _check_skops_schema(scan: _Scan, data: bytes, members: list[str]) -> None:
    """A skops schema names the types and functions ``skops.io.load`` builds: report denied ones."""
    try:
        schema = json.loads(data)
    except (ValueError, RecursionError) as error:
        scan.report("high", "malformed", f"the skops schema is not valid JSON: {error}", members)
        return
    nodes: list[Any] = [schema]
    while nodes:
        node = nodes.pop()
        if isinstance(node, list):
            nodes.extend(node)
        elif isinstance(node, dict):
            module, name = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(name, str):
                scan.imports.setdefault(f"{module}.{name}")
                verdict = classify_import(module, name)
                if verdict.severity == "critical":
                    scan.report("critical", "dangerous_import", f"the skops schema names {module}.{name}: "
                                f"{verdict.reason}", members, symbol=f"{module}.{name}")
            nodes.extend(node.values())
