"""Scan a pickle stream without unpickling it: walk its opcodes with ``pickletools.genops``, follow the stack
symbolically (:mod:`bastion.artifacts.machine`) and judge every import and call (:mod:`bastion.artifacts.policy`).

A stream may hold several pickles back to back (legacy ``torch.save`` writes five, then raw tensor bytes) and
joblib writes each numpy array's raw bytes right after the array's wrapper object; both are followed, so the
opcodes after them are scanned too. Nothing here imports a module the file names or calls anything it holds.
"""

from __future__ import annotations

import io
import math
import pickletools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from bastion.artifacts.findings import Finding, FindingKind, Severity
from bastion.artifacts.machine import UNKNOWN, Call, Global, MachineEvents, MalformedPickle, PickleMachine
from bastion.artifacts.policy import classify_import

#: The first pickle of a legacy (non-zip) ``torch.save`` file holds this number.
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
#: Pickles ``torch.load`` reads from a legacy file: magic, protocol, system info, the object, storage keys.
_LEGACY_TORCH_PICKLES = 5
#: The deepest chain of joblib object arrays (each a pickle inside the pickle) that is followed.
_MAX_NESTING = 8
_LOADS_ANOTHER_FILE = ("torch.storage", "_load_from_bytes")
#: The longest text line (protocol 0 argument) read; a longer one is a malformed stream, not a memory spike.
_MAX_LINE = 16 * 2**20


@dataclass
class PickleStreamScan:
    """What one stream holds. ``embedded``: ``(offset, bytes)`` that the file hands to ``torch.load`` at load
    time (``torch.storage._load_from_bytes``), for the caller to scan as files of their own."""

    findings: list[Finding] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    embedded: list[tuple[int, bytes]] = field(default_factory=list)
    pickles: int = 0
    flavour: str = "pickle"

    @property
    def looks_like_pickle(self) -> bool:
        """At least one complete pickle, or an import before the stream broke."""
        return self.pickles > 0 or bool(self.imports)


def scan_pickle_stream(stream: BinaryIO, *, members: Sequence[str] = (), strict: bool = True) -> PickleStreamScan:
    """Scan the pickles in ``stream`` from its current position to its end.

    Args:
        stream: a seekable binary stream (a file, ``io.BytesIO``); offsets in findings are ``stream`` positions.
        members: the archive members that lead to this stream, for the findings' locations.
        strict: the stream is meant to be a pickle (its name or context says so): one that does not parse is a
            ``high`` finding. ``False`` for data that only starts like a pickle: ``low``.
    """
    walker = _StreamWalker(_CappedReader(stream), list(members), strict)
    walker.run()
    return walker.result


