#!/usr/bin/env bash
# The project's main job: a real three-task AddTask pipeline through
# `bps submit` -> ctrl_bps_panda -> the local PanDA service -> pipetask,
# then `bps report` and a check of the outputs in the butler.
#
# Environment knobs: NDET (detectors, default 3), DEMO_DIR (scratch dir,
# default build/demo), WORKERS (jobs at once, default: CPU count),
# DEMO_TIMEOUT (seconds to wait for the run, default 1800).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
export PATH="$venv/bin:$PATH"
export PANDA_BEHIND_REAL_LB=1
# bps commands without a submit file (ping, report) use this WMS.
export BPS_WMS_SERVICE_CLASS=lsst.ctrl.bps.panda.PanDAService
ndet=${NDET:-3}
demo=$(mkdir -p "${DEMO_DIR:-$here/build/demo}" && cd "${DEMO_DIR:-$here/build/demo}" && pwd)
state="$demo/panda-local"

say() { printf '\n==> %s\n' "$*"; }

# A previous demo's service (if any) is stopped before its directory goes.
[ -d "$state" ] && panda-local stop --state-dir "$state" >/dev/null 2>&1 || true
rm -rf "$demo" && mkdir -p "$demo"
export REPO="$demo/repo"
# The run index of this demo stays inside the demo directory.
export CTRL_BPS_PANDA_RUN_INDEX="$demo/runs.jsonl"

say "Writing the demo files and a butler repo with $ndet detector(s) into $demo"
python "$here/demo/prepare.py" "$demo" --detectors "$ndet"

say "Starting the local PanDA service (state in $state)"
workers=()
[ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")
panda-local start --state-dir "$state" --port 0 "${workers[@]}"
trap 'say "Stopping the local PanDA service"; panda-local stop --state-dir "$state" || true' EXIT
eval "$(panda-local env --state-dir "$state")"
bps ping

say "bps submit $demo/bps_demo.yaml"
(cd "$demo" && bps submit bps_demo.yaml) 2>&1 | tee "$demo/submit.log"
run_id=$(sed -n 's/^Run Id: *//p' "$demo/submit.log" | tail -1)
[ -n "$run_id" ] || { echo "bps submit printed no Run Id" >&2; exit 1; }

say "Waiting for run $run_id (job logs: $state)"
status=0
python "$here/demo/wait_run.py" "$run_id" --timeout "${DEMO_TIMEOUT:-1800}" || status=$?

say "bps report --id $run_id"
bps report --id "$run_id"
[ "$status" -eq 0 ] || { echo "run $run_id did not succeed (wait status $status)" >&2; exit 1; }

say "Checking the outputs in the butler"
python "$here/demo/check_outputs.py" "$REPO" --detectors "$ndet"
say "Demo finished: every job succeeded and the outputs are in $REPO"
