"""A symbolic pickle machine: it follows the unpickler's stack and memo over the opcodes ``pickletools.genops``
yields, without importing or calling anything, so that a scan knows which import each call applies.

Imports become :class:`Global`, calls (``REDUCE``, ``NEWOBJ``, ``INST``, ``OBJ``) become :class:`Call`,
literals stay Python values, and what cannot be known (persistent ids, buffers, extension codes) is
:data:`UNKNOWN`. A stack that the real unpickler would reject raises :class:`MalformedPickle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class MalformedPickle(Exception):
    """The opcode stream breaks the unpickler's rules (stack underflow, missing mark, unknown memo key)."""


@dataclass(eq=False)
class Global:
    """An import: ``module.name`` looked up at load time, pushed at byte ``offset``."""

    module: str
    name: str
    offset: int

    @property
    def symbol(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """The result of calling ``func`` with ``args`` at byte ``offset``; ``state`` is what ``BUILD`` gave it."""

    func: Any
    args: Any
    offset: int
    state: Any = None


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()

#: Opcodes whose argument is the value they push.
_LITERALS = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING", "SHORT_BINSTRING",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "FLOAT", "BINFLOAT",
})
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_EMPTY = {"EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_TUPLE": tuple, "EMPTY_SET": list}
_NO_EFFECT = frozenset({"PROTO", "FRAME", "READONLY_BUFFER"})


class MachineEvents:
    """What the machine tells its observer; the scan overrides these to judge imports and calls."""

    def on_import(self, imported: Global) -> None:
        """An import was pushed (``GLOBAL``, ``STACK_GLOBAL``, ``INST``)."""

    def on_unresolved_import(self, offset: int, module: Any, name: Any) -> None:
        """``STACK_GLOBAL`` met operands that are not literal strings."""

    def on_call(self, call: Call, opcode: str) -> None:
        """``call.func`` is applied to ``call.args``."""

    def on_build(self, target: Any, state: Any, offset: int) -> None:
        """``BUILD`` sets ``state`` on ``target``."""

    def on_extension(self, code: int, offset: int) -> None:
        """``EXT1/2/4`` pushes whatever copyreg's extension registry maps ``code`` to."""

    def on_persistent_id(self, pid: Any) -> Any:
        """What the loader's ``persistent_load`` makes of ``pid`` (a storage, a class); unknown by default."""
        return UNKNOWN