class _CappedReader:
    """A stream whose reads never ask for more than is left: a crafted length field (BINBYTES8 of 2**60)
    or a line without an end must not make the scan allocate gigabytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        start = stream.tell()
        self.end = stream.seek(0, io.SEEK_END)
        stream.seek(start)

    def read(self, size: int = -1) -> bytes:
        left = max(self.end - self.stream.tell(), 0)
        return self.stream.read(left if size < 0 or size > left else size)

    def readline(self) -> bytes:
        return self.stream.readline(min(max(self.end - self.stream.tell(), 0), _MAX_LINE))

    def tell(self) -> int:
        return self.stream.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.stream.seek(offset, whence)


class _StreamWalker(MachineEvents):
    def __init__(self, stream: _CappedReader, members: list[str], strict: bool) -> None:
        self.stream = stream
        self.members = members
        self.strict = strict
        self.end = stream.end
        self.result = PickleStreamScan()
        self.legacy_torch = False
        self.joblib_arrays = 0
        self._reported: set[tuple[str, str]] = set()
        self._imports: dict[str, None] = {}

    def run(self) -> None:
        while self.stream.tell() < self.end:
            if self.legacy_torch and self.result.pickles == _LEGACY_TORCH_PICKLES:
                break  # the rest is raw tensor bytes, which torch.load copies without unpickling
            start = self.stream.tell()
            try:
                value = self._walk_pickle(nesting=0)
            except Exception as error:  # pickletools raises assorted errors on a corrupt stream
                self._malformed(start, error)
                break
            self.result.pickles += 1
            if self.result.pickles == 1 and isinstance(value, int) and value == LEGACY_TORCH_MAGIC:
                self.legacy_torch = True
        self.result.imports = list(self._imports)
        self.result.flavour = "torch-legacy" if self.legacy_torch else "joblib" if self.joblib_arrays else "pickle"

    def _walk_pickle(self, nesting: int) -> Any:
        """Walk one pickle to its STOP; returns the value it leaves (as far as the machine knows it)."""
        machine = PickleMachine(self)
        while True:
            wrapper = None
            for opcode, arg, offset in pickletools.genops(self.stream):
                machine.step(opcode.name, arg, offset)
                if opcode.name == "BUILD" and _is_joblib_array(machine.stack[-1]):
                    wrapper = machine.stack[-1]
                    break
            if wrapper is None:
                return machine.result
            self._skip_joblib_array(wrapper, nesting)

    def _skip_joblib_array(self, wrapper: Call, nesting: int) -> None:
        """Step over the array bytes joblib writes after a wrapper (an object array is a pickle: scan it)."""
        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        shape = state.get("shape")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise MalformedPickle("a joblib array wrapper without a valid shape")
        itemsize, has_object = dtype_layout(state.get("dtype"))
        self.joblib_arrays += 1
        if has_object:
            if nesting >= _MAX_NESTING:
                raise MalformedPickle(f"joblib object arrays nested more than {_MAX_NESTING} deep")
            self._walk_pickle(nesting + 1)
            return
        start = self.stream.tell()
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.stream.read(1)  # joblib pads the array to its alignment: one length byte, then zeros
            if not padding:
                raise MalformedPickle("the stream ends before a joblib array")
            self._skip(padding[0])
        self._skip(math.prod(shape) * itemsize)
        self._scan_as_opcodes(start, self.stream.tell())

    def _skip(self, size: int) -> None:
        if self.stream.tell() + size > self.end:
            raise MalformedPickle("array data runs past the end of the stream")
        self.stream.seek(size, io.SEEK_CUR)

    def _scan_as_opcodes(self, start: int, end: int) -> None:
        """``pickle.load`` (unlike ``joblib.load``) reads a joblib array's bytes as opcodes: report denied imports
        there. Real array bytes stop parsing within a few bytes; the stream is left at ``end``."""
        self.stream.seek(start)
        machine = PickleMachine(_DeniedImportsOnly(self))
        try:
            for opcode, arg, offset in pickletools.genops(self.stream):
                if offset >= end:
                    break
                machine.step(opcode.name, arg, offset)
        except Exception:  # array bytes are not meant to parse: only what parsed before the break matters
            pass
        self.stream.seek(end)

    def _malformed(self, start: int, error: Exception) -> None:
        offset = min(self.stream.tell(), self.end)
        reason = str(error) or type(error).__name__
        if not self.strict:
            self.report("low", "malformed", f"starts like a pickle but does not parse ({reason}): raw data?", offset)
        elif self.result.pickles == 0 or (self.legacy_torch and self.result.pickles < _LEGACY_TORCH_PICKLES):
            self.report("high", "malformed", f"the pickle from byte {start} does not parse ({reason}): a "
                         "truncated or crafted stream; loading it runs every opcode before the break", offset)
        else:
            self.report("medium", "malformed", f"the bytes from {start}, after pickle {self.result.pickles}, "
                         f"do not parse as a pickle ({reason}); pickle.load stops before them", offset)

    # --- machine events ------------------------------------------------------------------------------

    def on_import(self, imported: Global) -> None:
        self._imports.setdefault(imported.symbol)
        verdict = classify_import(imported.module, imported.name)
        if verdict.kind is not None:
            self.report(verdict.severity, verdict.kind, f"imports {imported.symbol}: {verdict.reason}",
                         imported.offset, imported.symbol)

    def on_unresolved_import(self, offset: int, module: Any, name: Any) -> None:
        self.report("high", "unresolved_import", f"STACK_GLOBAL imports {_preview(module)}.{_preview(name)}, a "
                     "name computed at load time, which cannot be checked", offset)

    def on_call(self, call: Call, opcode: str) -> None:
        func = call.func
        if isinstance(func, Global):
            if classify_import(func.module, func.name).severity == "critical":
                self.report("critical", "dangerous_opcode", f"{opcode} calls {func.symbol}{_preview_args(call.args)} "
                             "when the file is loaded", call.offset, func.symbol)
            payload = call.args[0] if isinstance(call.args, tuple) and call.args else None
            if (func.module, func.name) == _LOADS_ANOTHER_FILE and isinstance(payload, bytes | bytearray):
                self.result.embedded.append((call.offset, bytes(payload)))
        elif isinstance(func, Call):
            self.report("high", "dangerous_opcode", f"{opcode} calls the result of another call "
                         f"({_preview(func)}): how getattr-style chains reach hidden callables", call.offset)
        elif func is UNKNOWN:
            self.report("medium", "dangerous_opcode", f"{opcode} calls an object the scanner cannot resolve "
                         "(a persistent id or an extension code)", call.offset)

    def on_build(self, target: Any, state: Any, offset: int) -> None:
        if isinstance(target, Global):
            self.report("high", "dangerous_opcode", f"BUILD sets attributes on {target.symbol} itself: it "
                         "patches a module or class at load time", offset, target.symbol)

    def on_extension(self, code: int, offset: int) -> None:
        self.report("medium", "unknown_import", f"extension code {code} imports whatever copyreg's extension "
                     "registry maps it to", offset)

    def on_persistent_id(self, pid: Any) -> Any:
        # Legacy torch saves store a module's class as the persistent id ("module", class, file, source),
        # and torch.load hands back that class: keep it, so that calls on it are judged by their import.
        if isinstance(pid, tuple) and len(pid) > 1 and pid[0] == "module" and isinstance(pid[1], Global):
            return pid[1]
        return UNKNOWN

    def report(self, severity: Severity, kind: FindingKind, message: str, offset: int,
               symbol: str | None = None) -> None:
        """Add a finding, once per kind and symbol (a payload may repeat a call thousands of times)."""
        key = (kind, symbol or message)
        if key in self._reported:
            return
        self._reported.add(key)
        self.result.findings.append(Finding(severity=severity, kind=kind, message=message, members=self.members,
                                            offset=offset, symbol=symbol))


class _DeniedImportsOnly(MachineEvents):
    """Reports only denied imports: for bytes that are data to one loader and opcodes to another."""

    def __init__(self, walker: _StreamWalker) -> None:
        self.walker = walker

    def on_import(self, imported: Global) -> None:
        if classify_import(imported.module, imported.name).severity == "critical":
            self.walker.report("critical", "dangerous_import", f"imports {imported.symbol} from bytes joblib.load "
                                "reads as array data, but pickle.load runs as opcodes", imported.offset,
                                imported.symbol)


def _is_joblib_array(value: Any) -> bool:
    """A ``joblib.numpy_pickle.NumpyArrayWrapper``, whose array bytes follow its ``BUILD`` in the stream."""
    return (isinstance(value, Call) and isinstance(value.func, Global) and value.func.name == "NumpyArrayWrapper"
            and value.func.module.endswith("numpy_pickle"))


def dtype_layout(dtype: Any, depth: int = 0) -> tuple[int, bool]:
    """``(itemsize, holds Python objects)`` of a pickled ``numpy.dtype(descr, False, True)`` with its state.

    Raises:
        MalformedPickle: not a dtype this function can size (the array bytes after it cannot be skipped).
    """
    import numpy as np

    if not (isinstance(dtype, Call) and isinstance(dtype.func, Global) and dtype.func.symbol == "numpy.dtype"
            and isinstance(dtype.args, tuple) and dtype.args and isinstance(dtype.args[0], str)) or depth > 8:
        raise MalformedPickle("a joblib array whose dtype cannot be read")
    try:
        base = np.dtype(dtype.args[0])  # a type code such as 'f8' or 'V12': parsing it runs no code
    except (TypeError, ValueError) as error:
        raise MalformedPickle(f"a joblib array with dtype {dtype.args[0]!r}: {error}") from None
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    itemsize = state[5] if len(state) > 5 and isinstance(state[5], int) and state[5] > 0 else base.itemsize
    fields = state[4] if len(state) > 4 and isinstance(state[4], dict) else {}
    has_object = base.hasobject or any(
        dtype_layout(entry[0], depth + 1)[1] for entry in fields.values() if isinstance(entry, tuple) and entry)
    return itemsize, has_object


def _preview(value: Any, limit: int = 60) -> str:
    """A short, safe rendering of a value on the symbolic stack (never a huge or recursive repr)."""
    if isinstance(value, str | bytes | bytearray):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    if isinstance(value, bool | float) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else "<large int>"
    if isinstance(value, Global):
        return value.symbol
    if isinstance(value, Call):  # one level: a chain of calls may be thousands deep
        return f"{value.func.symbol if isinstance(value.func, Global) else '…'}(…)"
    return "…"


def _preview_args(args: Any) -> str:
    if not isinstance(args, tuple):
        return "(…)"
    shown = ", ".join(_preview(arg) for arg in args[:3])
    return f"({shown}{', …' if len(args) > 3 else ''})"
