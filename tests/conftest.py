"""Test-wide set-up: keep panda-client offline before anything imports it."""

import os

os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
# Never let a test write into the real user's run index.
os.environ.setdefault(
    "CTRL_BPS_PANDA_RUN_INDEX",
    os.path.join(os.environ.get("TMPDIR", "/tmp"), "ctrl_bps_panda_test_runs.jsonl"),
)
