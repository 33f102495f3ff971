"""Loading data and models for ``bastion scan``: every accepted format, and every refusal."""

from __future__ import annotations

import gzip
import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from threadpoolctl import threadpool_limits
from torch import nn

from bastion.core.errors import InputError, UnsafeFileError
from bastion.core.ids import file_digest
from bastion.data.builtin import FASHION_MNIST_ENV
from bastion.data.sources import load_dataset
from bastion.models.loading import load_classifier
from bastion.models.sklearn_adapter import SklearnClassifier


class _WritesMarker:
    """Unpickling this creates ``path``: proof that a loader ran pickle code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Tiny fits and predictions: extra BLAS threads only cost time on a busy machine."""
    with threadpool_limits(1):
        yield


def _tiny_net(out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, out))


def _batch(n: int = 5) -> torch.Tensor:
    return torch.rand(n, 1, 2, 2, generator=torch.Generator().manual_seed(1))


# --- data: .npz -------------------------------------------------------------------------------


def test_npz_round_trip_keeps_arrays_names_and_limit(tmp_path):
    x = np.random.default_rng(0).random((6, 1, 2, 2))
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))

    data = load_dataset(str(tmp_path / "d.npz"))
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    np.testing.assert_allclose(data.x, x, rtol=1e-6)
    np.testing.assert_array_equal(data.y, y)
    assert data.class_names == ["a", "b", "c"] and data.bounds == (0.0, 1.0)
    assert "6 samples" in data.description
    assert len(load_dataset(str(tmp_path / "d.npz"), limit=4)) == 4


def test_npz_accepts_capital_x_and_labels_keys(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3)), labels=np.array([0, 1]))
    data = load_dataset(str(tmp_path / "d.npz"))
    assert data.input_shape == (3,) and data.class_names == ["0", "1"]


def test_npz_without_x_and_y_names_the_keys_found(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 3)), targets=np.array([0, 1]))
    with pytest.raises(InputError, match="arrays found: images, targets"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    x = np.empty(2, dtype=object)
    x[:] = [_WritesMarker(marker), _WritesMarker(marker)]
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(UnsafeFileError, match="object array"):
        load_dataset(str(tmp_path / "d.npz"))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.array([[0.1], [np.nan]]), np.array([0, 1]), "NaN or infinite"),
        (np.array([[0.1], [np.inf]]), np.array([0, 1]), "NaN or infinite"),
        (np.zeros((2, 1)), np.array([0, -1]), "labels must be >= 0"),
        (np.zeros((2, 1)), np.array([0.0, 1.5]), "labels must be integers"),
        (np.zeros((3, 1)), np.array([0, 1]), "3 samples but y has 2"),
        (np.zeros((0, 1)), np.zeros(0, dtype=int), "empty"),
        (np.zeros(2), np.array([0, 1]), r"shape \(N, \*input_shape\)"),
        (np.zeros((2, 1)), np.array([[0], [1]]), r"reshape\(-1\)"),
    ],
)
def test_npz_validation_errors(tmp_path, x, y, message):
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(InputError, match=message):
        load_dataset(str(tmp_path / "d.npz"))


@pytest.mark.parametrize("y", [np.array(["3", "7", "3", "7"]), np.array([b"3", b"7", b"3", b"7"])])
def test_npz_string_labels_are_refused_not_renumbered(tmp_path, y):
    # Numbering the names found in the file would make '3' class 0 and '7' class 1: a digits model then scores 0%.
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=y)
    with pytest.raises(InputError, match=r"labels must be integer class indices 0\.\.K-1; got strings such as "
                                         r"b?'3': convert them, e\.g\. y\.astype\(int\)"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_integer_labels_keep_their_numbers(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.array(["3", "7", "3", "7"]).astype(int))
    data = load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(data.y, [3, 7, 3, 7])
    assert data.class_names[3] == "3" and data.class_names[7] == "7"


def test_paths_are_accepted_and_other_specs_are_type_errors(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3)), y=np.array([0, 1]))
    assert len(load_dataset(tmp_path / "d.npz")) == 2
    with pytest.raises(TypeError, match=r"load_dataset takes a path \(a str or os.PathLike.*Dataset\(x=x, y=y\)"):
        load_dataset(np.zeros((2, 3)))


def test_explicit_bounds_must_contain_the_data(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([[0.0], [2.0]]), y=np.array([0, 1]))
    assert load_dataset(str(tmp_path / "d.npz")).bounds == (0.0, 2.0)
    with pytest.raises(InputError, match="outside the bounds"):
        load_dataset(str(tmp_path / "d.npz"), bounds=(0.0, 1.0))


