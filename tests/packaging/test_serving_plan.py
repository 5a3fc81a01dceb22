"""`serve` in one process: its fast paths take only what the signature check passes (and
build the same arrays), and its follower keeps the store it opened.

A request's :class:`~modelreg.packaging.serving.Plan` reads a payload of float columns or
number tensors without the per-cell checker; on anything else it answers None, and the
request takes the checked path (:func:`~modelreg.packaging.runtime.payload_inputs`), which
words the refusals. Here both read the same generated payloads: where the plan reads one,
the checked path must accept it and build arrays equal in dtype, shape and every value.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelreg.packaging.runtime import payload_inputs
from modelreg.packaging.serving import Plan, mlflow_payload, v2_request
from modelreg.signatures.model import Signature, parse_signature

np = pytest.importorskip("numpy")
# Numbers too large for float32 become infinity on both paths, and numpy says so.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

COLUMNS = ["age", "bmi", "bp"]


def bound(dtype: str) -> Signature:
    """Float columns bound to one [N, 3] tensor, as `modelreg export` records them."""
    return parse_signature({
        "inputs": {"X": {"dtype": dtype, "shape": [-1, 3]}},
        "extra": {"binding": {"input": "X", "dtype": dtype, "columns": [
            {"name": n, "type": "float64", "required": True, "nullable": False}
            for n in COLUMNS]}}})


TENSORS = parse_signature({"inputs": {
    "x": {"dtype": "float32", "shape": [-1, 2]},
    "k": {"dtype": "int8", "shape": [-1]},
    "on": {"dtype": "bool", "shape": [-1, 1]}}})

# Cells of every JSON kind, numbers that float32 cannot hold, integers that no float holds
# exactly and one that overflows float64: where either path may stumble.
cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(width=32),
    st.integers(-2**70, 2**70), st.integers(-200, 200), st.just(10**400), st.booleans(),
    st.none(), st.sampled_from(["1.5", "", "old"]), st.just([]), st.just({}))
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10, 10),
                    st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def spoiled(draw: Any, good: Any, bad: Any) -> Any:
    """Values drawn from ``good``, each replaced by one of ``bad`` now and then."""
    return draw(st.one_of(good, good, good, bad))


@st.composite
def table(draw: Any) -> tuple[list[Any], list[Any]]:
    """Column names and rows: mostly right, with one thing wrong now and then."""
    columns: list[Any] = list(draw(st.permutations(COLUMNS)))
    wrong = draw(st.sampled_from(["", "", "", "names", "row", "cell", "length"]))
    if wrong == "names":
        columns = draw(st.lists(st.sampled_from([*COLUMNS, "s6", 3]), max_size=4))
    cell = spoiled(numbers, cells) if wrong == "cell" else numbers
    width = len(columns)
    data: list[Any] = draw(st.lists(st.lists(cell, min_size=width, max_size=width),
                                    min_size=0 if wrong else 1, max_size=3))
    if wrong == "row":
        data.append(draw(cells))
    elif wrong == "length" and data:
        data[-1] = data[-1][:-1] or [*data[-1], 1.0]
    return columns, data


@st.composite
def mlflow_bodies(draw: Any) -> bytes:
    columns, data = draw(table())
    records = [dict(zip(columns, r, strict=False)) if isinstance(r, list) else r
               for r in data]
    split = {"columns": columns, "data": data}
    doc = draw(st.sampled_from([
        {"dataframe_split": split}, {"dataframe_split": split},
        {"dataframe_split": split, "params": {"x": 1}},
        {"dataframe_split": split, "instances": records}, {"dataframe_split": data},
        {"dataframe_records": records}, {"dataframe_records": records, "params": {}},
        {"dataframe_records": records, "dataframe_split": {}},
        {"instances": records}, {"instances": data}, {"inputs": records}, records,
    ]))
    text = json.dumps(doc)
    return draw(st.sampled_from([text.encode(), text.encode(), text.encode(),
                                 b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16"),
                                 text.encode()[:-1]]))


def checked(sig: Signature, body: bytes, fmt: str | None = None) -> Any:
    """What the checked path builds, or None where it refuses (or fails in any way)."""
    try:
        if fmt is None:
            body, fmt = mlflow_payload(body, "application/json")
        return payload_inputs(sig, body, fmt=fmt)[0]
    except Exception:  # noqa: BLE001 - any refusal or failure means "not accepted"
        return None


def same(fast: dict[str, Any], slow: dict[str, Any] | None) -> None:
    assert slow is not None, "the plan read a payload the checked path does not accept"
    assert fast.keys() == slow.keys()
    for name, array in fast.items():
        assert array.dtype == slow[name].dtype
        assert array.shape == slow[name].shape
        assert array.flags.c_contiguous
        np.testing.assert_array_equal(array, slow[name])


def test_a_malformed_binding_is_a_usage_error_not_a_crash() -> None:
    # A binding is read from the signature's `extra`; a dtype numpy does not know, or a
    # binding without its columns, is the signature's fault (exit 2), never exit 70.
    from modelreg.errors import UsageError

    for binding in ({"input": "X", "dtype": "nonsense", "columns": []},
                    {"input": "X", "dtype": "float32"}, {"dtype": "float32", "columns": [1]}):
        sig = parse_signature({"inputs": {"X": {"dtype": "float32", "shape": [-1, 3]}},
                               "extra": {"binding": binding}})
        with pytest.raises(UsageError, match="extra.binding"):
            Plan(sig)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_number_beyond_every_float_is_a_refusal_not_a_failure(dtype: str) -> None:
    # JSON takes any integer where a float is declared; 10**400 fits no float, and the
    # checked path says so as it says any refusal (serve: 400, predict: exit 7), not with an
    # OverflowError (serve: a bare 500).
    from modelreg.errors import VerdictNo

    body = json.dumps({"dataframe_split": {"columns": COLUMNS,
                                           "data": [[1, 10**400, 2]]}}).encode()
    data, fmt = mlflow_payload(body, "application/json")
    with pytest.raises(VerdictNo, match="too large for the model's input type"):
        payload_inputs(bound(dtype), data, fmt=fmt)
    v2 = json.dumps({"inputs": [
        {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 10**400]},
        {"name": "k", "shape": [1], "datatype": "INT8", "data": [1]},
        {"name": "on", "shape": [1, 1], "datatype": "BOOL", "data": [True]}]}).encode()
    with pytest.raises(VerdictNo, match="too large"):
        payload_inputs(TENSORS, v2_request(TENSORS, v2, None).payload(), fmt="json")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=mlflow_bodies())
def test_invocations_plan_matches_the_checked_path(dtype: str, body: bytes) -> None:
    sig = bound(dtype)
    fast = Plan(sig).mlflow_inputs(body, "application/json")
    if fast is not None:
        same(fast, checked(sig, body))


# Each tensor of TENSORS: its V2 shape for n rows, and good and bad cells.
KINDS = {"x": (lambda n: [n, 2], numbers, st.one_of(cells, st.booleans())),
         "k": (lambda n: [n], st.integers(-128, 127),
               st.one_of(cells, st.sampled_from([128, -129, 2.0]))),
         "on": (lambda n: [n, 1], st.booleans(), st.one_of(cells, st.sampled_from([0, 1])))}


@st.composite
def v2_bodies(draw: Any, sig: Signature) -> bytes:
    """An infer request for ``sig``: mostly right, with one thing wrong now and then."""
    n = draw(st.integers(1, 3))
    names: list[str] = list(draw(st.permutations(sig.facing_inputs().names())))
    wrong = draw(st.sampled_from(["", "", "", "names", "cell", "shape", "empty"]))
    if wrong == "names":
        names = draw(st.lists(st.sampled_from([*names, "params"]), max_size=4, unique=True))
    inputs = []
    for name in names:
        shape, good, bad = KINDS.get(name, (lambda n: draw(st.sampled_from([[n], [n, 1]])),
                                            numbers, cells))
        dims = shape(n)
        if wrong == "shape":
            dims = draw(st.sampled_from([dims, [*dims, 1], dims[:1], [n, 3], []]))
        elif wrong == "empty":
            dims = [0, *dims[1:]]
        count = int(np.prod(dims))
        cell = spoiled(good, bad) if wrong == "cell" else good
        inputs.append({"name": name, "shape": dims, "datatype": "FP64",
                       "data": draw(st.lists(cell, min_size=count, max_size=count))})
    return json.dumps({"inputs": inputs}).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_v2_plan_matches_the_checked_path(data: Any) -> None:
    for sig in (bound("float32"), TENSORS):
        body = data.draw(v2_bodies(sig))
        try:
            request = v2_request(sig, body, None)
        except Exception:  # noqa: BLE001 - refused before either path reads it
            continue
        fast = Plan(sig).v2_inputs(request)
        if fast is not None:
            same(fast, checked(sig, request.payload(), "json"))


def test_the_plan_reads_every_ordinary_payload() -> None:
    sig = bound("float32")
    plan = Plan(sig)
    data = [[0.1, 2, -3.5], [4, 5, 6]]
    records = [dict(zip(COLUMNS, r, strict=True)) for r in data]
    bodies = [{"dataframe_split": {"columns": COLUMNS, "data": data}},
              {"dataframe_split": {"columns": COLUMNS[::-1], "data": [r[::-1] for r in data]}},
              {"dataframe_split": {"columns": COLUMNS, "data": data}, "params": {}},
              {"dataframe_records": records}, {"instances": records}]
    for doc in bodies:
        body = json.dumps(doc).encode()
        fast = plan.mlflow_inputs(body, "application/json; charset=utf-8")
        assert fast is not None, doc
        same(fast, checked(sig, body))
        np.testing.assert_array_equal(fast["X"], np.asarray(data, dtype="float32"))
    v2 = {"inputs": [{"name": n, "shape": [2, 1], "datatype": "FP64",
                      "data": [r[i] for r in data]} for i, n in enumerate(COLUMNS)]}
    fast = plan.v2_inputs(v2_request(sig, json.dumps(v2).encode(), None))
    assert fast is not None
    np.testing.assert_array_equal(fast["X"], np.asarray(data, dtype="float32"))
    tensors = {"inputs": [
        {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2.5, 3, 4]},
        {"name": "k", "shape": [2], "datatype": "INT8", "data": [-128, 127]},
        {"name": "on", "shape": [2, 1], "datatype": "BOOL", "data": [True, False]}]}
    request = v2_request(TENSORS, json.dumps(tensors).encode(), None)
    fast = Plan(TENSORS).v2_inputs(request)
    assert fast is not None
    same(fast, checked(TENSORS, request.payload(), "json"))
    # Not JSON, a CSV body, a null cell: the checked path's, to word what is wrong.
    assert plan.mlflow_inputs(b"{not json", "application/json") is None
    assert plan.mlflow_inputs(b"age,bmi,bp\n1,2,3\n", "text/csv") is None
    nulls = {"dataframe_split": {"columns": COLUMNS, "data": [[None, 1, 2]]}}
    assert plan.mlflow_inputs(json.dumps(nulls).encode(), "application/json") is None


def test_small_quick_requests_run_on_the_event_loop() -> None:
    plan = Plan(bound("float32"))
    assert not plan.inline(100)  # nothing measured yet: a worker thread
    plan.took(0.0001)
    assert plan.inline(100)
    assert not plan.inline(10**6)  # a large body always goes to a thread
    for _ in range(40):
        plan.took(0.01)
    assert not plan.inline(100)


def test_the_follower_keeps_its_store_until_a_look_fails() -> None:
    from types import SimpleNamespace

    from modelreg.errors import NotFound
    from modelreg.packaging.serving import Follower, Holder

    class Store:
        failing = False

        def show(self, ref: str) -> Any:
            if self.failing:
                raise NotFound(f"nothing in {ref}")
            return SimpleNamespace(manifest="m1", version=1)

    opened: list[Store] = []

    def open_store() -> Any:
        opened.append(Store())
        return opened[-1]

    holder = Holder("m@production", current=SimpleNamespace(info=SimpleNamespace(  # type: ignore[arg-type]
        manifest="m1")))
    follower = Follower(open_store, holder, poll=1.0)
    follower.step()
    follower.step()
    assert len(opened) == 1
    opened[0].failing = True
    follower.step()
    assert holder.last_error == "nothing in m@production"
    follower.step()  # a store opened afresh, and the stage holds the served version again
    assert len(opened) == 2
    assert holder.last_error is None
