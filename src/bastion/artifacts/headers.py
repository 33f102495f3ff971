"""Recognise a model file by its first bytes, and check the headers of the formats that hold no code
(``.npy``, safetensors) without loading them."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path
from typing import Any, BinaryIO

#: Compressed streams the scan opens: name -> leading bytes.
CODECS = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00", "zlib": b"\x78"}
#: An lz4 frame (joblib's ``compress="lz4"``): recognised, but the standard library cannot open it.
LZ4_MAGIC = b"\x04\x22\x4d\x18"
_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER = 10_000  # numpy's own limit for headers it parses without being told to trust the file
_SAFETENSORS_MAX_HEADER = 100 * 2**20  # the reference implementation's limit


class HeaderError(ValueError):
    """A header that does not parse; ``offset`` is where in the stream the problem is."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def sniff(head: bytes, name: str) -> str:
    """What the first 16 bytes ``head`` of a file called ``name`` are.

    Returns ``zip``, ``npy``, ``safetensors``, a :data:`CODECS` name, ``lz4``, ``pickle`` (protocol 2 or later; older
    pickles have no signature) or ``unknown``.
    """
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if len(head) >= 10 and head[8:9] == b"{" and head[9:10] in b'"}' and \
            int.from_bytes(head[:8], "little") <= _SAFETENSORS_MAX_HEADER:
        return "safetensors"
    for codec, magic in CODECS.items():
        if head.startswith(magic) and (codec != "zlib" or _zlib_header(head)):
            return codec
    if head.startswith(LZ4_MAGIC):
        return "lz4"
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return "pickle"
    if Path(name).suffix.lower() == ".safetensors":
        return "safetensors"
    return "unknown"


def _zlib_header(head: bytes) -> bool:
    """A zlib stream's two header bytes are a multiple of 31 (RFC 1950), which rules out most chance matches."""
    return len(head) > 1 and int.from_bytes(head[:2], "big") % 31 == 0


def npy_payload_offset(stream: BinaryIO) -> int | None:
    """Where the pickled payload of an object-dtype ``.npy`` starts; ``None`` for an array of plain numbers.

    Raises:
        HeaderError: the magic, version or header dictionary is not what ``numpy.save`` writes.
    """
    start = stream.tell()
    prefix = stream.read(8)
    if not prefix.startswith(_NPY_MAGIC) or len(prefix) < 8:
        raise HeaderError("no .npy magic")
    major = prefix[6]
    if major not in (1, 2, 3):
        raise HeaderError(f"unknown .npy format version {major}.{prefix[7]}", start + 6)
    length_size = 2 if major == 1 else 4
    header_length = int.from_bytes(stream.read(length_size), "little")
    if header_length > _NPY_MAX_HEADER:
        raise HeaderError(f"a {header_length:,}-byte header (numpy refuses more than {_NPY_MAX_HEADER:,})", start + 8)
    raw = stream.read(header_length)
    if len(raw) < header_length:
        raise HeaderError("the file ends inside its header", start + 8)
    header = _literal_dict(raw.decode("utf-8" if major == 3 else "latin-1", errors="replace"), start + 8)
    if not {"descr", "fortran_order", "shape"} <= set(header):
        raise HeaderError("the header lacks descr, fortran_order or shape", start + 8)
    return start + 8 + length_size + header_length if _holds_objects(header["descr"], start + 8) else None


def _literal_dict(text: str, offset: int) -> dict[str, Any]:
    try:
        value = ast.literal_eval(text)  # literals only, as numpy does: nothing is evaluated
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
        raise HeaderError(f"the header is not a Python literal: {error}", offset) from None
    if not isinstance(value, dict):
        raise HeaderError("the header is not a dictionary", offset)
    return value


def _holds_objects(descr: Any, offset: int) -> bool:
    """Whether a ``descr`` (``'<f8'``, ``'|O'``, or a list of fields) has Python objects, which numpy pickles."""
    import numpy as np

    try:
        return bool(np.lib.format.descr_to_dtype(descr).hasobject)
    except Exception as error:  # numpy raises assorted errors for a crafted descr
        raise HeaderError(f"the header's dtype {str(descr)[:80]!r} is not valid: {error}", offset) from None


def validate_safetensors(stream: BinaryIO) -> None:
    """Check a safetensors file: 8-byte little-endian header length, a JSON header whose tensors all lie in the
    file. The tensors themselves are raw numbers: nothing in the file is code.

    Raises:
        HeaderError: what is wrong, and where.
    """
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    header_length = int.from_bytes(stream.read(8), "little")
    if size < 8 or header_length > min(size - 8, _SAFETENSORS_MAX_HEADER):
        raise HeaderError(f"the header length {header_length:,} does not fit a {size:,}-byte file")
    try:
        header = json.loads(stream.read(header_length))
    except (ValueError, RecursionError) as error:
        raise HeaderError(f"the header is not JSON: {error}", 8) from None
    if not isinstance(header, dict):
        raise HeaderError("the header is not a JSON object", 8)
    data_size = size - 8 - header_length
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise HeaderError("__metadata__ must map names to strings", 8)
            continue
        _check_tensor_entry(name, entry, data_size)


def _check_tensor_entry(name: str, entry: Any, data_size: int) -> None:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise HeaderError(f"tensor {name!r} lacks dtype, shape or data_offsets", 8)
    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_size):
        raise HeaderError(f"tensor {name!r} has data_offsets {offsets!r} outside the {data_size:,} data bytes", 8)
    shape = entry["shape"]
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise HeaderError(f"tensor {name!r} has shape {shape!r}", 8)
