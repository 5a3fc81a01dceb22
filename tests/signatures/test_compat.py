"""Breaking and compatible signature changes."""

from __future__ import annotations

import pytest

from modelreg.signatures.compat import diff_signatures, is_breaking
from modelreg.signatures.model import parse_signature


def sig(inputs, outputs=None):
    doc = {"inputs": inputs}
    if outputs is not None:
        doc["outputs"] = outputs
    return parse_signature(doc)


BASE = {"distance": "float", "is_hazardous": "bool"}


@pytest.mark.parametrize(("new_inputs", "breaking", "fragment"), [
    ({**BASE, "weight": "float"}, True, "added (required)"),
    ({**BASE, "weight": {"type": "float", "required": False}}, False, "added (optional)"),
    ({"distance": "float"}, True, "removed"),
    ({"distance": "int", "is_hazardous": "bool"}, True, "narrowed"),
    ({"distance": "string", "is_hazardous": "bool"}, True, "changed"),
    ({"distance": {"type": "float", "required": False}, "is_hazardous": "bool"}, False,
     "made optional"),
    ({"distance": {"type": "float", "nullable": True}, "is_hazardous": "bool"}, False,
     "now nullable"),
])
def test_column_input_changes(new_inputs, breaking: bool, fragment: str) -> None:
    changes = diff_signatures(sig(BASE), sig(new_inputs))
    assert is_breaking(changes) is breaking
    assert any(fragment in c.message for c in changes), changes


def test_widening_is_compatible_and_narrowing_breaks() -> None:
    old = sig({"n": "int32", "x": "float32"})
    new = sig({"n": "int64", "x": "float64"})
    assert not is_breaking(diff_signatures(old, new))
    assert is_breaking(diff_signatures(new, old))
    assert not is_breaking(diff_signatures(sig({"n": "int"}), sig({"n": "float"})))


def test_required_and_nullable_tightening_break() -> None:
    loose = sig({"a": {"type": "float", "required": False, "nullable": True}})
    tight = sig({"a": "float"})
    messages = [c.message for c in diff_signatures(loose, tight)]
    assert "input 'a': made required" in messages
    assert "input 'a': no longer nullable" in messages
    assert is_breaking(diff_signatures(loose, tight))


@pytest.mark.parametrize(("old_shape", "new_shape", "breaking"), [
    ([-1, 4], [-1, 4], None),
    ([-1, 4], ["batch", 4], None),
    ([-1, 4], [8, 4], True),       # a dynamic dimension fixed
    ([8, 4], [-1, 4], False),      # a fixed dimension made dynamic (input)
    ([-1, 4], [-1, 5], True),
    ([-1, 4], [-1, 4, 1], True),
])
def test_tensor_input_shapes(old_shape, new_shape, breaking) -> None:
    old = sig({"x": {"dtype": "float32", "shape": old_shape}})
    new = sig({"x": {"dtype": "float32", "shape": new_shape}})
    changes = diff_signatures(old, new)
    if breaking is None:
        assert changes == []
    else:
        assert is_breaking(changes) is breaking


def test_tensor_dtype_change_breaks() -> None:
    old = sig({"x": {"dtype": "float32", "shape": [-1, 4]}})
    new = sig({"x": {"dtype": "float64", "shape": [-1, 4]}})
    assert is_breaking(diff_signatures(old, new))


def test_outputs_removed_or_changed_break_added_is_compatible() -> None:
    old = sig(BASE, {"eta": "float"})
    assert is_breaking(diff_signatures(old, sig(BASE, {"other": "float"})))
    assert is_breaking(diff_signatures(old, sig(BASE, {"eta": "int"})))
    added = diff_signatures(old, sig(BASE, {"eta": "float", "p90": "float"}))
    assert added and not is_breaking(added)


def test_missing_signatures() -> None:
    assert diff_signatures(None, None) == []
    assert not is_breaking(diff_signatures(None, sig(BASE)))
    assert is_breaking(diff_signatures(sig(BASE), None))
    assert is_breaking(diff_signatures(sig(BASE), sig({"x": {"dtype": "float32",
                                                             "shape": [-1]}})))
