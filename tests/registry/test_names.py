"""Model names and version references."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelreg.errors import EXIT_USAGE, UsageError
from modelreg.registry.names import MAX_NAME, Ref, check_model_name, model_key, parse_ref

_FAST = settings(derandomize=True, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.filter_too_much])


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "Z",
        "0",
        "resnet50",
        "ResNet-50_v2.onnx",
        "a.b.c",
        "a-",
        "a_",
        "a.",
        "9lives",
        "x" * MAX_NAME,
        "m.locked",
        "lock",
    ],
)
def test_check_model_name_accepts(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * (MAX_NAME + 1),
        "../x",
        "..",
        ".",
        "/abs",
        "a/b",
        "a\\b",
        ".hidden",
        "-dash",
        "_under",
        "x..y",
        "m.lock",
        "m.LOCK",
        "a b",
        " a",
        "a:b",
        "a@b",
        "caf\u00e9",
        "\u00e9t\u00e9",
        "\u043c\u043e\u0434\u0435\u043b\u044c",
        "\uff21",  # fullwidth A
        "a\x00",
    ],
)
def test_check_model_name_rejects(name: str) -> None:
    with pytest.raises(UsageError) as info:
        check_model_name(name)
    assert info.value.exit_code == EXIT_USAGE == 2


def test_too_long_message_names_the_limit() -> None:
    with pytest.raises(UsageError, match="128"):
        check_model_name("y" * 129)


def test_trailing_newline_is_rejected() -> None:
    with pytest.raises(UsageError):
        check_model_name("model\n")


def test_label_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(UsageError):
        parse_ref("m@prod\n")


def test_model_key_folds_case() -> None:
    assert model_key("ResNet") == "resnet"
    assert model_key("resnet") == model_key("RESNET")


def test_model_key_checks_the_name() -> None:
    with pytest.raises(UsageError):
        model_key("../etc")


_names = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,140}", fullmatch=True),
    st.text(alphabet="aB9._-/\\ \u00e9\n", max_size=12),
    st.text(max_size=20),
)


@_FAST
@given(_names)
def test_accepted_names_have_safe_keys(name: str) -> None:
    try:
        check_model_name(name)
    except UsageError:
        return
    key = model_key(name)
    assert key == name.lower()
    assert "/" not in key
    assert "\\" not in key
    assert key not in (".", "..")
    assert ".." not in key
    assert not key.endswith(".lock")
    assert 1 <= len(key) <= MAX_NAME
    assert key[0].isascii() and key[0].isalnum()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m", Ref("m")),
        ("m@3", Ref("m", version=3)),
        ("m@v3", Ref("m", version=3)),
        ("m@0010", Ref("m", version=10)),
        ("m@latest", Ref("m")),
        ("m@production", Ref("m", label="production")),
        ("m@champion-2", Ref("m", label="champion-2")),
        ("Mixed.Case@v12", Ref("Mixed.Case", version=12)),
    ],
)
def test_parse_ref(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    ["m@", "m@0", "m@v0", "@3", "@", "m@a/b", "m@../x", "m@1@2", "m@.hidden", "../m@3", "m@a b"],
)
def test_parse_ref_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_ref(text)
    assert info.value.exit_code == 2


def test_ref_str() -> None:
    assert str(Ref("m", version=3)) == "m@3"
    assert str(Ref("m")) == "m@latest"
    assert str(Ref("m", label="production")) == "m@production"


@_FAST
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
       st.integers(min_value=1, max_value=10**9))
def test_parse_ref_version_round_trips(name: str, version: int) -> None:
    ref = parse_ref(f"{name}@{version}")
    assert ref == Ref(name, version=version)
    assert parse_ref(str(ref)) == ref
    assert parse_ref(f"{name}@v{version}") == ref
