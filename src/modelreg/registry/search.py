"""``modelreg search``: versions across models that match a filter, in the spirit of MLflow's.

The filter language (docs/cli.md, search)::

    filter     := condition ("and" condition)*
    condition  := key op value | key "in" "(" value ("," value)* ")"
    key        := metrics.NAME | params.NAME | tags.NAME | name | version | stage
                | created_by | created_at | description
    op         := = | != | < | <= | > | >= | like | ilike
    value      := a number | 'text' | "text"

Everything but ``description`` is answered from each model's version index: its entries
keep the stage, creator and date, and the metrics, params and tags each version was
registered with (edited tags too). A manifest is read only for ``description``, and for
versions registered before the index kept their lineage (a store migrated from format 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelregError, UsageError

if TYPE_CHECKING:
    from modelreg.registry.core import Registry
    from modelreg.registry.state import VersionEntry

__all__ = ["INDEX_KEYS", "Condition", "SearchHit", "parse_filter", "search"]

INDEX_KEYS = ("name", "version", "stage", "created_by", "created_at")
MANIFEST_KEYS = ("description",)
PREFIXES = ("metrics", "params", "tags")
_OPS = ("<=", ">=", "!=", "=", "<", ">")
_TOKEN = re.compile(r"""\s*(?:(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])
                        |(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
                        |(?P<op><=|>=|!=|=|<|>)
                        |(?P<punct>[(),])
                        |(?P<word>[A-Za-z_][\w.\-]*))""", re.VERBOSE)


@dataclass(frozen=True)
class Condition:
    """One comparison of the filter."""

    key: str
    op: str
    values: tuple[Any, ...]

    @property
    def needs_manifest(self) -> bool:
        """Whether the key lives in the manifest rather than the version index."""
        return self.key.split(".", 1)[0] in PREFIXES or self.key in MANIFEST_KEYS


@dataclass(frozen=True)
class SearchHit:
    """A version that matched, with what the filter and the order read of it."""

    name: str
    version: int
    stage: str
    aliases: list[str]
    created_at: str
    created_by: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    """Read only when the filter or the order names it (not in the JSON)."""

    @property
    def ref(self) -> str:
        """``NAME@N``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/cli.md, search)."""
        return {"ref": self.ref, "name": self.name, "version": self.version,
                "stage": self.stage, "aliases": self.aliases, "created_at": self.created_at,
                "created_by": self.created_by, "metrics": self.metrics, "params": self.params,
                "tags": self.tags}


def _problem(text: str, at: int, what: str) -> UsageError:
    return UsageError(f"filter: {what} at position {at + 1}:\n  {text}\n  {' ' * at}^")


def _check_key(key: str, text: str, at: int) -> str:
    head, _, rest = key.partition(".")
    if head in PREFIXES and rest:
        return key
    if key in INDEX_KEYS or key in MANIFEST_KEYS:
        return key
    known = ", ".join([*INDEX_KEYS, *MANIFEST_KEYS, *(f"{p}.NAME" for p in PREFIXES)])
    raise _problem(text, at, f"unknown key {key!r} (the keys are {known})")


def _literal(match: re.Match[str]) -> Any:
    if match.group("num") is not None:
        raw = match.group("num")
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    raw = match.group("str")
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def parse_filter(text: str) -> list[Condition]:
    """Parse a filter into its conditions (all must hold).

    Raises:
        UsageError: The filter is malformed (the message shows the position) or names a key
            that does not exist (the message lists the keys).
    """
    tokens: list[tuple[str, Any, int, re.Match[str]]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _problem(text, pos + len(text[pos:]) - len(text[pos:].lstrip()),
                           "unexpected character")
        kind = m.lastgroup or ""
        start = m.start(kind)
        tokens.append((kind, m.group(kind), start, m))
        pos = m.end()
    conditions: list[Condition] = []
    i = 0

    def expect(kinds: tuple[str, ...], what: str) -> tuple[str, Any, int, re.Match[str]]:
        nonlocal i
        if i >= len(tokens):
            raise _problem(text, len(text), f"expected {what}, the filter ended")
        tok = tokens[i]
        if tok[0] not in kinds:
            raise _problem(text, tok[2], f"expected {what}, found {tok[1]!r}")
        i += 1
        return tok

    if not tokens:
        raise _problem(text, 0, "empty filter")
    while True:
        key_tok = expect(("word",), "a key")
        key = _check_key(key_tok[1], text, key_tok[2])
        if i < len(tokens) and tokens[i][0] == "word" and tokens[i][1].lower() in (
                "like", "ilike", "in"):
            op = tokens[i][1].lower()
            i += 1
        else:
            op = expect(("op",), "a comparison (=, !=, <, <=, >, >=, like, in)")[1]
        if op == "in":
            expect(("punct",), "'('")
            values = []
            while True:
                tok = expect(("num", "str"), "a value")
                values.append(_literal(tok[3]))
                sep = expect(("punct",), "',' or ')'")
                if sep[1] == ")":
                    break
                if sep[1] != ",":
                    raise _problem(text, sep[2], f"expected ',' or ')', found {sep[1]!r}")
            conditions.append(Condition(key, op, tuple(values)))
        else:
            tok = expect(("num", "str"), "a value ('text' or a number)")
            value = _literal(tok[3])
            if op in ("like", "ilike") and not isinstance(value, str):
                raise _problem(text, tok[2], "like takes a 'text' pattern")
            conditions.append(Condition(key, op, (value,)))
        if i >= len(tokens):
            return conditions
        joiner = tokens[i]
        if joiner[0] != "word" or joiner[1].lower() != "and":
            raise _problem(text, joiner[2], f"expected 'and', found {joiner[1]!r}")
        i += 1


def _like(pattern: str, flags: int) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts) + r"\Z", flags | re.DOTALL)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if actual is None:
        return op == "!="
    if op in ("like", "ilike"):
        return bool(_like(str(wanted), re.IGNORECASE if op == "ilike" else 0)
                    .match(str(actual)))
    a, w = _number(actual), _number(wanted)
    left: Any
    right: Any
    if a is not None and w is not None and not (isinstance(actual, str)
                                                and isinstance(wanted, str)):
        left, right = a, w
    else:
        left, right = str(actual), str(wanted)
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    try:
        return bool({"<": left < right, "<=": left <= right, ">": left > right,
                     ">=": left >= right}[op])
    except TypeError:
        return False


def _holds(cond: Condition, hit: SearchHit) -> bool:
    actual = _field(hit, cond.key)
    if cond.op == "in":
        return any(_compare(actual, "=", v) for v in cond.values)
    return _compare(actual, cond.op, cond.values[0])


def search(reg: Registry, text: str, *, model: str | None = None,
           order_by: str | None = None, limit: int | None = None,
           lineage: bool = False) -> list[SearchHit]:
    """Return the versions that match ``text``, ordered and limited.

    Args:
        reg: The registry.
        text: The filter (empty or None: every version).
        model: Only this model's versions.
        order_by: ``KEY [ASC|DESC]`` (default: name, then version, newest first).
        limit: At most this many.
        lineage: Give every hit its metrics, params and tags, even when the filter and the
            order name none (the UI's versions table).

    Raises:
        UsageError: A malformed filter or order, or an unknown key.
        NotFound: ``model`` does not exist.
    """
    conditions = parse_filter(text) if text and text.strip() else []
    order_key, descending = "version", True
    if order_by:
        parts = order_by.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise UsageError(f"--order-by takes KEY [ASC|DESC], not {order_by!r}")
        order_key = _check_key(parts[0], order_by, 0)
        descending = len(parts) == 2 and parts[1].lower() == "desc"
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    cheap = [c for c in conditions if not c.needs_manifest]
    costly = [c for c in conditions if c.needs_manifest]
    needs_manifest = lineage or bool(costly) or order_key.split(".", 1)[0] in PREFIXES \
        or order_key in MANIFEST_KEYS
    names = [model] if model else [m.name for m in reg.list_models()]
    hits: list[SearchHit] = []
    for name in names:
        state = reg.require_state(name)
        aliases: dict[int, list[str]] = {}
        for alias, head in sorted(state.aliases.items()):
            aliases.setdefault(head.version, []).append(alias)
        for version, entry in reg.iter_entries(state):
            hit = SearchHit(state.model, version, entry.stage, aliases.get(version, []),
                            entry.created_at, entry.created_by)
            if not all(_holds(c, hit) for c in cheap):
                continue
            if needs_manifest:
                found = _lineage_of(reg, hit, entry, describe="description" in {
                    c.key for c in costly} or order_key == "description")
                if found is None or not all(_holds(c, found) for c in costly):
                    continue
                hit = found
            hits.append(hit)
    if order_by:
        present = [h for h in hits if _field(h, order_key) is not None]
        absent = [h for h in hits if _field(h, order_key) is None]

        def sort_key(hit: SearchHit) -> tuple[int, float, str]:
            # Numbers before texts, each in their own order; versions without the key last.
            value = _field(hit, order_key)
            number = _number(value)
            return (0, number, "") if number is not None else (1, 0.0, str(value))

        present.sort(key=sort_key, reverse=descending)
        hits = present + absent
    else:
        hits.sort(key=lambda h: (h.name.lower(), -h.version))
    return hits[:limit] if limit is not None else hits


def _field(hit: SearchHit, key: str) -> Any:
    """The value of a filter key for a version (None where it has none)."""
    head, _, rest = key.partition(".")
    if head in PREFIXES and rest:
        return getattr(hit, head).get(rest)
    return getattr(hit, key, None)


def _lineage_of(reg: Registry, hit: SearchHit, entry: VersionEntry,
                describe: bool) -> SearchHit | None:
    """The hit with its metrics, params and tags, and its description if asked for.

    From the version index when it keeps them (versions registered by format 2), else from
    the manifest (one read per version, as for a store migrated from format 1).
    """
    if entry.search is not None and not describe:
        tags = entry.meta.get("tags", entry.search.get("t", {}))
        return replace(hit, metrics=dict(entry.search.get("m", {})),
                       params=dict(entry.search.get("p", {})), tags=dict(tags))
    try:
        info = reg.show(hit.ref)
    except ModelregError:
        return None
    return replace(hit, metrics=dict(info.lineage.metrics), params=dict(info.lineage.params),
                   tags=dict(info.tags), description=info.description)
