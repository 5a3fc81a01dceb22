"""House rule 1: every write under ``.modelreg/`` goes through ``storage/atomic.py``.

The whole of ``src/modelreg`` is parsed with :mod:`ast` and every call that can create or
write a file is listed: ``open``/``io.open``/``os.fdopen``/``Path.open`` in a write mode
(``w``, ``a``, ``x`` or ``+``, or a mode that is not a literal), ``.write_text``,
``.write_bytes``, ``.touch``, ``os.open`` with a writing flag, ``shutil`` copies and
``tempfile`` files. Each one must sit in a function named in ``ALLOWED`` with the reason
it is safe; a new one fails this test until it is routed through ``storage/atomic.py`` or
given a reason here.

Inside ``storage/`` the rule is stricter: the one write path (``atomic.staged`` and the
``Staged`` file it yields) is the only code that creates a file, and the only code that
fsyncs, chmods, renames or links one into place or creates a directory, but for the two
exceptions in ``STORAGE_MOVES`` (which move or fill, and create nothing).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "modelreg"

# (file relative to src/modelreg, enclosing function) -> why its writes are allowed.
ALLOWED: dict[tuple[str, str], str] = {
    ("registry/maintenance.py", "_remove_by_protocol"): (
        "gc on an object store spools a copy of each object it removes into its own "
        "TemporaryDirectory (never the store), to store it again if a writer re-used it; "
        "the directory goes when gc ends"
    ),
    ("storage/atomic.py", "create_tmp"): (
        "the write path itself: creates the O_EXCL temp file in tmp/ that staged() fills "
        "and publishes"
    ),
    ("storage/atomic.py", "staged"): (
        "the write path itself: opens the temp file from create_tmp() for the caller to "
        "fill; Staged.publish then fsyncs, chmods, and renames or links it into place"
    ),
    ("packaging/exporting.py", "export_onnx"): (
        "work files (the converted model, the sample) in a TemporaryDirectory under the "
        "store's tmp/; they enter the store only through Registry.register"
    ),
    ("packaging/runtime.py", "_session_plan.build"): (
        "copies a version's external data files, verified, into a private TemporaryDirectory "
        "outside the store, for ONNX Runtime to read while it loads the model"
    ),
    ("packaging/mlflow_format.py", "export_mlflow"): (
        "writes an MLflow model into a staging directory beside the user's destination, "
        "outside the store, then renames it into place"
    ),
    ("packaging/mlflow_format.py", "import_mlflow"): (
        "rewrites an MLflow input example into a TemporaryDirectory outside the store; it "
        "enters the store only through register"
    ),
    ("packaging/serving.py", "_access_log"): (
        "appends the access log to the file the user named with --access-log, outside the "
        "store"
    ),
    ("registry/transfer.py", "copy_store"): (
        "streams a large object into a private TemporaryDirectory outside both stores, on its "
        "way from one backend to the other; it enters the destination only through put_file"
    ),
    ("registry/pulling.py", "pull"): (
        "writes into the user's destination directory, outside the store: 'xb' files in a "
        "staging directory under dest, fsynced, then os.replace'd into place"
    ),
}

# Inside storage/, the calls that change the file system without opening a file for
# writing, and where each may appear. Everything else of the kind is in storage/atomic.py.
STORAGE_MOVES: dict[tuple[str, str], str] = {
    ("storage/layout.py", "finish_ref_switch"): (
        "migrate, after its switch to format 2: moves the format-1 refs directory aside and "
        "the new refs directory (built through the write path) into its place; creates "
        "nothing"
    ),
    ("storage/lock.py", "break_lock"): (
        "renames a stale lock aside into tmp/ and links it back if it was replaced since it "
        "was judged: moves an existing lock file, writes no byte"
    ),
    ("storage/copying.py", "_copy_in_kernel"): (
        "copy_file_range into the temporary file its caller staged through atomic.staged "
        "(put_file), which the caller then publishes; creates nothing"
    ),
}
# Where, inside storage/atomic.py, each kind of call belongs: the one routine.
ATOMIC_PLACES: dict[str, set[str]] = {
    "os.replace": {"Staged.publish", "Staged._link"},
    # _links_work: where a link is refused, a link of the temporary file to a fresh name
    # beside it tells whether this file system refuses links at all (then removed).
    "os.link": {"Staged._link", "Staged._links_work"},
    "os.chmod": {"Staged._seal"},
    "os.fsync": {"Staged.sync", "fsync_dir"},
    ".mkdir()": {"ensure_dir"},
}

_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}
# Module functions whose mode is their second argument (``open(file, mode)``).
_MODULE_OPENERS = {
    "open", "io.open", "codecs.open", "os.fdopen", "gzip.open", "bz2.open", "lzma.open",
    "tarfile.open", "builtins.open",
}
_ALWAYS_WRITES = {
    "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree", "shutil.move",
    "tempfile.mkstemp", "tempfile.NamedTemporaryFile", "tempfile.TemporaryFile",
    "tempfile.SpooledTemporaryFile", "os.truncate", "os.mknod", "os.mkfifo",
}
_WRITE_METHODS = {"write_text", "write_bytes", "touch"}
_READ_FLAGS = {"os", "getattr", "O_RDONLY", "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC"}


def _identifiers(node: ast.expr | None) -> set[str]:
    """Names, attributes and string literals in an expression such as os.open's flags."""
    if node is None:
        return set()
    found: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            found.add(n.attr)
        elif isinstance(n, ast.Name):
            found.add(n.id)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            found.add(n.value)
    return found


