#!/usr/bin/env bash
# The CI side of the deployment handshake: poll the registry's event feed, and for every
# version that entered staging, pull it, run its integration payload through the signature
# check and the model, bench it, and record both results as checks. An engineer then
# approves, and `modelreg promote NAME@N --to production` passes the policy.
#
# Environment:
#   MODELREG_DIR      the store (or run inside a project that has one)
#   MODELREG_ACTOR    who records the checks (e.g. ci@example.com)
#   CURSOR_FILE       where the feed position is kept between runs (default .modelreg-cursor)
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

status=0
for ref in $staged; do
    echo "== $ref entered staging"
    work=$(mktemp -d)
    modelreg pull "$ref" "$work/model" >/dev/null
    payload=${PAYLOAD:-}
    if [[ -z "$payload" ]]; then
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
)
    fi
    if [[ -n "$payload" ]] && modelreg predict "$ref" "$payload" >"$work/outputs.json"; then
        modelreg check "$ref" integration --pass --details "predict on $(basename "$payload")"
    else
        modelreg check "$ref" integration --fail --details "no payload, or predict failed"
        status=1
    fi
    modelreg bench "$ref" --batch-size 1 --batch-size 32 --duration 1 \
        --record latency --max-p95-ms "$MAX_P95_MS"
    # bench records the verdict and succeeds either way; the gate fails on a slow model.
    if ! modelreg show "$ref" --json | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["checks"]["latency"]["passed"] else 1)'; then
        status=1
    fi
    rm -rf "$work"
done

printf '%s' "$feed" | python3 -c 'import json, sys; print(json.load(sys.stdin)["cursor"])' \
    >"$CURSOR_FILE"
exit $status
