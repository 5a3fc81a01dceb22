"""The store layout, init and discovery: storage/layout.py."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from modelreg.errors import (
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    IntegrityError,
    NotARegistry,
    NotFound,
    UnsupportedFormat,
    UsageError,
)
from modelreg.storage.layout import (
    CONFIG_TEMPLATE,
    DIRNAME,
    ENV_DIR,
    FORMAT_VERSION,
    Layout,
    discover,
    init,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    init(root)
    return root


def _no_store_above(path: Path) -> None:
    for candidate in (path, *path.parents):
        if (candidate / DIRNAME).exists():
            pytest.skip(f"a store exists above the test directory: {candidate / DIRNAME}")


# -- init ----------------------------------------------------------------------------------


def test_init_creates_the_skeleton(tmp_path: Path) -> None:
    layout, created = init(tmp_path / "project")
    root = tmp_path / "project" / ".modelreg"
    assert created is True
    assert layout == Layout(root)
    assert (root / "format").read_bytes() == b"2\n"
    assert FORMAT_VERSION == 2
    assert (root / "config.toml").read_text(encoding="utf-8") == CONFIG_TEMPLATE
    for sub in ("objects", "refs/models", "tmp"):
        assert (root / sub).is_dir(), sub
    assert list((root / "tmp").iterdir()) == []
    # Metadata files are readable by everyone, writable by the owner only.
    assert stat.S_IMODE((root / "format").stat().st_mode) == 0o644


def test_layout_paths() -> None:
    layout = Layout(Path("/p/.modelreg"))
    assert layout.format_file == Path("/p/.modelreg/format")
    assert layout.config_file == Path("/p/.modelreg/config.toml")
    assert layout.objects == Path("/p/.modelreg/objects")
    assert layout.refs == Path("/p/.modelreg/refs")
    assert layout.model_refs == Path("/p/.modelreg/refs/models")
    assert layout.tmp == Path("/p/.modelreg/tmp")


def test_init_twice_reports_not_created_and_keeps_config(tmp_path: Path) -> None:
    layout, _ = init(tmp_path)
    layout.config_file.write_text("# edited by the team\n")
    again, created = init(tmp_path)
    assert created is False
    assert again == layout
    assert layout.config_file.read_text() == "# edited by the team\n"
    assert layout.format_file.read_bytes() == b"2\n"


def test_init_repairs_missing_directories(tmp_path: Path) -> None:
    layout, _ = init(tmp_path)
    layout.tmp.rmdir()
    _, created = init(tmp_path)
    assert created is False
    assert layout.tmp.is_dir()


def test_init_on_a_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x")
    with pytest.raises(UsageError) as excinfo:
        init(path)
    assert excinfo.value.exit_code == EXIT_USAGE == 2
    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == b"x"


def test_init_over_unknown_format_refuses(tmp_path: Path) -> None:
    layout, _ = init(tmp_path)
    layout.format_file.write_text("99\n")
    with pytest.raises(UnsupportedFormat):
        init(tmp_path)
    assert layout.format_file.read_text() == "99\n"


# -- check_format --------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["99", "99\n", "0\n", "3", "1"])
def test_unknown_format_version_is_unsupported(project: Path, content: str) -> None:
    fmt = project / DIRNAME / "format"
    fmt.write_text(content)
    with pytest.raises(UnsupportedFormat) as excinfo:
        discover(project)
    err = excinfo.value
    assert err.exit_code == EXIT_INTEGRITY == 6
    assert isinstance(err, IntegrityError)
    assert err.path == str(fmt)
    assert f"format version {content.strip()}" in str(err)
    assert str(project / DIRNAME) in str(err)


def test_a_format_1_store_names_the_command_that_converts_it(project: Path) -> None:
    (project / DIRNAME / "format").write_text("1\n")
    with pytest.raises(UnsupportedFormat) as excinfo:
        discover(project)
    assert excinfo.value.exit_code == 6
    assert "`modelreg migrate`" in str(excinfo.value)


@pytest.mark.parametrize("content", ["", "one\n", "1.0\n"])
def test_garbled_format_file_is_an_integrity_error(project: Path, content: str) -> None:
    fmt = project / DIRNAME / "format"
    fmt.write_text(content)
    with pytest.raises(IntegrityError) as excinfo:
        discover(project)
    assert not isinstance(excinfo.value, UnsupportedFormat)
    assert excinfo.value.exit_code == 6
    assert str(fmt) in str(excinfo.value)


def test_format_with_surrounding_whitespace_is_accepted(project: Path) -> None:
    (project / DIRNAME / "format").write_text(" 2 \n\n")
    assert discover(project).root == project / DIRNAME


def test_missing_format_file_is_not_a_registry(project: Path) -> None:
    (project / DIRNAME / "format").unlink()
    with pytest.raises(NotARegistry) as excinfo:
        discover(project)
    assert excinfo.value.exit_code == EXIT_NOT_FOUND == 3
    assert str(project / DIRNAME) in str(excinfo.value)


# -- discover ------------------------------------------------------------------------------


def test_discover_walks_up_from_a_nested_subdirectory(project: Path) -> None:
    nested = project / "a" / "b" / "c"
    nested.mkdir(parents=True)
    assert discover(start=nested).root == project / DIRNAME


def test_discover_walks_up_from_the_current_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = project / "src" / "pkg"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert discover().root == project / DIRNAME


def test_discover_from_inside_the_store_directory(project: Path) -> None:
    assert discover(start=project / DIRNAME / "refs" / "models").root == project / DIRNAME


def test_discover_finds_the_nearest_store(project: Path) -> None:
    inner = project / "sub"
    init(inner)
    start = inner / "x"
    start.mkdir()
    assert discover(start=start).root == inner / DIRNAME
    assert discover(start=project).root == project / DIRNAME


@pytest.mark.parametrize("form", ["project", "store"])
@pytest.mark.parametrize("as_str", [True, False])
def test_discover_explicit_accepts_project_or_store_dir(
    project: Path, form: str, as_str: bool, tmp_path: Path
) -> None:
    given: Path = project if form == "project" else project / DIRNAME
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layout = discover(str(given) if as_str else given, start=elsewhere)
    assert layout.root == project / DIRNAME


def test_discover_explicit_does_not_walk_up(project: Path) -> None:
    nested = project / "nested"
    nested.mkdir()
    with pytest.raises(NotARegistry) as excinfo:
        discover(nested)
    assert str(nested) in str(excinfo.value)
    assert "modelreg init" in str(excinfo.value)


def test_discover_honours_modelreg_dir(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The current directory holds a different store; the variable wins over the walk.
    other = tmp_path / "other"
    init(other)
    monkeypatch.chdir(other)
    monkeypatch.setenv(ENV_DIR, str(project))
    assert discover().root == project / DIRNAME
    monkeypatch.setenv(ENV_DIR, str(project / DIRNAME))
    assert discover().root == project / DIRNAME
    # An explicit path wins over the variable.
    assert discover(other).root == other / DIRNAME


def test_discover_empty_modelreg_dir_is_ignored(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DIR, "")
    assert discover(start=project).root == project / DIRNAME


def test_discover_bad_modelreg_dir_is_not_a_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(NotARegistry) as excinfo:
        discover()
    assert str(tmp_path / "nowhere") in str(excinfo.value)
    assert excinfo.value.exit_code == 3


def test_discover_without_any_store_is_not_a_registry(tmp_path: Path) -> None:
    _no_store_above(tmp_path)
    start = tmp_path / "empty" / "deep"
    start.mkdir(parents=True)
    with pytest.raises(NotARegistry) as excinfo:
        discover(start=start)
    err = excinfo.value
    assert err.exit_code == EXIT_NOT_FOUND == 3
    assert isinstance(err, NotFound)
    assert str(start) in str(err)
    assert ENV_DIR in str(err)


def test_discover_ignores_a_file_named_like_the_store(tmp_path: Path) -> None:
    _no_store_above(tmp_path)
    (tmp_path / DIRNAME).write_text("not a directory")
    with pytest.raises(NotARegistry):
        discover(start=tmp_path)


def test_discover_checks_the_format_of_the_store_found(project: Path) -> None:
    (project / DIRNAME / "format").write_text("99\n")
    nested = project / "x"
    nested.mkdir()
    with pytest.raises(UnsupportedFormat):
        discover(start=nested)