# --- data: refusals and unknown specs ---------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".joblib"])
def test_pickle_data_files_are_refused_without_unpickling(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"data{suffix}"
    path.write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(UnsafeFileError, match="arbitrary code"):
        load_dataset(str(path))
    assert not marker.exists()


def test_missing_and_unknown_data_files(tmp_path):
    with pytest.raises(InputError, match=r"not found: .*nope\.npz"):
        load_dataset(str(tmp_path / "nope.npz"))
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=r"unknown dataset format.*\.npz.*\.csv"):
        load_dataset(str(tmp_path / "d.txt"))
    with pytest.raises(InputError, match="positive"):
        load_dataset("digits", limit=0)


# --- data: image folders ----------------------------------------------------------------------


def _write_image(path: Path, mode: str, size: tuple[int, int], value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 0, 255)
    Image.new(mode, size, colour).save(path)


def test_image_folder_of_greyscale_images(tmp_path):
    _write_image(tmp_path / "dog" / "1.png", "L", (3, 4), 255)
    _write_image(tmp_path / "cat" / "1.png", "L", (3, 4), 51)
    _write_image(tmp_path / "cat" / "2.png", "L", (3, 4), 0)
    (tmp_path / "cat" / "notes.txt").write_text("ignored")

    data = load_dataset(str(tmp_path))
    assert data.class_names == ["cat", "dog"]
    assert data.x.shape == (3, 1, 4, 3)
    np.testing.assert_array_equal(data.y, [0, 0, 1])
    np.testing.assert_allclose(data.x[:, 0, 0, 0], [0.2, 0.0, 1.0], atol=1e-6)


def test_image_folders_named_by_class_numbers_keep_their_numbers(tmp_path):
    for name in ("5", "7", "10"):
        _write_image(tmp_path / "some" / name / "1.png", "L", (2, 2), 0)
    data = load_dataset(str(tmp_path / "some"))
    np.testing.assert_array_equal(data.y, [10, 5, 7])  # folders in sorted order: "10", "5", "7"
    assert data.class_names == [str(label) for label in range(11)]
    for name in ("1", "01"):  # two names for one number: numbered in sorted order, as other names are
        _write_image(tmp_path / "twice" / name / "1.png", "L", (2, 2), 0)
    assert load_dataset(str(tmp_path / "twice")).class_names == ["01", "1"]


def test_image_folder_of_colour_images_is_channels_first(tmp_path):
    _write_image(tmp_path / "a" / "1.png", "RGB", (5, 2), 255)
    _write_image(tmp_path / "b" / "1.png", "RGB", (5, 2), 0)
    data = load_dataset(str(tmp_path))
    assert data.x.shape == (2, 3, 2, 5)
    np.testing.assert_allclose(data.x[0, :, 0, 0], [1.0, 0.0, 1.0])


def test_image_folder_with_a_different_size_names_the_file(tmp_path):
    _write_image(tmp_path / "a" / "1.png", "L", (4, 4), 0)
    _write_image(tmp_path / "b" / "odd.png", "L", (5, 4), 0)
    with pytest.raises(InputError, match=r"odd\.png has shape"):
        load_dataset(str(tmp_path))


def test_image_folder_with_a_corrupt_file_names_it(tmp_path):
    _write_image(tmp_path / "a" / "1.png", "L", (4, 4), 0)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"broken\.png: it is not an image format Pillow can decode") as caught:
        load_dataset(str(tmp_path))
    assert "BytesIO" not in str(caught.value)


def test_image_folder_without_class_folders(tmp_path):
    with pytest.raises(InputError, match="one sub-folder per class"):
        load_dataset(str(tmp_path))


# --- data: CSV --------------------------------------------------------------------------------


def test_csv_with_string_labels(tmp_path):
    (tmp_path / "d.csv").write_text("f1,kind,f2\n0.5,dog,3\n1.5,cat,-1\n\n2,dog,0\n")
    data = load_dataset(str(tmp_path / "d.csv"), label_column="kind")
    assert data.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(data.y, [1, 0, 1])
    np.testing.assert_allclose(data.x, [[0.5, 3.0], [1.5, -1.0], [2.0, 0.0]])
    assert data.bounds == (-1.0, 3.0)


def test_csv_with_text_labels_that_are_numbers_keeps_the_numbers(tmp_path):
    (tmp_path / "d.csv").write_text("f1,label\n0.5,7\n1.5,3\n")
    np.testing.assert_array_equal(load_dataset(tmp_path / "d.csv").y, [7, 3])


