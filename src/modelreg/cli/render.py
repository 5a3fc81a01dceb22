"""Output: JSON for scripts, aligned plain text for people, messages on stderr.

Data goes to stdout; diagnostics and progress go to stderr. Tables are plain aligned text;
rich is imported only when a progress bar is drawn (on stderr, for large copies).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.types import VersionInfo, to_json_data

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgressBar

    from modelreg.api import ContractReport, MlflowMigration, SearchHit
    from modelreg.results import (
        ChangeResult,
        DiffResult,
        FsckReport,
        GcReport,
        HookResult,
        ModelSummary,
        PullResult,
        RegisterResult,
        VersionSummary,
    )
    from modelreg.types import EventRecord

__all__ = [
    "RichProgress",
    "compact_json",
    "emit_json",
    "human_size",
    "line",
    "message",
    "progress_for_stderr",
    "render_aliases",
    "render_bench",
    "render_bundle_written",
    "render_change",
    "render_contract",
    "render_diff",
    "render_events",
    "render_export",
    "render_fsck",
    "render_gc",
    "render_history",
    "render_init",
    "render_models",
    "render_pull",
    "render_register",
    "render_signature_changes",
    "render_validation",
    "render_version",
    "render_versions",
    "warn_failed_hooks",
]


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # a surrogate pair, as JSON spells characters beyond the BMP
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


# What json.dumps(ensure_ascii=False) leaves raw but a terminal could act on: DEL, the C1
# controls (0x9b is CSI on some terminals), and format characters such as bidi overrides.
_JSON_UNSAFE = re.compile("[^\n\t\x20-\x7e]")


def render_search(hits: list[SearchHit]) -> None:
    """Matching versions as an aligned table, with the metrics each has."""
    if not hits:
        message("no version matches")
        return
    rows = [[h.ref, h.stage, ", ".join(h.aliases) or "-", h.created_at[:19], h.created_by,
             " ".join(f"{k}={v}" for k, v in sorted(h.metrics.items())) or "-"]
            for h in hits]
    header = ["version", "stage", "aliases", "created", "by", "metrics"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        sys.stdout.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
                         .rstrip() + "\n")


def render_mlflow_migration(moved: MlflowMigration) -> None:
    """What ``import --from-mlflow`` brought over, and what it could not."""
    message(f"from {moved.source}: {len(moved.models)} model(s), {len(moved.created)} "
            f"version(s) registered, {len(moved.existing)} already here, "
            f"{len(moved.stages)} stage(s) and {len(moved.aliases)} alias(es) set")
    for item in moved.skipped:
        message(f"  not carried over: {item['what']}: {item['why']}")


def emit_json(data: Any) -> None:
    r"""Print data as JSON on stdout (sorted keys, two-space indent).

    Non-printable characters inside strings are written as ``\uXXXX`` escapes (the same
    JSON value), so JSON shown on a terminal cannot drive it either.
    """
    text = json.dumps(to_json_data(data), indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write(_JSON_UNSAFE.sub(lambda m: m.group() if m.group().isprintable()
                                      else _json_escape(m), text) + "\n")


def compact_json(data: Any) -> bytes:
    """JSON-ready data as one line of JSON and a newline (sorted keys), for a file."""
    return (json.dumps(data, sort_keys=True) + "\n").encode()


def _escape(c: str) -> str:
    return repr(c)[1:-1]


def _plain(text: str) -> str:
    r"""One value with every non-printable character escaped (newlines and tabs too).

    Escape sequences (ESC, BEL, OSC), other control and format characters (bidirectional
    overrides, zero-width ones) and line breaks become visible escapes (``\x1b``,
    ``\u202e``, ``\n``), so a stored or given value can neither drive the terminal nor
    forge an output line.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _safe(text: str) -> str:
    """Whole output text: like :func:`_plain`, but its own newlines and tabs are kept."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else _escape(c) for c in text)


def line(text: str) -> None:
    """Print a line of data on stdout, control characters escaped (:func:`_safe`).

    Every human-readable line goes through here or :func:`message`, so no stored or given
    text reaches the terminal raw; values that must stay on one line are also passed
    through :func:`_plain` by the renderers.
    """
    sys.stdout.write(_safe(text) + "\n")


def message(text: str) -> None:
    """Print a diagnostic line on stderr, control characters escaped as :func:`line` does."""
    sys.stderr.write(_safe(text) + "\n")


def _print_columns(rows: Sequence[Sequence[str]], *, header: bool = True) -> None:
    """Print rows as left-aligned columns two spaces apart; the first column (or row) bold.

    Plain text, not a rich table: values are printed as they are (no markup, no wrapping or
    cutting to the terminal's width), and drawing costs nothing at start-up. Bold only on a
    terminal, and not under ``NO_COLOR``.
    """
    cells = [[_plain(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    bold = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    lines = []
    for n, row in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if bold and header and n == 0:
            padded = [f"\x1b[1m{c}\x1b[0m" for c in padded]
        elif bold and not header:
            padded[0] = f"\x1b[1m{padded[0]}\x1b[0m"
        lines.append("  ".join(padded).rstrip())
    sys.stdout.write("".join(line + "\n" for line in lines))


def human_size(n: int) -> str:
    """Render a byte count for people (``12.3 MB``)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _value(v: Any) -> str:
    if v is None:
        return "-"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def render_init(path: Path | str, created: bool) -> None:
    """Say where ``init`` made (or found) the store."""
    line(f"{'Created' if created else 'Found existing'} modelreg store in {path}")


def render_register(result: RegisterResult) -> None:
    """Say what ``register`` did."""
    v = result.version
    if result.created:
        line(f"Registered {v.ref} ({human_size(v.artifact.size)}, {v.artifact.digest})")
    else:
        line(f"{v.ref} already holds this content and lineage; nothing new was registered "
              "(use --force for a new version)")


def render_version(v: VersionInfo) -> None:
    """Show one version for people."""
    lin = v.lineage
    rows: list[tuple[str, str]] = [
        ("version", v.ref),
        ("stage", v.stage + (f"  aliases: {', '.join(v.aliases)}" if v.aliases else "")),
        ("created", f"{v.created_at} by {v.created_by}"),
        ("description", v.description or "-"),
        ("artifact", f"{v.artifact.kind}, {human_size(v.artifact.size)}, {v.artifact.digest}"),
    ]
    rows += [("  file", f"{f.path}  {human_size(f.size)}  {_short(f.digest)}")
             for f in v.artifact.files[:20]]
    if len(v.artifact.files) > 20:
        rows.append(("", f"… and {len(v.artifact.files) - 20} more files (see --json)"))
    rows += [("tag", f"{k} = {val}") for k, val in v.tags.items()]
    rows += [("param", f"{k} = {_value(val)}") for k, val in lin.params.items()]
    rows += [("metric", f"{k} = {_value(val)}") for k, val in lin.metrics.items()]
    if lin.run.id or lin.run.name:
        rows.append(("run", f"{lin.run.name or '-'} (id {lin.run.id or '-'})"))
    if lin.git is not None:
        dirty = " (dirty)" if lin.git.dirty else ""
        rows.append(("git", f"{lin.git.commit or '-'}{dirty} on {lin.git.branch or 'detached'}"
                            f"{'  ' + lin.git.remote if lin.git.remote else ''}"))
    rows += [("data", f"{d.path}  {human_size(d.size)}  {d.digest}") for d in lin.data]
    if lin.data_version:
        rows.append(("data version", lin.data_version))
    if lin.derived_from:
        rows.append(("derived from", lin.derived_from))
    if v.signature is not None:
        signature = v.signature.to_dict()
        for side in ("inputs", "outputs"):
            part = signature.get(side)
            if part:
                rows.append((side, _describe_schema(part)))
    if v.example is not None:
        rows.append(("example", f"{v.example.path}  {human_size(v.example.size)}  "
                                f"{_short(v.example.digest)}"))
    for name, c in sorted(v.checks.items()):
        value = "" if c.value is None else f" (value {_value(c.value)})"
        rows.append(("check", f"{name}: {'passed' if c.passed else 'FAILED'}{value} "
                              f"by {c.actor} at {c.time[:19]}"))
    rows += [("approval", f"{a.actor} for {a.stage} at {a.time[:19]}"
                          + (f": {a.comment}" if a.comment else ""))
             for a in v.approvals]
    rows.append(("manifest", v.manifest))
    _print_columns(rows, header=False)


def _describe_schema(part: dict[str, Any]) -> str:
    """One line for a signature side: ``distance float64, is_hazardous boolean?``."""
    if "columns" in part:
        return ", ".join(
            f"{c['name']} {c['type']}{'' if c.get('required', True) else ' (optional)'}"
            f"{' (nullable)' if c.get('nullable') else ''}" for c in part["columns"])
    return ", ".join(
        f"{t['name']} {t.get('dtype') or t.get('kind')}"
        f"{'[' + ', '.join(map(str, t['shape'])) + ']' if t.get('shape') is not None else ''}"
        for t in part.get("tensors", []))


def render_models(models: list[ModelSummary]) -> None:
    """Show the model list as a table."""
    if not models:
        message("no models registered yet (modelreg register NAME PATH)")
        return
    rows = [("model", "versions", "latest", "stages", "updated", "by")]
    for m in models:
        stages = ", ".join(f"{s}: v{n}" for s, n in m.stages.items()) or "-"
        rows.append((m.name, str(m.versions), f"v{m.latest}", stages, m.updated_at[:19],
                     m.updated_by))
    _print_columns(rows)


def render_versions(rows: list[VersionSummary]) -> None:
    """Show a model's versions as a table."""
    _print_columns([("version", "stage", "aliases", "created", "by", "size", "digest")] + [
        (f"v{r.version}", r.stage, ", ".join(r.aliases) or "-", r.created_at[:19],
         r.created_by, human_size(r.size), _short(r.digest)) for r in rows])


def render_diff(d: DiffResult) -> None:
    """Show a diff as sections of changed keys."""
    if d.same:
        line(f"{_plain(d.a)} and {_plain(d.b)} have the same files, params, metrics and "
             "lineage")
        return
    line(f"--- {_plain(d.a)}\n+++ {_plain(d.b)}")
    for title, section in (("params", d.params), ("metrics", d.metrics),
                           ("lineage", d.lineage), ("metadata", d.meta)):
        if section:
            line(f"{title}:")
            for key, change in section.items():
                line(f"  {_plain(key)}: {_plain(_value(change['a']))} -> "
                     f"{_plain(_value(change['b']))}")
    if any(d.files.values()):
        line("files:")
        for f in d.files["added"]:
            line(f"  + {_plain(f['path'])}  {_short(f['digest'])}")
        for f in d.files["removed"]:
            line(f"  - {_plain(f['path'])}  {_short(f['digest'])}")
        for f in d.files["changed"]:
            line(f"  ~ {_plain(f['path'])}  {_short(f['a']['digest'])} -> "
                 f"{_short(f['b']['digest'])}")


def render_change(result: ChangeResult, headline: str) -> None:
    """Say what a lifecycle command did, then each event it recorded."""
    if headline:
        line(headline)
    for e in result.events:
        if e.action in ("promote", "archive", "rollback"):
            why = f" ({_plain(e.reason)})" if e.reason else ""
            line(f"  v{e.version}: {_plain(str(e.from_stage))} -> {_plain(str(e.to_stage))}"
                 f"{why}")


def warn_failed_hooks(hooks: list[HookResult]) -> None:
    """Report failed post hooks on stderr (the change itself stands)."""
    for h in hooks:
        if not h.ok:
            message(f"warning: {h.when} hook {_plain(h.target)} failed: {_plain(h.detail)}")


def render_events(events: list[EventRecord], cursor: str) -> None:
    """Print events one per line, then the cursor for the next call (on stderr)."""
    for e in events:
        version = "" if e.version is None else f"@{e.version}"
        move = (f" {_plain(e.from_stage or '-')} -> {_plain(e.to_stage)}" if e.to_stage
                else "")
        why = f"  ({_plain(e.reason)})" if e.reason else ""
        line(f"{_plain(e.time[:19])}  {_plain(e.model)}{version}  {_plain(e.action)}{move}  "
             f"by {_plain(e.actor)}{why}")
    message(f"cursor: {_plain(cursor)}")


def render_pull(r: PullResult) -> None:
    """Say what ``pull`` wrote."""
    line(f"Pulled {_plain(r.ref)} into {_plain(str(r.dest))}: {r.written} file(s) written, "
          f"{r.unchanged} already up to date")


def render_fsck(r: FsckReport) -> None:
    """Print one line per problem (stdout) and the verdict."""
    for p in r.problems:
        line(f"{_plain(p.path)}: {_plain(p.message)}")
    for n in r.notes:
        message(f"note: {_plain(n.path)}: {_plain(n.message)}")
    summary = (f"{r.objects} objects, {r.models} models, {r.versions} versions, "
               f"{r.events} events")
    if r.ok:
        message(f"fsck: ok ({summary})")
    else:
        message(f"fsck: {len(r.problems)} problem(s) ({summary})")


def render_gc(r: GcReport) -> None:
    """List what gc removed or would remove."""
    verb = "would remove" if r.dry_run else "removed"
    for oid in r.objects:
        line(f"{verb} object {oid}")
    for path in r.tmp_files:
        line(f"{verb} temporary file {path}")
    for path in r.locks:
        line(f"{verb} stale lock {path}")
    message(f"gc: {verb} {len(r.objects)} object(s) ({human_size(r.bytes_freed)}), "
            f"{len(r.tmp_files)} temporary file(s), {len(r.locks)} stale lock(s)")


def render_history(name: str, events: list[EventRecord]) -> None:
    """Show a model's events as a table, newest first."""
    line(f"history of {_plain(name)}")
    _print_columns([("seq", "time", "actor", "action", "version", "from", "to", "reason")] + [
        (str(e.seq), e.time[:19], e.actor, e.action,
         "-" if e.version is None else f"v{e.version}",
         e.from_stage or "-", e.to_stage or "-", e.reason or "-") for e in events])


class RichProgress:
    """A rich progress bar on stderr, implementing :class:`modelreg.types.Progress`."""

    def __init__(self, description: str) -> None:
        # Shown on a terminal: control characters escaped, as every line is.
        self.description = _plain(description)
        self._bar: RichProgressBar | None = None
        self._task: Any = None

    def start(self, total: int) -> None:
        """Draw the bar for ``total`` bytes."""
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        )
        self._bar.start()
        # The description is rendered as rich markup: a name like "[red]x" stays text.
        self._task = self._bar.add_task(escape(self.description), total=total)

    def advance(self, n: int) -> None:
        """Move the bar by ``n`` bytes."""
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def finish(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_for_stderr(description: str) -> RichProgress | None:
    """Return a progress bar when stderr is a terminal, else None."""
    return RichProgress(description) if sys.stderr.isatty() else None


def render_aliases(model: str, aliases: dict[str, int]) -> None:
    """List a model's aliases, one ``ALIAS<TAB>NAME@N`` per line (or say there are none)."""
    if not aliases:
        message(f"{_plain(model)} has no aliases")
    for alias, version in aliases.items():
        line(f"{_plain(alias)}\t{_plain(model)}@{version}")


def render_bundle_written(path: Path) -> None:
    """Say which bundle file ``export --to bundle`` wrote."""
    line(f"Wrote {path}")


def render_export(result: Any) -> None:
    """Say what ``export --to onnx`` made, with its parity figures (an ``ExportResult``)."""
    p = result.parity
    v = result.result.version
    line(f"Exported {result.source} to {v.ref} (ONNX, {human_size(v.artifact.size)}); "
         f"parity over {p['samples']} samples: max abs error {p['max_abs_err']:.3g}, "
         f"max rel error {p['max_rel_err']:.3g}")


def render_bench(result: Any, record: str | None, max_p95_ms: float | None) -> None:
    """Show latency per batch size (a ``BenchResult``), and the check recorded, if any."""
    line(f"{result.ref}: ONNX Runtime latency")
    for r in result.results:
        line(f"  batch {r.batch_size:>5}: p50 {r.p50_ms:.3f} ms  p95 {r.p95_ms:.3f} ms"
             f"  p99 {r.p99_ms:.3f} ms  {r.throughput_rows_per_s:.0f} rows/s ({r.runs} runs)")
    if record is not None and max_p95_ms is not None:
        worst = max(r.p95_ms for r in result.results)
        verdict = "passed" if worst <= max_p95_ms else "failed"
        line(f"recorded check {record} {verdict} (p95 {worst:.3f} ms, limit {max_p95_ms} ms)")


def render_signature_changes(a: str, b: str, changes: Sequence[Any]) -> None:
    """One line per signature change from A to B, marked BREAKING or compatible."""
    if not changes:
        line(f"{a} and {b} have equivalent signatures")
    for c in changes:
        line(f"{'BREAKING' if c.breaking else 'compatible'}  {c.message}")


def render_validation(report: Any) -> None:
    """One line per problem (stdout), then the verdict (stderr), for a ``ValidationReport``."""
    for problem in report.problems:
        line(problem.message)
    rest = report.total_problems - len(report.problems)
    if rest > 0:
        line(f"... and {rest} more problem(s)")
    what = f"{report.rows} row(s)" if report.rows is not None else "payload"
    message(f"valid ({what}, {report.format})" if report.ok else
            f"invalid: {report.total_problems} problem(s) ({report.format})")


def render_contract(report: ContractReport) -> None:
    """One line per pinned reference and per example: ``ok  `` or ``FAIL``."""
    for r in report.results:
        line(f"{'ok  ' if r.ok else 'FAIL'} {r.kind} {_plain(r.subject)} ({_plain(r.ref)}): "
             f"{_plain(r.message)}")