@dataclass(frozen=True)
class Finding:
    file: str
    function: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"src/modelreg/{self.file}:{self.line} in {self.function}: {self.what}"


def _mode_writes(node: ast.expr | None) -> bool | None:
    """True/False for a literal mode, None when the mode is computed at run time."""
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return any(c in node.value for c in "wax+")
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str) -> None:
        self.file = file
        self.scope: list[str] = []
        self.aliases: dict[str, str] = {}
        self.findings: list[Finding] = []

    # -- bookkeeping ----------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.asname:
                self.aliases[a.asname] = a.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            if node.module:
                self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = _scoped
    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped

    def _dotted(self, func: ast.expr) -> str | None:
        parts: list[str] = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            return None
        parts.append(self.aliases.get(func.id, func.id))
        return ".".join(reversed(parts))

    def _report(self, node: ast.expr, what: str) -> None:
        function = ".".join(self.scope) or "<module>"
        self.findings.append(Finding(self.file, function, node.lineno, what))

    # -- the check ------------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        dotted = self._dotted(node.func)
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        method = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if dotted == "os.open":
            flags = node.args[1] if len(node.args) > 1 else kw.get("flags")
            names = _identifiers(flags)
            if names & _WRITE_FLAGS:
                self._report(node, f"os.open with {'|'.join(sorted(names & _WRITE_FLAGS))}")
            elif not names or not names <= _READ_FLAGS:
                self._report(node, "os.open with flags not known to be read-only")
        elif dotted in _MODULE_OPENERS:
            mode = node.args[1] if len(node.args) > 1 else kw.get("mode")
            writes = _mode_writes(mode)
            if writes is None:
                self._report(node, f"{dotted}() with a computed mode")
            elif writes:
                self._report(node, f"{dotted}() in mode {mode.value!r}")  # type: ignore[union-attr]
        elif dotted in _ALWAYS_WRITES:
            self._report(node, f"{dotted}()")
        elif method == "open":
            # A method such as Path.open(mode): only a literal or keyword mode is judged,
            # since Registry.open(path) and friends take something else first.
            mode = kw.get("mode")
            if mode is None and node.args and isinstance(node.args[0], ast.Constant):
                mode = node.args[0]
            writes = _mode_writes(mode)
            if writes or (writes is None and "mode" in kw):
                self._report(node, f".open() in a write mode ({ast.unparse(mode)})")  # type: ignore[arg-type]
        elif method in _WRITE_METHODS:
            self._report(node, f".{method}()")


def scan_source(source: str, file: str = "<test>") -> list[Finding]:
    scanner = _Scanner(file)
    scanner.visit(ast.parse(source))
    return scanner.findings