class PickleMachine:
    """Stack, mark stack and memo of one pickle; feed it ``step(opcode name, arg, offset)`` per opcode."""

    def __init__(self, events: MachineEvents) -> None:
        self.events = events
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.result: Any = UNKNOWN
        self._handlers: dict[str, Callable[[Any, int], None]] = {
            "MARK": self._mark, "POP": self._pop_any, "POP_MARK": lambda arg, offset: self._pop_mark(),
            "DUP": lambda arg, offset: self._push(self._top()), "STOP": self._stop,
            "APPEND": self._append, "APPENDS": self._appends, "LIST": lambda arg, offset: self._push(self._pop_mark()),
            "TUPLE": lambda arg, offset: self._push(tuple(self._pop_mark())), "TUPLE1": self._tuple_of(1),
            "TUPLE2": self._tuple_of(2), "TUPLE3": self._tuple_of(3), "DICT": self._dict,
            "SETITEM": self._setitem, "SETITEMS": self._setitems, "ADDITEMS": lambda arg, offset: self._pop_mark(),
            "FROZENSET": lambda arg, offset: self._push(tuple(self._pop_mark())),
            "GET": self._get, "BINGET": self._get, "LONG_BINGET": self._get,
            "PUT": self._put, "BINPUT": self._put, "LONG_BINPUT": self._put,
            "MEMOIZE": lambda arg, offset: self._put(len(self.memo), offset),
            "GLOBAL": self._global, "STACK_GLOBAL": self._stack_global, "INST": self._inst, "OBJ": self._obj,
            "REDUCE": self._reduce, "NEWOBJ": self._newobj, "NEWOBJ_EX": self._newobj_ex, "BUILD": self._build,
            "PERSID": lambda arg, offset: self._push(events.on_persistent_id(arg)),
            "BINPERSID": lambda arg, offset: self._push(events.on_persistent_id(self._pop())),
            "NEXT_BUFFER": lambda arg, offset: self._push(UNKNOWN),
            "EXT1": self._extension, "EXT2": self._extension, "EXT4": self._extension,
        }

    def step(self, opcode: str, arg: Any, offset: int) -> None:
        """Apply one opcode as the unpickler would, minus every import and call."""
        if opcode in _LITERALS:
            self._push(arg)
        elif opcode in _CONSTANTS:
            self._push(_CONSTANTS[opcode])
        elif opcode in _EMPTY:
            self._push(_EMPTY[opcode]())
        elif opcode in self._handlers:
            self._handlers[opcode](arg, offset)
        elif opcode not in _NO_EFFECT:
            raise MalformedPickle(f"opcode {opcode} is not handled")

    # --- stack --------------------------------------------------------------------------------------

    def _push(self, value: Any) -> None:
        self.stack.append(value)

    def _pop(self) -> Any:
        if not self.stack:
            raise MalformedPickle("stack underflow")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise MalformedPickle("stack underflow")
        return self.stack[-1]

    def _mark(self, arg: Any, offset: int) -> None:
        self.marks.append(self.stack)
        self.stack = []

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise MalformedPickle("no MARK to pop to")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def _pop_any(self, arg: Any, offset: int) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def _stop(self, arg: Any, offset: int) -> None:
        self.result = self._pop()

    def _tuple_of(self, size: int) -> Callable[[Any, int], None]:
        def handler(arg: Any, offset: int) -> None:
            items = [self._pop() for _ in range(size)]
            self._push(tuple(reversed(items)))

        return handler

    # --- containers ---------------------------------------------------------------------------------

    def _append(self, arg: Any, offset: int) -> None:
        value = self._pop()
        target = self._top()
        if isinstance(target, list):
            target.append(value)

    def _appends(self, arg: Any, offset: int) -> None:
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, list):
            target.extend(items)

    def _dict(self, arg: Any, offset: int) -> None:
        items = self._pop_mark()
        result: dict[Any, Any] = {}
        _update(result, items)
        self._push(result)

    def _setitem(self, arg: Any, offset: int) -> None:
        value = self._pop()
        key = self._pop()
        target = self._top()
        if isinstance(target, dict):
            _update(target, [key, value])

    def _setitems(self, arg: Any, offset: int) -> None:
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, dict):
            _update(target, items)

    # --- memo ---------------------------------------------------------------------------------------

    def _get(self, key: int, offset: int) -> None:
        if key not in self.memo:
            raise MalformedPickle(f"memo key {key} was never stored")
        self._push(self.memo[key])

    def _put(self, key: int, offset: int) -> None:
        self.memo[key] = self._top()

    # --- imports and calls --------------------------------------------------------------------------

    def _global(self, arg: str, offset: int) -> None:
        module, _, name = arg.partition(" ")
        imported = Global(module, name, offset)
        self.events.on_import(imported)
        self._push(imported)

    def _stack_global(self, arg: Any, offset: int) -> None:
        name = self._pop()
        module = self._pop()
        if isinstance(module, str) and isinstance(name, str):
            imported = Global(module, name, offset)
            self.events.on_import(imported)
            self._push(imported)
        else:
            self.events.on_unresolved_import(offset, module, name)
            self._push(UNKNOWN)

    def _inst(self, arg: str, offset: int) -> None:
        module, _, name = arg.partition(" ")
        imported = Global(module, name, offset)
        self.events.on_import(imported)
        self._call(imported, tuple(self._pop_mark()), offset, "INST")

    def _obj(self, arg: Any, offset: int) -> None:
        items = self._pop_mark()
        if not items:
            raise MalformedPickle("OBJ without a class")
        self._call(items[0], tuple(items[1:]), offset, "OBJ")

    def _reduce(self, arg: Any, offset: int) -> None:
        args = self._pop()
        self._call(self._pop(), args, offset, "REDUCE")

    def _newobj(self, arg: Any, offset: int) -> None:
        args = self._pop()
        self._call(self._pop(), args, offset, "NEWOBJ")

    def _newobj_ex(self, arg: Any, offset: int) -> None:
        self._pop()  # keyword arguments
        args = self._pop()
        self._call(self._pop(), args, offset, "NEWOBJ_EX")

    def _call(self, func: Any, args: Any, offset: int, opcode: str) -> None:
        call = Call(func, args, offset)
        self.events.on_call(call, opcode)
        self._push(call)

    def _build(self, arg: Any, offset: int) -> None:
        state = self._pop()
        target = self._top()
        if isinstance(target, Call):
            target.state = state
        self.events.on_build(target, state, offset)

    def _extension(self, code: int, offset: int) -> None:
        self.events.on_extension(code, offset)
        self._push(UNKNOWN)


def _update(target: dict[Any, Any], flat: list[Any]) -> None:
    """Add ``key, value, key, value, ...`` to ``target``, skipping keys that cannot be hashed."""
    for key, value in zip(flat[::2], flat[1::2], strict=False):
        try:
            target[key] = value
        except TypeError:
            continue