def test_csv_with_integer_labels(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n0,1,2\n1,0,0\n")
    data = load_dataset(str(tmp_path / "d.csv"))
    np.testing.assert_array_equal(data.y, [2, 0])
    assert data.class_names == ["0", "1", "2"]


def test_csv_errors_name_the_row_and_column(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n0,1,0\n0,oops,1\n")
    with pytest.raises(InputError, match=r"line 3 \(data row 2\), column 'b': 'oops'"):
        load_dataset(str(tmp_path / "d.csv"))
    with pytest.raises(InputError, match="no column 'target'; columns are a, b, label"):
        load_dataset(str(tmp_path / "d.csv"), label_column="target")


# --- data: built-ins --------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_in_range():
    test = load_dataset("digits")
    train = load_dataset("digits:train")
    assert (len(test), len(train)) == (540, 1257)
    assert test.x.shape[1:] == (1, 8, 8) and test.bounds == (0.0, 1.0)
    assert 0.0 <= test.x.min() and test.x.max() <= 1.0
    per_class = np.bincount(np.concatenate([test.y, train.y]))
    assert np.abs(np.bincount(test.y) - 0.3 * per_class).max() <= 1  # stratified
    np.testing.assert_array_equal(load_dataset("digits:test").x, test.x)
    with pytest.raises(InputError, match="unknown split 'val'"):
        load_dataset("digits:val")


def test_a_folder_named_like_a_builtin_is_never_silently_shadowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_image(tmp_path / "digits" / "0" / "a.png", "L", (8, 8), 0)
    _write_image(tmp_path / "digits" / "1" / "b.png", "L", (8, 8), 255)
    with pytest.raises(InputError, match=r"'digits' names both the built-in dataset digits and the folder digits "
                                         r"here; pass ./digits for the folder, or pass digits:test"):
        load_dataset("digits")
    assert len(load_dataset("./digits")) == len(load_dataset(Path("digits"))) == 2
    assert len(load_dataset("digits:test")) == 540


def _write_idx(path: Path, array: np.ndarray, magic: bytes | None = None) -> None:
    header = magic or bytes([0, 0, 0x08, array.ndim])
    dims = np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + dims + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_files(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 9]))
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))

    data = load_dataset("fashion-mnist")
    assert data.x.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(data.x[:, 0], images / 255.0, atol=1e-6)
    np.testing.assert_array_equal(data.y, [0, 1, 2, 3, 9])
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist:train")


def test_fashion_mnist_rejects_a_bad_magic_number(tmp_path, monkeypatch):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((1, 28, 28)), b"\x00\x00\x0d\x03")
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(1))
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(InputError, match="magic number 00000d03"):
        load_dataset("fashion-mnist:test")


# --- models: pickles refused ------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_checkpoint_is_refused(tmp_path, legacy):
    path = tmp_path / "model.pt"
    torch.save(_tiny_net(), path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafeFileError, match=r"safetensors\.torch\.save_file"):
        load_classifier(str(path), input_shape=(1, 2, 2))


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".joblib"])
def test_pickle_model_files_are_refused_without_unpickling(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(UnsafeFileError, match="--weights model.safetensors"):
        load_classifier(str(path))
    assert not marker.exists()


# --- models: TorchScript ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, legacy export
def test_torchscript_is_loaded_as_a_white_box(tmp_path):
    net = _tiny_net()
    path = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), path)

    loaded = load_classifier(str(path), input_shape=(1, 2, 2))
    model = loaded.classifier
    assert (loaded.kind, model.kind, model.access) == ("torchscript", "torchscript", "white")
    assert model.num_classes == 3  # found by a forward pass
    assert loaded.sha256 == file_digest(str(path))
    x = _batch()
    torch.testing.assert_close(model.logits(x), net(x))
    with pytest.raises(InputError, match="--input-shape"):
        load_classifier(str(path))
    with pytest.raises(InputError, match=r"a forward pass on zeros of shape \(1, 7\) failed \(RuntimeError: .*\); "
                                         "check --input-shape") as wrong:
        load_classifier(str(path), input_shape=(7,), num_classes=3)  # given the classes, it was not probed before
    assert "\n" not in str(wrong.value)  # TorchScript's error carries the script's traceback: only its end is shown
    with pytest.raises(InputError, match="returns 3 logits per sample but num_classes is 5; check --num-classes"):
        load_classifier(str(path), input_shape=(1, 2, 2), num_classes=5)