def scan_tree(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    for path in sorted(root.rglob("*.py")):
        findings.extend(scan_source(path.read_text(encoding="utf-8"),
                                    path.relative_to(root).as_posix()))
    return findings


# Calls that change the file system although they open nothing for writing.
_FS_CHANGES = {
    "os.replace", "os.rename", "os.renames", "os.link", "os.symlink", "os.chmod", "os.fchmod",
    "os.lchmod", "os.chown", "os.fchown", "os.fsync", "os.fdatasync", "os.sync", "os.write",
    "os.writev", "os.pwrite", "os.pwritev", "os.copy_file_range", "os.sendfile", "os.splice",
    "os.ftruncate", "os.posix_fallocate", "os.mkdir", "os.makedirs", "shutil.copyfileobj",
}
# Path methods that change the file system (``.replace``/``.rename`` with one argument:
# ``str.replace`` takes two).
_FS_METHODS = {"mkdir", "chmod", "lchmod", "symlink_to", "hardlink_to", "link_to"}
_FS_ONE_ARG_METHODS = {"replace", "rename"}


class _FsScanner(_Scanner):
    """Reports each use of a call in ``_FS_CHANGES``, even one not called on the spot.

    ``os.copy_file_range`` is taken with ``getattr(os, ...)`` by the copier, and any such
    function can be held in a variable first: every reference counts, not only calls.
    """

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        dotted = self._dotted(node)
        if dotted in _FS_CHANGES:
            self._report(node, dotted)

    def visit_Name(self, node: ast.Name) -> None:
        if self.aliases.get(node.id) in _FS_CHANGES:
            self._report(node, self.aliases[node.id])

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        dotted = self._dotted(node.func)
        method = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if dotted == "getattr" and len(node.args) >= 2:
            owner, name = node.args[0], node.args[1]
            if (isinstance(owner, ast.Name) and isinstance(name, ast.Constant)
                    and f"{self.aliases.get(owner.id, owner.id)}.{name.value}" in _FS_CHANGES):
                self._report(node, f"{owner.id}.{name.value}")
        elif dotted in _FS_CHANGES:
            pass  # os.chmod(...) and the like: reported by visit_Attribute
        elif method in _FS_METHODS or (
            method in _FS_ONE_ARG_METHODS and len(node.args) + len(node.keywords) == 1
        ):
            self._report(node, f".{method}()")


def scan_fs_changes(source: str, file: str = "<test>") -> list[Finding]:
    scanner = _FsScanner(file)
    scanner.visit(ast.parse(source))
    return scanner.findings


def storage_fs_changes() -> list[Finding]:
    root = SRC / "storage"
    return [f for path in sorted(root.rglob("*.py"))
            for f in scan_fs_changes(path.read_text(encoding="utf-8"),
                                     "storage/" + path.relative_to(root).as_posix())]


# -- the rule ------------------------------------------------------------------------------


def test_source_tree_is_there() -> None:
    assert (SRC / "storage" / "atomic.py").is_file()
    assert len(list(SRC.rglob("*.py"))) > 10


def test_no_write_outside_the_allowed_places() -> None:
    stray = [f for f in scan_tree(SRC) if (f.file, f.function) not in ALLOWED]
    assert not stray, (
        "files written outside storage/atomic.py (house rule 1); route these through "
        "storage.atomic, or add them to ALLOWED with the reason they are safe:\n"
        + "\n".join(map(str, stray))
    )


def test_every_allowed_place_still_writes() -> None:
    used = {(f.file, f.function) for f in scan_tree(SRC)}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED entries that no longer write anything, remove them: {stale}"


def test_every_allowance_has_a_reason() -> None:
    for key, reason in {**ALLOWED, **STORAGE_MOVES}.items():
        assert len(reason) > 20, key


def test_storage_has_one_writer() -> None:
    # No ALLOWED entry may let another storage module open a file for writing.
    writers = {(f.file, f.function) for f in scan_tree(SRC) if f.file.startswith("storage/")}
    assert writers == {("storage/atomic.py", "create_tmp"), ("storage/atomic.py", "staged")}


def test_storage_changes_the_file_system_only_through_the_write_path() -> None:
    stray = [f for f in storage_fs_changes()
             if f.file != "storage/atomic.py" and (f.file, f.function) not in STORAGE_MOVES]
    assert not stray, (
        "storage/ renames, links, chmods, fsyncs or creates directories outside "
        "storage/atomic.py; go through atomic.staged / ensure_dir:\n" + "\n".join(map(str, stray))
    )
    used = {(f.file, f.function) for f in storage_fs_changes()}
    assert set(STORAGE_MOVES) <= used, "STORAGE_MOVES entries that no longer apply"


def test_atomic_has_one_routine() -> None:
    # Inside atomic.py itself, each step has one place: write_atomic, write_new and
    # atomic_file only fill a Staged file and publish it.
    misplaced = [
        f for f in storage_fs_changes()
        if f.file == "storage/atomic.py" and f.function not in ATOMIC_PLACES.get(f.what, set())
    ]
    assert not misplaced, "\n".join(map(str, misplaced))
    found = {f.what for f in storage_fs_changes() if f.file == "storage/atomic.py"}
    assert found == set(ATOMIC_PLACES)


# -- the scanner itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "open(p, 'w')",
        "open(p, 'wb')",
        "open(p, 'a')",
        "open(p, 'x')",
        "open(p, 'xb')",
        "open(p, 'r+b')",
        "open(p, mode='wt', encoding='utf-8')",
        "open(p, m)",
        "with open(p, 'w') as fh:\n    pass",
        "import io\nio.open(p, 'w')",
        "import os\nos.fdopen(fd, 'wb')",
        "import gzip\ngzip.open(p, 'wb')",
        "path.open('w')",
        "path.open(mode='ab')",
        "Path(x).open('x')",
        "path.write_text('x')",
        "self.layout.config_file.write_bytes(b'x')",
        "path.touch()",
        "import os\nos.open(p, os.O_WRONLY | os.O_CREAT)",
        "import os\nos.open(p, os.O_RDWR)",
        "import os\nos.open(p, flags)",
        "import os\nos.open(p, getattr(os, 'O_CREAT'))",
        "import os\nos.open(p, os.O_RDONLY | os.O_TRUNC)",
        "from os import O_CREAT, open as os_open\nos_open(p, O_CREAT)",
        "import shutil\nshutil.copyfile(a, b)",
        "from shutil import copy2\ncopy2(a, b)",
        "import tempfile\ntempfile.NamedTemporaryFile()",
        "def f():\n    class C:\n        def g(self):\n            open(p, 'w')",
    ],
)
def test_scanner_flags_writes(source: str) -> None:
    assert len(scan_source(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "open(p)",
        "open(p, 'r')",
        "open(p, 'rb')",
        "open(p, mode='rt')",
        "path.open()",
        "path.open('rb')",
        "Registry.open(registry)",
        "Registry.open(path=p)",
        "path.read_text()",
        "path.read_bytes()",
        "import os\nos.open(p, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))",
        "fh.write(b'x')",
        "import shutil\nshutil.rmtree(p)",
        "import os\nos.replace(a, b)",
    ],
)
def test_scanner_ignores_reads(source: str) -> None:
    assert scan_source(source) == [], source


