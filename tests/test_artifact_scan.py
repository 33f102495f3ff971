"""The model-file scanner: malicious pickles are caught wherever they hide (plain, in archives, after arrays,
behind memoised names, in legacy torch saves), clean files from torch, numpy, joblib, sklearn, safetensors and
skops pass, and nothing is ever unpickled. Every payload is written by this file and only scanned."""

from __future__ import annotations

import builtins
import gzip
import io
import json
import os
import pickle
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from bastion.artifacts import ArtifactScan, classify_import, scan_artifact, scan_bytes
from bastion.artifacts.pickle_scan import LEGACY_TORCH_MAGIC
from bastion.cli.main import app
from bastion.core.errors import InputError

runner = CliRunner()


class _Call:
    """Pickles as ``func(*args)``: what a payload makes the unpickler call. Never called here."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args

    def __call__(self, *args: object) -> None:  # pickle insists that a reduce callable be callable
        raise AssertionError("a payload was called")


class Harmless:
    """An ordinary class from outside the allowlist."""


# --- hand-assembled opcode streams -------------------------------------------------------------------------


def _text(value: str) -> bytes:
    raw = value.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


#: GLOBAL ``os system`` right after PROTO: the import sits at byte 2.
GLOBAL_OS_SYSTEM = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"os\nsystem\n" + _text("echo pwned") + pickle.TUPLE1
                    + pickle.REDUCE + pickle.STOP)
#: STACK_GLOBAL whose module name comes back from the memo (BINPUT 0, POP, BINGET 0).
MEMO_STACK_GLOBAL = (pickle.PROTO + b"\x04" + _text("os") + pickle.BINPUT + b"\x00" + pickle.POP + _text("decoy")
                     + pickle.POP + pickle.BINGET + b"\x00" + _text("system") + pickle.STACK_GLOBAL
                     + _text("echo pwned") + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
#: The same with MEMOIZE (protocol 4's implicit memo index) and a module other than os.
MEMOIZE_STACK_GLOBAL = (pickle.PROTO + b"\x04" + _text("subprocess") + pickle.MEMOIZE + pickle.POP
                        + pickle.BINGET + b"\x00" + _text("check_output") + pickle.STACK_GLOBAL + pickle.STOP)
PROTOCOL_0 = b"cos\nsystem\n(S'echo pwned'\ntR."
INST = b"(S'echo pwned'\nios\nsystem\n."
OBJ = b"(cos\nsystem\nS'echo pwned'\no."
#: ``torch`` + ``os.system``: from protocol 4 on, a dotted name walks attributes (torch.os is os).
ATTRIBUTE_PATH = pickle.PROTO + b"\x04" + _text("torch") + _text("os.system") + pickle.STACK_GLOBAL + pickle.STOP
#: BUILD with (None, {"x": None}) on an allowed class: setattr on the class itself, i.e. monkey-patching.
BUILD_ON_CLASS = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.NONE
                  + pickle.EMPTY_DICT + _text("x") + pickle.NONE + pickle.SETITEM + pickle.TUPLE2 + pickle.BUILD
                  + pickle.STOP)
#: STACK_GLOBAL whose module name is the result of a call: nothing to check until load time.
COMPUTED_NAME = (pickle.PROTO + b"\x04" + pickle.GLOBAL + b"builtins\nstr\n" + _text("os") + pickle.TUPLE1
                 + pickle.REDUCE + _text("system") + pickle.STACK_GLOBAL + pickle.STOP)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # pickles an object array (dumps, never loads)
    return buffer.getvalue()


def _object_array(payload: object) -> np.ndarray:
    array = np.empty(1, dtype=object)
    array[0] = payload
    return array


def _joblib(value: object, **options: object) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer, **options)
    return buffer.getvalue()


OS_SYSTEM = _Call(os.system, "echo pwned")
SKOPS_SCHEMA = json.dumps({"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
                           "content": {}}).encode()
LEGACY_PREFIX = pickle.dumps(LEGACY_TORCH_MAGIC, protocol=2)

#: id -> (file name, bytes, (severity, kind, symbol) that must be among the findings).
MALICIOUS: dict[str, tuple[str, bytes, tuple[str, str, str | None]]] = {
    "reduce os.system": ("model.pkl", pickle.dumps(OS_SYSTEM),  # os.system pickles as posix.system (nt on Windows)
                         ("critical", "dangerous_opcode", f"{os.system.__module__}.system")),
    "reduce eval": ("model.pkl", pickle.dumps(_Call(eval, "1+1")), ("critical", "dangerous_import", "builtins.eval")),
    "reduce builtins.exec": ("model.pkl", pickle.dumps(_Call(builtins.exec, "import os")),
                             ("critical", "dangerous_import", "builtins.exec")),
    "reduce subprocess.Popen": ("model.pkl", pickle.dumps(_Call(subprocess.Popen, ["echo", "pwned"])),
                                ("critical", "dangerous_import", "subprocess.Popen")),
    "getattr chain": ("model.pkl", pickle.dumps(_Call(_Call(getattr, _Call(__import__, "os"), "system"), "id")),
                      ("high", "dangerous_opcode", None)),
    "GLOBAL os system": ("model.pkl", GLOBAL_OS_SYSTEM, ("critical", "dangerous_import", "os.system")),
    "STACK_GLOBAL via BINGET": ("model.pkl", MEMO_STACK_GLOBAL, ("critical", "dangerous_opcode", "os.system")),
    "STACK_GLOBAL via MEMOIZE": ("model.pkl", MEMOIZE_STACK_GLOBAL,
                                 ("critical", "dangerous_import", "subprocess.check_output")),
    "protocol 0 text": ("model.pkl", PROTOCOL_0, ("critical", "dangerous_opcode", "os.system")),
    "INST": ("model.pkl", INST, ("critical", "dangerous_opcode", "os.system")),
    "OBJ": ("model.pkl", OBJ, ("critical", "dangerous_opcode", "os.system")),
    "attribute path torch.os.system": ("model.pkl", ATTRIBUTE_PATH,
                                       ("critical", "dangerous_import", "torch.os.system")),
    "BUILD patches a class": ("model.pkl", BUILD_ON_CLASS, ("high", "dangerous_opcode", "collections.OrderedDict")),
    "computed import name": ("model.pkl", COMPUTED_NAME, ("high", "unresolved_import", None)),
    "no suffix, protocol 0": ("payload", PROTOCOL_0, ("critical", "dangerous_import", "os.system")),
    "torch zip archive/data.pkl": ("model.pt", _zip({"archive/data.pkl": GLOBAL_OS_SYSTEM, "archive/version": b"3\n",
                                                    "archive/data/0": bytes(64)}),
                                   ("critical", "dangerous_import", "os.system")),
    "zip member named like data": ("model.pt", _zip({"archive/data/7": GLOBAL_OS_SYSTEM}),
                                   ("critical", "dangerous_import", "os.system")),
    "legacy torch, payload in pickle 2": ("model.pt", LEGACY_PREFIX + GLOBAL_OS_SYSTEM,
                                          ("critical", "dangerous_import", "os.system")),
    "concatenated pickles": ("model.pkl", pickle.dumps({"w": 1}) + pickle.dumps(_Call(eval, "1")),
                             ("critical", "dangerous_import", "builtins.eval")),
    "object .npy": ("weights.npy", _npy(_object_array(_Call(eval, "1"))),
                    ("critical", "dangerous_import", "builtins.eval")),
    "object .npy in .npz": ("weights.npz",
                            _zip({"w.npy": _npy(np.ones(3)), "evil.npy": _npy(_object_array(OS_SYSTEM))}),
                            ("critical", "dangerous_opcode", None)),
    "joblib, payload after an array": ("model.joblib", _joblib({"w": np.arange(100.0), "b": _Call(eval, "1")}),
                                       ("critical", "dangerous_import", "builtins.eval")),
    "joblib compressed": ("model.joblib", _joblib({"w": np.ones(4), "b": _Call(eval, "1")}, compress=3),
                          ("critical", "dangerous_import", "builtins.eval")),
    "torch.load of embedded bytes": (
        "model.pkl", pickle.dumps(_Call(torch.storage._load_from_bytes, LEGACY_PREFIX + GLOBAL_OS_SYSTEM)),
        ("critical", "dangerous_import", "os.system")),
    "skops with a pickle member": ("model.skops", _zip({"schema.json": SKOPS_SCHEMA, "extra.pkl": GLOBAL_OS_SYSTEM}),
                                   ("critical", "dangerous_import", "os.system")),
    "skops schema naming os.system": ("model.skops", _zip({"schema.json": json.dumps(
        {"__class__": "system", "__module__": "os", "__loader__": "FunctionNode"}).encode()}),
        ("critical", "dangerous_import", "os.system")),
    "truncated malicious pickle": ("model.pkl", GLOBAL_OS_SYSTEM[:-3], ("critical", "dangerous_import", "os.system")),
    "truncated pickle": ("model.pkl", pickle.dumps(list(range(100)))[:-10], ("high", "malformed", None)),
    "broken safetensors": ("model.safetensors", (40).to_bytes(8, "little") + b'{"w": {"dtype": "F32"',
                           ("high", "malformed", None)),
}


@pytest.mark.parametrize("case", MALICIOUS, ids=list(MALICIOUS))
def test_malicious_files_are_unsafe(case, tmp_path):
    name, data, (severity, kind, symbol) = MALICIOUS[case]
    path = tmp_path / name
    path.write_bytes(data)
    scan = scan_artifact(path)
    assert not scan.safe and scan.verdict == "unsafe"
    assert any(f.severity == severity and f.kind == kind and (symbol is None or f.symbol == symbol)
               for f in scan.findings), scan.findings
    assert scan.findings[0].severity in {"critical", "high"}  # worst first


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_os_system_is_caught_at_every_protocol(protocol):
    scan = scan_bytes(pickle.dumps(OS_SYSTEM, protocol=protocol), name="model.pkl")
    assert {f.kind for f in scan.findings if f.severity == "critical"} == {"dangerous_import", "dangerous_opcode"}
    assert "echo pwned" in next(f.message for f in scan.findings if f.kind == "dangerous_opcode")


def test_scanning_runs_nothing(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_Call(os.system, f"touch {marker}")))

    def refuse(*args, **kwargs):
        raise AssertionError("the scanner unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    assert not scan_artifact(path).safe
    assert not marker.exists()


def test_nested_archives_report_the_member_chain_and_offset():
    inner = _zip({"weights/payload.pkl": GLOBAL_OS_SYSTEM})
    scan = scan_bytes(_zip({"readme.txt": b"hi", "inner.zip": inner}), name="bundle.zip")
    found = next(f for f in scan.findings if f.kind == "dangerous_import")
    assert (found.members, found.offset, found.symbol) == (["inner.zip", "weights/payload.pkl"], 2, "os.system")
    assert found.location == "inner.zip > weights/payload.pkl @ 2"
    assert any(f.kind == "nested_archive" and f.severity == "low" for f in scan.findings)


def test_archives_deeper_than_max_depth_are_not_trusted():
    archive = GLOBAL_OS_SYSTEM
    for level in range(3):
        archive = _zip({f"level{level}.zip" if level else "data.pkl": archive})
    assert any(f.symbol == "os.system" for f in scan_bytes(archive, name="x.zip", max_depth=3).findings)
    shallow = scan_bytes(archive, name="x.zip", max_depth=1)
    assert not shallow.safe
    assert [f.kind for f in shallow.findings if f.severity == "high"] == ["nested_archive"]


def test_a_zip_bomb_stops_at_the_byte_budget():
    scan = scan_bytes(_zip({"data.pkl": bytes(5_000_000)}), name="bomb.pt", max_bytes=1_000_000)
    assert [(f.severity, f.kind) for f in scan.findings] == [("high", "too_large")]


def test_the_payload_offset_in_a_legacy_torch_stream_counts_from_the_file_start():
    scan = scan_bytes(LEGACY_PREFIX + GLOBAL_OS_SYSTEM, name="model.pt")
    assert scan.format == "torch-legacy"
    assert next(f.offset for f in scan.findings if f.symbol == "os.system") == len(LEGACY_PREFIX) + 2


def test_a_payload_posing_as_joblib_array_bytes_is_caught():
    from joblib.numpy_pickle import NumpyArrayWrapper

    # joblib.load reads the bytes after the wrapper as array data; pickle.load reads them as opcodes.
    payload = GLOBAL_OS_SYSTEM[2:-1]
    wrapper = NumpyArrayWrapper(np.ndarray, (len(payload),), "C", np.dtype(np.uint8), allow_mmap=False,
                                numpy_array_alignment_bytes=None)
    scan = scan_bytes(pickle.dumps(wrapper, protocol=2)[:-1] + payload + pickle.STOP, name="model.joblib")
    assert scan.format == "joblib"
    assert any(f.severity == "critical" and f.symbol == "os.system" for f in scan.findings), scan.findings


def test_a_huge_length_field_is_malformed_not_a_huge_read(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.PROTO + b"\x04" + pickle.BINBYTES8 + (2**60).to_bytes(8, "little") + b"abc")
    assert [(f.severity, f.kind) for f in scan_artifact(path).findings] == [("high", "malformed")]


def test_raw_tensor_bytes_that_look_like_a_signature_are_no_alarm():
    archive = _zip({"archive/data.pkl": pickle.dumps({"w": 1}, protocol=2), "archive/data/0": b"x^" + bytes(64),
                    "archive/data/1": b"\x80\x02" + bytes(range(200, 256))})
    scan = scan_bytes(archive, name="model.pt")
    assert scan.safe and scan.format == "torch-zip"
    assert {(f.severity, f.kind) for f in scan.findings} == {("low", "malformed")}


def test_unknown_imports_and_formats_are_reported_but_not_unsafe():
    unknown = scan_bytes(pickle.dumps(Harmless()), name="model.pkl")
    assert unknown.safe and [f.kind for f in unknown.findings] == ["unknown_import"]
    assert unknown.findings[0].severity == "medium" and unknown.findings[0].symbol.endswith("Harmless")
    lz4 = scan_bytes(b"\x04\x22\x4d\x18" + bytes(20), name="model.joblib")  # a stream it cannot open
    assert not lz4.safe and [f.kind for f in lz4.findings] == ["not_checked"]
    text = scan_bytes(b"just some notes\n", name="notes.txt")
    assert text.safe and text.format == "unknown"
    assert [(f.severity, f.kind) for f in text.findings] == [("low", "unknown_format")]


# --- clean files ---------------------------------------------------------------------------------------------


def _small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _fitted_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 4))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def _skops(path: Path) -> None:
    skops_io = pytest.importorskip("skops.io", reason="skops is an optional dependency")
    skops_io.dump(_fitted_logistic_regression(), path)


#: id -> (file name, writer, format the scan must report).
CLEAN: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "torch state_dict": ("sd.pt", lambda p: torch.save(_small_net().state_dict(), p), "torch-zip"),
    "torch full module": ("net.pt", lambda p: torch.save(_small_net(), p), "torch-zip"),
    "torch legacy state_dict": ("legacy.pth", lambda p: torch.save(_small_net().state_dict(), p,
                                                                   _use_new_zipfile_serialization=False),
                                "torch-legacy"),
    "torchscript": ("scripted.pt", lambda p: torch.jit.save(torch.jit.script(_small_net()), p), "torchscript"),
    "safetensors": ("w.safetensors", lambda p: save_file(_small_net().state_dict(), p), "safetensors"),
    "joblib LogisticRegression": ("lr.joblib", lambda p: joblib.dump(_fitted_logistic_regression(), p), "joblib"),
    "joblib compressed": ("lrz.joblib", lambda p: joblib.dump(_fitted_logistic_regression(), p, compress=3),
                          "zlib+joblib"),
    "joblib array": ("a.joblib", lambda p: joblib.dump(np.arange(12.0).reshape(3, 4), p), "joblib"),
    "joblib mixed arrays": ("m.joblib", lambda p: joblib.dump({
        "objects": np.array([1, "x", None], dtype=object), "fortran": np.ones((3, 2), np.float32, order="F"),
        "text": np.array(["ab", "c"]), "scalar": np.float64(2.5)}, p), "joblib"),
    "numpy .npy": ("a.npy", lambda p: np.save(p, np.linspace(0, 1, 7)), "npy"),
    "numpy .npz": ("a.npz", lambda p: np.savez(p, x=np.ones(3), y=np.zeros((2, 2))), "npz"),
    "skops LogisticRegression": ("lr.skops", _skops, "skops"),
    "plain pickle": ("d.pkl", lambda p: p.write_bytes(pickle.dumps({"a": [1, 2.0, "x"]})), "pickle"),
}


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # scripting is deprecated, its files are not
@pytest.mark.parametrize("case", CLEAN, ids=list(CLEAN))
def test_clean_files_pass(case, tmp_path):
    name, write, format_name = CLEAN[case]
    path = tmp_path / name
    write(path)
    scan = scan_artifact(path)
    assert scan.safe and scan.verdict == "safe"
    assert [f for f in scan.findings if f.severity != "info"] == []
    assert scan.format == format_name
    assert len(scan.sha256) == 64 and scan.size == path.stat().st_size


# --- the import policy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("module", "name", "severity"), [
    ("os", "system", "critical"),
    ("posix", "system", "critical"),
    ("os.path", "join", "critical"),
    ("builtins", "getattr", "critical"),
    ("__builtin__", "eval", "critical"),
    ("operator", "attrgetter", "critical"),
    ("torch", "load", "critical"),
    ("torch.hub", "load", "critical"),
    ("torch", "os.system", "critical"),
    ("sklearn.base", "BaseEstimator.__init__.__globals__", "critical"),
    ("pip", "main", "critical"),
    ("pydoc", "pipepager", "critical"),
    ("venv", "create", "critical"),
    ("torch._inductor.codecache", "compile_file", "critical"),
    ("http.client", "HTTPSConnection", "critical"),
    ("torch.storage", "_load_from_bytes", "high"),
    ("codecs", "encode", "medium"),  # not the code module
    ("functools", "partial", "medium"),
    ("mypackage.models", "Net", "medium"),
    ("_codecs", "encode", "info"),
    ("torch._utils", "_rebuild_tensor_v2", "info"),
    ("torch", "HalfStorage", "info"),
    ("torch.nn.modules.conv", "Conv2d", "info"),
    ("numpy._core.multiarray", "_reconstruct", "info"),
    ("sklearn.linear_model._logistic", "LogisticRegression", "info"),
    ("builtins", "set", "info"),
])
def test_import_policy(module, name, severity):
    assert classify_import(module, name).severity == severity


# --- errors and the CLI -----------------------------------------------------------------------------------


def test_bad_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        scan_artifact(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="is a folder"):
        scan_artifact(tmp_path)
    with pytest.raises(InputError, match="max_depth"):
        scan_bytes(b"", max_depth=-1)


@pytest.mark.parametrize("name", ["model.pt", "model.pkl", "weights.bin2", "model.joblib.gz"])
def test_an_empty_file_is_unsafe_not_a_safe_pickle(name):
    data = gzip.compress(b"") if name.endswith(".gz") else b""
    scan = scan_bytes(data, name=name)
    assert not scan.safe and scan.format.endswith("empty")
    assert [(f.severity, f.kind) for f in scan.findings] == [("high", "malformed")]
    assert "empty (0 bytes)" in scan.findings[0].message


def test_cli_reports_an_empty_file_and_exits_1(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    report = tmp_path / "scan.json"
    result = runner.invoke(app, ["artifact", "scan", str(empty), "--json", str(report)])
    assert result.exit_code == 1, result.output
    assert "UNSAFE" in result.output and "pickle" not in result.output  # the table wraps with the terminal's width
    (scan,) = json.loads(report.read_text())["files"]
    assert scan["format"] == "empty" and scan["verdict"] == "unsafe"
    assert "the file is empty (0 bytes)" in scan["findings"][0]["message"]


def test_cli_exit_codes_and_json(tmp_path):
    clean, evil = tmp_path / "clean.pkl", tmp_path / "evil.pkl"
    clean.write_bytes(pickle.dumps([1, 2]))
    evil.write_bytes(GLOBAL_OS_SYSTEM)

    result = runner.invoke(app, ["artifact", "scan", str(clean)])
    assert result.exit_code == 0, result.output
    assert "SAFE" in result.output

    report = tmp_path / "out" / "scan.json"
    result = runner.invoke(app, ["artifact", "scan", str(clean), str(evil), "--json", str(report)])
    assert result.exit_code == 1, result.output
    assert "UNSAFE" in result.output and "os.system" in result.output and "1 unsafe" in result.output
    document = json.loads(report.read_text())
    assert document["safe"] is False
    scans = [ArtifactScan.model_validate(entry) for entry in document["files"]]
    assert [scan.verdict for scan in scans] == ["safe", "unsafe"]
    assert document["files"][1]["findings"][0]["severity"] == "critical"

    result = runner.invoke(app, ["artifact", "scan", str(clean), str(tmp_path / "missing.pt")])
    assert result.exit_code == 2
    assert "not found" in result.output


# Callables public scanners' test suites (picklescan, modelscan, fickling) build their malicious samples
# around, each written here as a protocol-2 pickle that imports it and calls it with one string.
PUBLIC_SCANNER_CASES = [
    ("builtins", "eval"), ("__builtin__", "exec"), ("os", "system"), ("posix", "system"), ("nt", "system"),
    ("subprocess", "Popen"), ("subprocess", "run"), ("runpy", "_run_code"), ("webbrowser", "open"),
    ("socket", "create_connection"), ("requests.api", "get"), ("aiohttp.client", "ClientSession"),
    ("http.client", "HTTPSConnection"), ("urllib.request", "urlopen"), ("bdb", "Bdb.run"), ("pdb", "run"),
    ("timeit", "timeit"), ("pip", "main"), ("pydoc", "pipepager"), ("venv", "create"), ("shutil", "rmtree"),
    ("importlib", "import_module"), ("code", "InteractiveInterpreter.runcode"), ("pickle", "loads"),
    ("_pickle", "loads"), ("marshal", "loads"), ("ctypes", "CDLL"), ("torch", "load"),
    ("torch._inductor.codecache", "compile_file"), ("numpy", "load"), ("sys", "exit"),
]


@pytest.mark.parametrize(("module", "name"), PUBLIC_SCANNER_CASES)
def test_public_scanners_cases_are_flagged(module, name):
    argument = b"payload"
    data = (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + b"U" + bytes([len(argument)])
            + argument + b"\x85R.")
    scan = scan_bytes(data, name=f"{module}.{name}.pkl")
    assert not scan.safe and scan.findings[0].severity == "critical", scan.findings