class _FailingForward(nn.Module):
    input_shape, num_classes = (1, 2, 2), 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("forward exploded")


def test_a_factory_whose_forward_fails_is_refused_at_load(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "failing_forward", _FailingForward, raising=False)
    with pytest.raises(InputError, match=r"failed \(RuntimeError: forward exploded\); check --input-shape, or the "
                                         "model's forward"):
        load_classifier(f"{__name__}:failing_forward")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit
def test_a_model_path_is_accepted_and_a_module_is_told_how_to_be_wrapped(tmp_path):
    torch.jit.save(torch.jit.script(_tiny_net()), tmp_path / "net.ts")
    assert load_classifier(tmp_path / "net.ts", input_shape=(1, 2, 2)).classifier.num_classes == 3
    with pytest.raises(TypeError, match=r"spec is a str or os.PathLike .*got torch.nn.modules.container.Sequential"
                                        r".*LoadedModel\(TorchClassifier\(module, input_shape, num_classes\)"):
        load_classifier(_tiny_net())


# --- models: ONNX -----------------------------------------------------------------------------


def _export_onnx(net: nn.Module, path: Path, *, dynamic: bool = True) -> None:
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic else None
    torch.onnx.export(
        net, (torch.zeros(1, 1, 2, 2),), str(path), dynamo=False,
        input_names=["x"], output_names=["y"], dynamic_axes=axes,
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, legacy export
def test_onnx_predictions_equal_torch(tmp_path):
    net = _tiny_net().eval()
    _export_onnx(net, tmp_path / "net.onnx")

    loaded = load_classifier(str(tmp_path / "net.onnx"))
    model = loaded.classifier
    assert (loaded.kind, model.access, model.input_shape, model.num_classes) == (
        "onnx", "scores", (1, 2, 2), 3,
    )  # fmt: skip
    assert loaded.sha256 == file_digest(str(tmp_path / "net.onnx"))
    x = _batch(7)
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(model.logits(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.predict(x), expected.argmax(1))
    assert model.logits(x.double()).dtype == torch.float64


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, legacy export
def test_onnx_softmax_output_becomes_log_probabilities(tmp_path):
    net = nn.Sequential(_tiny_net(), nn.Softmax(dim=1)).eval()
    _export_onnx(net, tmp_path / "net.onnx", dynamic=False)  # fixed batch of 1: fed in chunks

    model = load_classifier(str(tmp_path / "net.onnx")).classifier
    assert model.score_kind == "probabilities"
    x = _batch(5)
    with torch.no_grad():
        expected = torch.log(net(x))
    torch.testing.assert_close(model.logits(x), expected, atol=1e-5, rtol=1e-5)


def test_onnx_unknown_input_dims_need_input_shape(tmp_path):
    from onnx import TensorProto, helper, numpy_helper, save

    weight = numpy_helper.from_array(np.eye(4, 3, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["scores"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "d"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", "c"])],
        [weight],
    )
    opsets = [helper.make_opsetid("", 13)]
    save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / "m.onnx")

    with pytest.raises(InputError, match="pass input_shape"):
        load_classifier(str(tmp_path / "m.onnx"))
    model = load_classifier(str(tmp_path / "m.onnx"), input_shape=(4,)).classifier
    assert model.num_classes == 3  # found by running zeros
    x = torch.eye(4)[:3]
    torch.testing.assert_close(model.predict(x), torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="torch models only"):
        load_classifier(str(tmp_path / "m.onnx"), input_shape=(4,), mean=[0.5])


def test_onnx_label_output_gives_label_access(tmp_path):
    from onnx import TensorProto, helper, numpy_helper, save

    weight = numpy_helper.from_array(np.eye(4, 3, dtype=np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["n"])],
        [weight],
    )
    opsets = [helper.make_opsetid("", 13)]
    save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / "m.onnx")

    with pytest.raises(InputError, match="outputs labels only; pass num_classes"):
        load_classifier(str(tmp_path / "m.onnx"))
    model = load_classifier(str(tmp_path / "m.onnx"), num_classes=3).classifier
    assert model.access == "labels"
    x = torch.eye(4)[[2, 0, 1]]
    torch.testing.assert_close(model.logits(x), torch.eye(3)[[2, 0, 1]])


# --- models: scikit-learn ---------------------------------------------------------------------


def test_skops_round_trip_of_logistic_regression(tmp_path):
    import skops.io
    from sklearn.linear_model import LogisticRegression

    data = load_dataset("digits:train")
    flat = data.x.reshape(len(data.x), -1)
    estimator = LogisticRegression(max_iter=300).fit(flat, data.y)
    skops.io.dump(estimator, tmp_path / "lr.skops")

    loaded = load_classifier(str(tmp_path / "lr.skops"), input_shape=(1, 8, 8))
    model = loaded.classifier
    assert (loaded.kind, model.access, model.num_classes) == ("sklearn", "scores", 10)
    assert loaded.sha256 == file_digest(str(tmp_path / "lr.skops"))
    x = torch.from_numpy(load_dataset("digits").x)
    np.testing.assert_array_equal(model.predict(x).numpy(), estimator.predict(x.reshape(-1, 64)))
    probabilities = estimator.predict_proba(x.reshape(-1, 64).numpy())
    np.testing.assert_allclose(model.logits(x).exp().numpy(), probabilities, atol=1e-5)
    assert load_classifier(str(tmp_path / "lr.skops")).classifier.input_shape == (64,)


def test_skops_with_foreign_types_is_refused_by_name(tmp_path, monkeypatch):
    import skops.io

    (tmp_path / "foreign_estimators.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from sklearn.base import BaseEstimator, ClassifierMixin

            class Mine(ClassifierMixin, BaseEstimator):
                def fit(self, X, y):
                    self.classes_ = np.unique(y)
                    return self

                def predict(self, X):
                    return np.zeros(len(X), dtype=int)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from foreign_estimators import Mine

    skops.io.dump(Mine().fit(np.zeros((2, 3)), [0, 1]), tmp_path / "m.skops")
    with pytest.raises(UnsafeFileError, match=r"foreign_estimators\.Mine"):
        load_classifier(str(tmp_path / "m.skops"))


def test_sklearn_adapter_without_probabilities_gives_one_hot_labels():
    from sklearn.svm import LinearSVC

    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 3)
    y = np.array([0, 1, 2, 2] * 3)
    model = SklearnClassifier(LinearSVC().fit(x, y), input_shape=(2,))
    assert model.access == "labels" and model.kind == "sklearn"
    logits = model.logits(torch.from_numpy(x).float())
    assert set(logits.unique().tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(logits.argmax(1).numpy(), model.estimator.predict(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, legacy export
def test_predict_and_logits_take_numpy_arrays_and_refuse_other_inputs(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from bastion.models.torch_adapter import TorchClassifier

    x = _batch(6)
    y = np.array([0, 1, 2] * 2)
    _export_onnx(_tiny_net().eval(), tmp_path / "net.onnx")
    models = [TorchClassifier(_tiny_net(), (1, 2, 2), 3), load_classifier(str(tmp_path / "net.onnx")).classifier,
              SklearnClassifier(LogisticRegression().fit(x.flatten(1).numpy(), y), input_shape=(1, 2, 2))]
    for model in models:
        for array in (x.numpy(), x.double().numpy(), x.numpy()[::-1]):  # float32, float64, negative strides
            torch.testing.assert_close(model.predict(array), model.predict(torch.from_numpy(array.copy()).float()))
            assert model.logits(array).dtype == torch.float32
        with pytest.raises(TypeError, match=r"predict takes inputs \(N, \*input_shape\) as a torch.Tensor or a "
                                            r"NumPy array of numbers, got builtins.list"):
            model.predict(x.tolist())
        with pytest.raises(TypeError, match="logits takes .* got a NumPy array of dtype <U1"):
            model.logits(np.array([["a"]]))
    tensor = x.requires_grad_()
    assert models[0].logits(tensor).requires_grad  # a tensor is used as it is


def test_sklearn_adapter_requires_classes_zero_to_c_minus_one():
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array(["no", "yes"]))
    with pytest.raises(InputError, match="LabelEncoder"):
        SklearnClassifier(estimator, input_shape=(1,))


# --- models: factory + safetensors ------------------------------------------------------------

_FACTORIES = """
from torch import nn

def _net(out):
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, out))

def tagged():
    net = _net(3)
    net.input_shape = (1, 2, 2)
    net.num_classes = 3
    return net

def bare():
    return _net(3)

def broken():
    raise RuntimeError("boom")

def not_a_model():
    return 42

def ready():
    from bastion.models.torch_adapter import TorchClassifier

    return TorchClassifier(_net(3), (1, 2, 2), 3)
"""


@pytest.fixture
def factories(tmp_path, monkeypatch) -> str:
    """The name of a freshly written module of model factories, importable for this test."""
    name = f"factories_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(_FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_factory_with_safetensors_weights_round_trip(tmp_path, factories):
    trained = _tiny_net(seed=7)
    save_file(trained.state_dict(), tmp_path / "w.safetensors")

    loaded = load_classifier(f"{factories}:tagged", weights=str(tmp_path / "w.safetensors"))
    assert (loaded.kind, loaded.classifier.access) == ("torch", "white")
    assert loaded.sha256 == file_digest(str(tmp_path / "w.safetensors"))
    x = _batch()
    torch.testing.assert_close(loaded.classifier.logits(x), trained(x))


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (_tiny_net(out=5).state_dict(), r"shape mismatches: 3\.weight \(file \(5, 8\)"),
        ({**_tiny_net().state_dict(), "extra": torch.zeros(1)}, "unexpected keys: extra"),
        ({"1.weight": torch.zeros(8, 4)}, r"missing keys: 1\.bias, 3\.bias, 3\.weight"),
    ],
)
def test_mismatched_weights_are_a_clear_error(tmp_path, factories, state, message):
    save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(InputError, match=message):
        load_classifier(f"{factories}:tagged", weights=str(tmp_path / "w.safetensors"))


def test_factory_shapes_come_from_attributes_or_arguments(factories):
    with pytest.raises(InputError, match="--input-shape"):
        load_classifier(f"{factories}:bare")
    with pytest.raises(InputError, match="--num-classes"):
        load_classifier(f"{factories}:bare", input_shape=(1, 2, 2))
    loaded = load_classifier(f"{factories}:bare", input_shape=(1, 2, 2), num_classes=3)
    assert loaded.sha256 is None and loaded.classifier.num_classes == 3
    with pytest.raises(InputError, match="declares num_classes=3 but num_classes=4"):
        load_classifier(f"{factories}:tagged", num_classes=4)


@pytest.mark.parametrize(
    ("attribute", "message"),
    [("broken", "raised RuntimeError: boom"), ("not_a_model", "returned int"),
     ("missing", "no callable 'missing'")],
)  # fmt: skip
def test_bad_factories_are_clear_errors(factories, attribute, message):
    with pytest.raises(InputError, match=message):
        load_classifier(f"{factories}:{attribute}")


def test_factory_may_return_a_ready_classifier(tmp_path, factories):
    loaded = load_classifier(f"{factories}:ready", input_shape=(1, 2, 2))
    assert (loaded.kind, loaded.sha256, loaded.classifier.num_classes) == ("torch", None, 3)
    save_file(_tiny_net().state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(InputError, match="ready Classifier"):
        load_classifier(f"{factories}:ready", weights=str(tmp_path / "w.safetensors"))


def test_unimportable_factory_module():
    with pytest.raises(InputError, match="PYTHONPATH"):
        load_classifier("no_such_module_here:net")


def test_weights_must_be_safetensors(tmp_path, factories):
    torch.save(_tiny_net().state_dict(), tmp_path / "w.pt")
    with pytest.raises(UnsafeFileError, match="must be a .safetensors file"):
        load_classifier(f"{factories}:tagged", weights=str(tmp_path / "w.pt"))


# --- models: unknown specs --------------------------------------------------------------------


def test_missing_and_unknown_model_files(tmp_path):
    with pytest.raises(InputError, match=r"model file not found: .*gone\.onnx"):
        load_classifier(str(tmp_path / "gone.onnx"))
    (tmp_path / "m.h5").write_bytes(b"\x89HDF")
    with pytest.raises(InputError, match=r"unknown model format.*\.onnx.*\.skops"):
        load_classifier(str(tmp_path / "m.h5"))
    save_file({"w": torch.zeros(1)}, tmp_path / "w.safetensors")
    with pytest.raises(InputError, match="--model pkg.module:factory --weights"):
        load_classifier(str(tmp_path / "w.safetensors"))


@pytest.mark.parametrize(("option", "values", "message"), [
    ("std", [float("nan")], "std must be finite numbers, got nan"),
    ("mean", [0.1, float("inf")], "mean must be finite numbers, got 0.1,inf"),
    ("mean", [0.1, 0.2], r"mean has 2 values; give 1 value or one per channel \(1\)"),
])
def test_the_adapter_refuses_per_channel_values_that_cannot_normalise(option, values, message):
    from bastion.models.torch_adapter import TorchClassifier

    with pytest.raises(InputError, match=message):
        TorchClassifier(_tiny_net(), (1, 2, 2), 3, **{option: values})