def test_scanner_names_the_enclosing_function() -> None:
    (finding,) = scan_source(
        "class Store:\n    def put(self):\n        open(p, 'xb')\n", "storage/x.py"
    )
    assert (finding.file, finding.function, finding.line) == ("storage/x.py", "Store.put", 3)
    assert "'xb'" in str(finding)
    (top,) = scan_source("p.write_text('x')\n")
    assert top.function == "<module>"


def test_the_expected_writes_are_found() -> None:
    found = {(f.file, f.function, f.what) for f in scan_tree(SRC)}
    assert ("registry/pulling.py", "pull", "open() in mode 'xb'") in found
    assert ("storage/atomic.py", "staged", "os.fdopen() in mode 'wb'") in found
    assert ("storage/atomic.py", "create_tmp", "os.open with O_CREAT|O_WRONLY") in found
    # Objects (put_file included), refs, the lock's owner record and init's files are all
    # staged through atomic.staged: no other storage module opens a file for writing.
    assert not [f for f in found if f[0].startswith("storage/") and f[0] != "storage/atomic.py"]


@pytest.mark.parametrize(
    "source",
    [
        "import os\nos.replace(a, b)",
        "import os\nos.link(a, b)",
        "import os\nos.chmod(p, 0o444)",
        "import os\nos.fsync(fd)",
        "import os\nos.write(fd, b'x')",
        "import os\nos.copy_file_range(a, b, n)",
        "import os\nos.makedirs(p)",
        "from os import replace\nreplace(a, b)",
        "import os\ncopy = getattr(os, 'copy_file_range', None)",
        "import os\nf = os.fsync",
        "p.mkdir(parents=True)",
        "p.chmod(0o644)",
        "p.replace(q)",
        "p.rename(target=q)",
        "p.hardlink_to(q)",
    ],
)
def test_fs_scanner_flags_changes(source: str) -> None:
    assert len(scan_fs_changes(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    ["name.replace('_', '')", "s.replace(a, b, 1)", "os.stat(p)", "os.utime(p)",
     "p.unlink()", "fh.write(b'x')", "os.open(p, os.O_RDONLY)"],
)
def test_fs_scanner_ignores_the_rest(source: str) -> None:
    assert scan_fs_changes(source) == [], source
