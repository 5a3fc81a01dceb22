"""The deployment handshake, end to end, through the Python API.

A scientist registers and stages a version; CI records two checks; a second person
approves; the version goes to production. A newer version then displaces it, a rollback
brings it back, and the history shows every step with its actor and reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import modelreg

POLICY = """
[stages.production]
exclusive = true
require_approvals = 1
four_eyes = true
require_checks = ["latency", "integration"]
"""

SCIENTIST, CI, ENGINEER = "scientist@example.com", "ci@example.com", "engineer@example.com"


def ship(reg: modelreg.Registry, ref: str) -> None:
    """Stage a version, gate it the way CI and a reviewer would, and promote it."""
    modelreg.promote(ref, "staging", registry=reg, actor=SCIENTIST, reason="ready for CI")
    modelreg.check(ref, "latency", passed=True, value=8.4, details="p95 ms", registry=reg,
                   actor=CI)
    modelreg.check(ref, "integration", passed=True, registry=reg, actor=CI)
    try:
        modelreg.approve(ref, registry=reg, actor=SCIENTIST)
    except modelreg.ModelregError as exc:
        print(f"  self-approval refused: {exc}")
    modelreg.approve(ref, registry=reg, actor=ENGINEER, comment="numbers look right")
    done = modelreg.promote(ref, "production", registry=reg, actor=SCIENTIST, reason="ship")
    for e in done.events:
        print(f"  {e.model}@{e.version}: {e.from_stage} -> {e.to_stage} ({e.reason})")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelreg-handshake-") as tmp:
        project = Path(tmp)
        reg, _ = modelreg.init(project)
        reg.layout.config_file.write_text(POLICY)
        reg = modelreg.open_registry(reg.layout.root)

        for n in (4, 5):
            weights = project / f"eta-{n}.bin"
            weights.write_bytes(bytes([n]) * 1024)
            v = modelreg.register("eta", [weights], registry=reg, actor=SCIENTIST,
                                  params={"n": n}, git=False).version
            print(f"registered {v.ref}")
            try:
                modelreg.promote(v.ref, "production", registry=reg, actor=SCIENTIST)
            except modelreg.ModelregError as exc:
                print(f"  straight to production refused: {exc}")
            ship(reg, v.ref)
            print(f"  production is now {modelreg.show('eta@production', registry=reg).ref}")

        back = modelreg.rollback("eta", registry=reg, actor=ENGINEER, reason="p95 regressed")
        print(f"rolled back: production is {back.version.ref} again")

        _, events = modelreg.history("eta", registry=reg)
        print("history (oldest first):")
        for e in reversed(events):
            move = f" {e.from_stage or '-'} -> {e.to_stage}" if e.to_stage else ""
            why = f" ({e.reason})" if e.reason else ""
            print(f"  {e.seq:>2} {e.actor:<22} {e.action:<8} v{e.version}{move}{why}")
        report = modelreg.fsck(registry=reg)
        print(f"fsck ok={report.ok}: {report.events} events")
        if not report.ok:
            raise SystemExit(6)


if __name__ == "__main__":
    main()
