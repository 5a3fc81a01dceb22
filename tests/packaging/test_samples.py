"""modelreg.packaging.samples: the inputs parity is proven on, read from a file or generated."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")
torch = pytest.importorskip("torch")

from sklearn.linear_model import Ridge  # noqa: E402

from modelreg.errors import UsageError  # noqa: E402
from modelreg.packaging.samples import column_order, sample_inputs  # noqa: E402
from modelreg.packaging.sources import SourceModel  # noqa: E402
from modelreg.signatures.model import parse_signature  # noqa: E402


def sklearn_source(n_features: int = 2, names: list[str] | None = None) -> SourceModel:
    rng = np.random.default_rng(0)
    model = Ridge().fit(rng.standard_normal((10, n_features)), rng.standard_normal(10))
    if names is not None:
        model.feature_names_in_ = np.array(names, dtype=object)  # as fitting a DataFrame does
    return SourceModel("sklearn", "pickle", Path("model.pkl"), model, n_features)


class Pair(torch.nn.Module):
    def forward(self, features: Any, ids: Any, scale: float = 1.0) -> Any:
        return features * scale, ids


class Star(torch.nn.Module):
    def forward(self, *args: Any) -> Any:
        return args


def torch_source(module: Any) -> SourceModel:
    return SourceModel("torch", "torch_save", Path("model.pt"), module, None)


def read(source: SourceModel, data: bytes | str, name: str | None = None,
         signature: Any = None) -> dict[str, Any]:
    raw = data.encode() if isinstance(data, str) else data
    return sample_inputs(source, sample=raw, sample_name=name, signature=signature)


def npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy(array: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# --- column order -------------------------------------------------------------


def test_column_order() -> None:
    columns = parse_signature({"inputs": {"b": "float", "a": "float"}})
    assert column_order(sklearn_source(names=["a", "b"]), columns) == ["a", "b"]
    assert column_order(sklearn_source(), columns) == ["b", "a"]
    assert column_order(sklearn_source(), None) is None


# --- sample files ---------------------------------------------------------------------

def test_csv_and_json_shapes_for_sklearn() -> None:
    source = sklearn_source(names=["a", "b"])
    want = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    samples = [
        ("b,a\n2,1\n4,3\n", "s.csv"),  # reordered by feature_names_in_
        (json.dumps([{"b": 2, "a": 1}, {"a": 3, "b": 4}]), "s.json"),
        (json.dumps({"a": [1, 3], "b": [2, 4]}), None),
        (json.dumps([[1, 2], [3, 4]]), None),
        (json.dumps({"X": [[1, 2], [3, 4]]}), None),
        (npy(want.astype(np.float64)), "s.npy"),
        (npz(X=want), "s.npz"),
    ]
    for data, name in samples:
        got = read(source, data, name)
        assert list(got) == ["X"]
        assert got["X"].dtype == np.float64  # the values as given: scikit-learn's precision
        np.testing.assert_array_equal(got["X"], want)


def test_one_feature_vector_becomes_a_column() -> None:
    got = read(sklearn_source(1), npy(np.arange(3.0)), "s.npy")["X"]
    assert got.shape == (3, 1)


@pytest.mark.parametrize(("data", "message"), [
    ("a,b\n1,x\n", "column 'b', row 1: 'x' is not a number"),
    ("a\n1\n", "lacks column"),
    ("[[1, 2, 3]]", "3 features"),
    ("{not json", "not valid JSON"),
])
def test_bad_sklearn_samples(data: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        read(sklearn_source(names=["a", "b"]), data)


def test_torch_samples_by_input_name() -> None:
    source = torch_source(Pair())
    got = read(source, npz(ids=np.arange(4), features=np.ones((4, 3))), "s.npz")
    assert list(got) == ["features", "ids"]  # the forward's order
    assert got["features"].dtype == np.float32 and got["ids"].dtype == np.int64
    got = read(source, json.dumps({"features": [[1.5, 2]], "ids": [[1, 2]]}))
    assert got["features"].dtype == np.float32 and got["ids"].dtype == np.float32
    sig = parse_signature({"inputs": {"tensors": [
        {"name": "features", "dtype": "float32", "shape": [-1, 2]},
        {"name": "ids", "dtype": "int64", "shape": [-1, 2]}]}})
    got = read(source, json.dumps({"features": [[1.5, 2]], "ids": [[1, 2]]}), signature=sig)
    assert got["ids"].dtype == np.int64  # the signature names the dtype
    with pytest.raises(UsageError, match="name the .npz arrays"):
        read(source, npz(a=np.ones(2), b=np.ones(2)), "s.npz")
    with pytest.raises(UsageError, match="a column sample feeds one input"):
        read(source, "a,b\n1,2\n", "s.csv")


def test_star_args_take_the_sample_as_given() -> None:
    got = read(torch_source(Star()), npz(p=np.ones(2), q=np.zeros(3)), "s.npz")
    assert list(got) == ["p", "q"]
    got = read(torch_source(Star()), npy(np.ones((2, 2))), "s.npy")
    assert list(got) == ["input_0"]


# --- generated inputs -----------------------------------------------------------------

def test_generated_from_n_features_is_seeded() -> None:
    source = sklearn_source(3)
    first = sample_inputs(source, sample=None, sample_name=None, signature=None, n=6)
    again = sample_inputs(source, sample=None, sample_name=None, signature=None, n=6)
    other = sample_inputs(source, sample=None, sample_name=None, signature=None, n=6, seed=1)
    assert first["X"].shape == (6, 3) and first["X"].dtype == np.float64
    np.testing.assert_array_equal(first["X"], again["X"])
    assert not np.array_equal(first["X"], other["X"])


def test_generated_from_a_column_signature() -> None:
    sig = parse_signature({"inputs": {"a": "float", "b": "int"}})
    got = sample_inputs(sklearn_source(2), sample=None, sample_name=None, signature=sig, n=4)
    assert got["X"].shape == (4, 2)
    with pytest.raises(UsageError, match="fitted on 3"):
        sample_inputs(sklearn_source(3), sample=None, sample_name=None, signature=sig)


def test_generated_from_a_tensor_signature() -> None:
    sig = parse_signature({"inputs": {"tensors": [
        {"name": "f", "dtype": "float64", "shape": ["batch", 2, -1]},
        {"name": "i", "dtype": "int64", "shape": [-1, 2]}]}})
    got = sample_inputs(torch_source(Pair()), sample=None, sample_name=None, signature=sig,
                        n=5)
    assert list(got) == ["features", "ids"]  # bound by position: the names differ
    assert got["features"].shape == (5, 2, 5) and got["features"].dtype == np.float64
    assert got["ids"].dtype == np.int64 and got["ids"].min() >= 0
    star = sample_inputs(torch_source(Star()), sample=None, sample_name=None, signature=sig)
    assert list(star) == ["input_0", "input_1"]


@pytest.mark.parametrize(("sig", "message"), [
    ({"x": {"dtype": "string", "shape": [-1]}, "y": {"dtype": "float", "shape": [1]}},
     "cannot generate string"),
    ({"x": {"dtype": "float"}, "y": {"dtype": "float", "shape": [1]}}, "no known shape"),
    ({"x": {"dtype": "float", "shape": [1]}}, "do not match"),
])
def test_signatures_that_cannot_generate(sig: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        sample_inputs(torch_source(Pair()), sample=None, sample_name=None,
                      signature=parse_signature({"inputs": sig}))


def test_nothing_to_generate_from_asks_for_a_sample() -> None:
    with pytest.raises(UsageError, match="--sample"):
        sample_inputs(torch_source(Pair()), sample=None, sample_name=None, signature=None)


