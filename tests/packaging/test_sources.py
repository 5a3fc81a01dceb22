"""modelreg.packaging.sources: loading a source model, its inputs, running it, the extras."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")
torch = pytest.importorskip("torch")
joblib = pytest.importorskip("joblib")

from sklearn.linear_model import Ridge  # noqa: E402

from modelreg.errors import (  # noqa: E402
    EXIT_POLICY,
    EXIT_USAGE,
    ModelError,
    PolicyDenied,
    UsageError,
)
from modelreg.packaging.sources import (  # noqa: E402
    SourceModel,
    input_names,
    load_source,
    order_inputs,
    require,
    run_torch,
)


def save_sklearn(directory: Path, model: Any, name: str = "model.pkl") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / name)
    return directory


def sklearn_source() -> SourceModel:
    return SourceModel("sklearn", "pickle", Path("model.pkl"), Ridge(), 2)


def torch_source(module: Any) -> SourceModel:
    return SourceModel("torch", "torch_save", Path("model.pt"), module, None)


class Pair(torch.nn.Module):
    def forward(self, features: Any, ids: Any, scale: float = 1.0) -> Any:
        return features * scale, ids


class Star(torch.nn.Module):
    def forward(self, *args: Any) -> Any:
        return args


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x))


@pytest.fixture(scope="module")
def net() -> Any:
    torch.manual_seed(0)
    return Net().eval()


# --- loading ----------------------------------------------------------------------------

def test_state_dict_is_not_a_model(tmp_path: Path, net: Any) -> None:
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelError, match="state dict"):
        load_source(tmp_path / "weights.pt", allow_pickle=True)


@pytest.mark.parametrize("name", ["model.pkl", "model.joblib"])
def test_pickle_refused_without_permission(tmp_path: Path, name: str) -> None:
    save_sklearn(tmp_path, Ridge().fit([[0.0], [1.0]], [0.0, 1.0]), name)
    with pytest.raises(PolicyDenied) as err:
        load_source(tmp_path, allow_pickle=False)
    message = str(err.value)
    assert err.value.exit_code == EXIT_POLICY
    assert "arbitrary code" in message and "allow_pickle = true" in message


def test_missing_and_ambiguous_model_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("no model here\n")
    with pytest.raises(UsageError, match="no model file") as err:
        load_source(tmp_path, allow_pickle=True)
    assert err.value.exit_code == EXIT_USAGE and "README.md" in str(err.value)
    save_sklearn(tmp_path, Ridge().fit([[0.0], [1.0]], [0.0, 1.0]), "a.pkl")
    save_sklearn(tmp_path / "sub", Ridge().fit([[0.0], [1.0]], [0.0, 1.0]), "b.joblib")
    with pytest.raises(UsageError, match="several model files") as err:
        load_source(tmp_path, allow_pickle=True)
    assert "a.pkl" in str(err.value) and "b.joblib" in str(err.value)
    with pytest.raises(UsageError, match="no such directory"):
        load_source(tmp_path / "absent", allow_pickle=True)


def test_not_an_estimator(tmp_path: Path) -> None:
    joblib.dump({"weights": [1, 2]}, tmp_path / "model.pkl")
    with pytest.raises(ModelError, match="not a scikit-learn estimator"):
        load_source(tmp_path, allow_pickle=True)


def test_a_directory_holding_onnx_says_so(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(UsageError, match="already holds ONNX"):
        load_source(tmp_path, allow_pickle=True)


# --- inputs, running, extras -----------------------------------------------------------

def test_input_names() -> None:
    assert input_names(sklearn_source()) == ["X"]
    assert input_names(torch_source(Pair())) == ["features", "ids"]  # defaults left out
    assert input_names(torch_source(Star())) == []


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelError, match=r"pip install 'modelreg\[torch\]'"):
        require("torch", "torch", "loading a PyTorch model")


def test_order_inputs_follows_the_forward() -> None:
    sample = {"ids": np.zeros(1), "features": np.ones(1)}
    assert list(order_inputs(torch_source(Pair()), sample)) == ["features", "ids"]
    assert list(order_inputs(torch_source(Star()), sample)) == ["ids", "features"]


def test_run_torch_names_dict_outputs() -> None:
    class Heads(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return {"double": x * 2, "sum": x.sum(dim=1)}

    source = SourceModel("torch", "torch_save", Path("m.pt"), Heads(), None)
    out = run_torch(source, {"x": np.ones((2, 3), dtype=np.float32)})
    assert [k for k, _ in out] == ["double", "sum"]
    np.testing.assert_array_equal(out[1][1], [3.0, 3.0])
