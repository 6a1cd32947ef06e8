# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""What gating the final job on every work costs the request, in bytes.

The final work is released by an ``AndCondition`` with one clause per main
work (``doc/design.md``, "Final job"). The narrower rule it replaced gated
only on the works no other work depends on, which let the final job start
while jobs without children in other works were still running. This script
translates the synthetic workflow (`synthetic_workflow`) once per rule in
this process, serialises each request as it would be sent (iDDS
``json_dumps``, maps zipped, then gzip as panda-client does) and prints
the number of works, the clauses of each rule and the request bytes.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from idds.common.utils import json_dumps
from idds.workflowv2.workflow import AndCondition

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prepare_helpers import make_config
from synthetic_workflow import build_workflow

from lsst.ctrl.bps.panda import request_encoding
from lsst.ctrl.bps.panda.panda_workflow import workflow_labels
from lsst.ctrl.bps.panda.service_settings import ServiceSettings
from lsst.ctrl.bps.panda.workflow_plan import plan_workflow


class _SinkCondition(AndCondition):
    """The replaced rule: of the works given, those no other depends on."""

    def __init__(self, conditions: list[Any], true_works: list[Any]) -> None:
        works = [condition.__self__ for condition in conditions]  # bound ``work.is_terminated``
        parents = {name for work in works for name in work.dependency_tasks or ()}
        sinks = [work for work in works if work.task_name not in parents]
        super().__init__(conditions=[w.is_terminated for w in sinks], true_works=true_works)


def measure(rule: str, n_jobs: int, work_dir: Path) -> dict[str, int]:
    """Translate and serialise the synthetic workflow with one rule.

    Parameters
    ----------
    rule : `str`
        ``"all"`` (the package's) or ``"sinks"`` (the replaced rule,
        put in place of the encoder's condition for this call).
    n_jobs : `int`
        Jobs in the synthetic workflow.
    work_dir : `pathlib.Path`
        Scratch directory.

    Returns
    -------
    figures : `dict` [`str`, `int`]
        Works, condition clauses, request JSON bytes and gzip bytes.
    """
    workflow = build_workflow(n_jobs, work_dir, shape="short")  # the shape of its figures in doc/design.md
    config = make_config(work_dir)
    settings = ServiceSettings.from_config(config, workflow_labels(workflow))
    plan = plan_workflow(settings, workflow)
    with mock.patch.object(
        request_encoding, "AndCondition", _SinkCondition if rule == "sinks" else AndCondition
    ):
        request = request_encoding.encode_request(plan, 0)
    template = request.workflow.template
    (condition,) = template.conditions.values()
    document = json_dumps(request.workflow).encode()
    return {
        "works": len(template.works),
        "clauses": len(condition.conditions),
        "json_bytes": len(document),
        "gzip_bytes": len(gzip.compress(document, 9)),
    }


def main(argv: list[str] | None = None) -> None:
    """Print the figures of both rules.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Command-line arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 1_000_000])
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    print("jobs      rule   works clauses    json_bytes    gzip_bytes")
    for n_jobs in args.jobs:
        figures = {}
        for rule in ("sinks", "all"):
            with tempfile.TemporaryDirectory(prefix="final_gate_") as tmp:
                figures[rule] = measure(rule, n_jobs, Path(tmp))
            f = figures[rule]
            print(
                f"{n_jobs:<9d} {rule:6s} {f['works']:5d} {f['clauses']:7d} "
                f"{f['json_bytes']:13d} {f['gzip_bytes']:13d}"
            )
        extra = figures["all"]["gzip_bytes"] - figures["sinks"]["gzip_bytes"]
        print(f"{n_jobs:<9d} cost: {extra:+d} gzip bytes ({extra / figures['sinks']['gzip_bytes']:+.4%})")


if __name__ == "__main__":
    main()
