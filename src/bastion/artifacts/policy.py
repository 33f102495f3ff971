"""Which imports a pickle may make: a denylist of callables that run code, commands, I/O or network, an allowlist
of what clean torch, numpy, scikit-learn and joblib files use, and everything else left for review.

Unpickling imports ``module`` and looks ``name`` up in it (dotted names walk attributes from protocol 4 on),
so a pickle can call anything importable; the lists below decide how worrying each import is.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from bastion.artifacts.findings import FindingKind, Severity

#: Modules whose every name is denied, submodules included: processes, code, files, network, other loaders.
DENIED_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "shutil", "socket", "runpy", "importlib",
    "pkgutil", "zipimport", "pty", "webbrowser", "code", "codeop", "pdb", "bdb", "trace", "timeit", "profile",
    "cProfile", "pickle", "_pickle", "cloudpickle", "dill", "marshal", "ctypes", "_ctypes", "multiprocessing",
    "asyncio", "requests", "urllib", "urllib3", "httpx", "aiohttp", "http", "ftplib", "smtplib", "telnetlib",
    "torch.hub", "commands", "popen2",
    # installers and tools that run code or commands (cases public scanners test: pip.main, pydoc.pipepager,
    # venv.create, torch._inductor's compile_file)
    "pip", "ensurepip", "pydoc", "venv", "distutils", "setuptools", "torch._inductor", "torch.utils.cpp_extension",
})

_DANGEROUS_BUILTINS = frozenset({
    "eval", "exec", "execfile", "compile", "open", "file", "__import__", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "breakpoint", "input", "apply", "reload",
})

#: Single callables that are denied (critical); ``builtins`` is spelt ``__builtin__`` in protocol 0-2 pickles.
DENIED_NAMES = frozenset({
    *(("builtins", name) for name in _DANGEROUS_BUILTINS),
    *(("__builtin__", name) for name in _DANGEROUS_BUILTINS),
    ("types", "FunctionType"), ("types", "CodeType"), ("types", "LambdaType"), ("types", "MethodType"),
    ("operator", "attrgetter"), ("operator", "methodcaller"), ("_operator", "attrgetter"),
    ("_operator", "methodcaller"), ("io", "open"), ("io", "open_code"), ("io", "FileIO"), ("_io", "open"),
    ("_io", "open_code"), ("_io", "FileIO"), ("torch", "load"), ("torch.serialization", "load"),
    ("numpy", "load"), ("numpy.lib.npyio", "load"), ("joblib", "load"), ("joblib.numpy_pickle", "load"),
    ("sklearn.externals.joblib", "load"), ("sklearn.externals.joblib.numpy_pickle", "load"),
})

#: Callables that load another serialised file, which this scan cannot vouch for (high).
HIGH_NAMES = frozenset({("torch.storage", "_load_from_bytes")})

_TORCH_DTYPES = ("float16", "float32", "float64", "bfloat16", "half", "float", "double", "complex64", "complex128",
                 "uint8", "int8", "int16", "int32", "int64", "short", "int", "long", "bool")

#: Exact imports of clean model files.
ALLOWED_NAMES = frozenset({
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "deque"),
    ("collections", "Counter"), ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"),
    ("_codecs", "encode"), ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"), ("decimal", "Decimal"), ("fractions", "Fraction"),
    *((builtins, name) for builtins in ("builtins", "__builtin__") for name in (
        "set", "frozenset", "slice", "complex", "bytearray", "range", "list", "dict", "tuple", "int", "float",
        "bool", "str", "bytes", "object")),
    ("torch", "device"), ("torch", "Size"), ("torch", "dtype"), ("torch", "Tensor"),
    ("torch.serialization", "_get_layout"), ("torch.nn.parameter", "Parameter"), ("torch.nn.parameter", "Buffer"),
    *(("torch", dtype) for dtype in _TORCH_DTYPES),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    ("numpy.ma.core", "_mareconstruct"), ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"), ("numpy.random._pickle", "__bit_generator_ctor"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"), ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
})

#: ``(module pattern, name pattern)`` of allowed families (fnmatch, case-sensitive; names without dots).
ALLOWED_PATTERNS = (
    ("torch._utils", "_rebuild_*"),  # tensors, parameters, quantised and sparse tensors
    ("torch", "*Storage"), ("torch.storage", "*Storage"),
    ("torch.nn.modules.*", "[A-Z]*"),  # the classes of a pickled nn.Module
    ("__torch__", "*"), ("__torch__.*", "*"),  # TorchScript classes: compiled from the archive, not imported
    ("torch.jit._pickle", "build_*"), ("torch.jit._pickle", "restore_type_tag"),
    ("numpy.dtypes", "*DType"), ("numpy.random.*", "[A-Z]*"),  # dtypes; RandomState, bit generators
    ("sklearn.*", "[A-Z]*"),  # estimator, tree and loss classes
    ("scipy.sparse.*", "*_matrix"), ("scipy.sparse.*", "*_array"),
)

#: Attribute names that lead from an innocent object to arbitrary code (``X.__init__.__globals__``).
_ESCAPE_ATTRIBUTES = frozenset({
    "__globals__", "__builtins__", "__import__", "__subclasses__", "__class__", "__base__", "__bases__", "__mro__",
    "__dict__", "__getattribute__", "__code__", "__closure__", "__self__", "__func__", "__loader__", "__spec__",
    "__reduce__", "__reduce_ex__", "__setstate__", "__call__",
})


@dataclass(frozen=True)
class ImportVerdict:
    """How one import is judged. ``kind`` is ``None`` for an allowed import (nothing to report)."""

    severity: Severity
    kind: FindingKind | None
    reason: str


ALLOWED = ImportVerdict("info", None, "used by clean model files")


def classify_import(module: str, name: str) -> ImportVerdict:
    """Judge ``module.name``: denied (critical), loads another file (high), allowed (info) or unknown (medium)."""
    if _is_denied(module, name):
        return ImportVerdict("critical", "dangerous_import", "can run commands, code, file or network I/O")
    if "." in name:
        return _classify_attribute_path(module, name)
    if (module, name) in HIGH_NAMES:
        return ImportVerdict("high", "dangerous_import", "loads another serialised file, which may hold a payload")
    if (module, name) in ALLOWED_NAMES or any(
        fnmatchcase(module, module_pattern) and fnmatchcase(name, name_pattern)
        for module_pattern, name_pattern in ALLOWED_PATTERNS
    ):
        return ALLOWED
    return ImportVerdict("medium", "unknown_import", "not on the allowlist of clean model files: review it")


def _is_denied(module: str, name: str) -> bool:
    root = module.split(".", 1)[0]
    return (
        any(module == denied or module.startswith(f"{denied}.") for denied in DENIED_MODULES)
        or (module, name) in DENIED_NAMES
        or (root in {"builtins", "__builtin__"} and name.split(".", 1)[0] in _DANGEROUS_BUILTINS)
    )


def _classify_attribute_path(module: str, name: str) -> ImportVerdict:
    """A dotted name walks attributes (``torch`` + ``os.system`` reaches ``os.system``): judge every step."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part in _ESCAPE_ATTRIBUTES:
            return ImportVerdict("critical", "dangerous_import", f"walks through {part}, a way out to any code")
        if part in DENIED_MODULES or _is_denied(".".join([module, *parts[:index]]), part):
            return ImportVerdict("critical", "dangerous_import", f"reaches {part} through an attribute path")
    return ImportVerdict("medium", "unknown_import", "a dotted attribute path, not on the allowlist: review it")
