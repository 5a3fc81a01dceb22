#!/usr/bin/env bash
# The CI side of the deployment handshake: poll the registry's event feed, and for every
# version that entered staging, pull it, run its integration payload through the signature
# check and the model, bench it, and record both results as checks. An engineer then
# approves, and `modelreg promote NAME@N --to production` passes the policy.
#
# Environment:
#   MODELREG_DIR      the store (or run inside a project that has one)
#   MODELREG_ACTOR    who records the checks (e.g. ci@example.com)
#   CURSOR_FILE       where the feed position is kept between runs (default .modelreg-cursor);
#                     CURSOR_FILE.done lists the versions handled since it was last saved
#
# Exit status: 0 when every new staging version passed, 1 when one failed a check or could
# not be checked (each such version gets a failed check recorded; the others still run).
#   PAYLOAD           an integration payload to send (default: the version's stored example)
#   MAX_P95_MS        the latency budget (default 50)
set -euo pipefail

CURSOR_FILE=${CURSOR_FILE:-.modelreg-cursor}
MAX_P95_MS=${MAX_P95_MS:-50}
since=()
[[ -s "$CURSOR_FILE" ]] && since=(--since "$(cat "$CURSOR_FILE")")

feed=$(modelreg events "${since[@]}" --json)
staged=$(printf '%s' "$feed" | python3 -c '
import json, sys
feed = json.load(sys.stdin)
for e in feed["events"]:
    if e["action"] in ("promote", "rollback") and e["to"] == "staging":
        print(e["model"] + "@" + str(e["version"]))
')

# Versions already handled in a run that stopped before it could save the cursor (killed, a
# full disk): skipped, so no version is benched or checked twice. Cleared with each cursor.
DONE_FILE="$CURSOR_FILE.done"
touch "$DONE_FILE"

status=0
for ref in $staged; do
    if grep -qxF "$ref" "$DONE_FILE"; then
        continue
    fi
    echo "== $ref entered staging"
    work=$(mktemp -d)
    # Every step below may fail for one version (a pickle cannot be run or benched, a pull
    # can fail); that version gets a failed check and the gate goes on with the next one.
    # Under `set -e` a failing command would stop the script before it saves its cursor,
    # and every later run would redo every version seen since.
    payload=${PAYLOAD:-}
    if [[ -z "$payload" ]] && modelreg pull "$ref" "$work/model" >/dev/null; then
        # The version's stored input example, read back through its digest check.
        payload=$(python3 - "$ref" "$work" <<'PY'
import sys
from pathlib import Path
import modelreg
ref, work = sys.argv[1], Path(sys.argv[2])
info = modelreg.show(ref)
if info.example is not None:
    data = modelreg.open_registry().objects.get_bytes(info.example.digest.split(":")[1])
    (work / info.example.path).write_bytes(data)
    print(work / info.example.path)
PY
) || payload=""
    fi
    if [[ -n "$payload" ]] && modelreg predict "$ref" "$payload" >"$work/outputs.json"; then
        modelreg check "$ref" integration --pass --details "predict on $(basename "$payload")" \
            || status=1
    else
        modelreg check "$ref" integration --fail --details "no payload, or predict failed" \
            || true
        status=1
    fi
    if modelreg bench "$ref" --batch-size 1 --batch-size 32 --duration 1 \
            --record latency --max-p95-ms "$MAX_P95_MS"; then
        # bench records the verdict and succeeds either way; the gate fails on a slow model.
        if ! modelreg show "$ref" --json | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["checks"]["latency"]["passed"] else 1)'; then
            status=1
        fi
    else
        # bench could not run the model at all (not ONNX: exit 7, or another failure).
        code=$?
        modelreg check "$ref" latency --fail --details "bench could not run it (exit $code)" \
            || true
        status=1
    fi
    rm -rf "$work"
    echo "$ref" >>"$DONE_FILE"
done

printf '%s' "$feed" | python3 -c 'import json, sys; print(json.load(sys.stdin)["cursor"])' \
    >"$CURSOR_FILE.tmp"
mv "$CURSOR_FILE.tmp" "$CURSOR_FILE"
: >"$DONE_FILE"
exit $status
