"""Helpers of the realstack tier: hand-built iDDS workflows, reply shapes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

UNKNOWN_ID = 987654321
"""A request id no test creates."""

Config = Callable[..., Any]
"""``make_config(name, **overrides) -> BpsConfig`` (fixture)."""


def unique_name(tag: str) -> str:
    """A workflow name no other test or session uses."""
    return f"rs_{tag}_{time.strftime('%Y%m%d%H%M%S')}_{os.getpid()}_{time.monotonic_ns() % 10**6}"


def make_work(name: str, index: int, label: str) -> Any:
    """A small `DomaPanDAWork` named ``<name>_<index>_<label>_01``."""
    from idds.doma.workflowv2.domapandawork import DomaPanDAWork

    return DomaPanDAWork(
        executable="bash -c 'echo ${IN/L}'",
        primary_input_collection={"scope": "pseudo_dataset", "name": f"pseudo_input_collection#{index}"},
        output_collections=[{"scope": "pseudo_dataset", "name": f"pseudo_output_collection#{index}"}],
        log_collections=[],
        dependency_map=[],
        task_name=f"{name}_{index:02d}_{label}_01",
        task_queue="LOCAL",
        task_log={
            "destination": "local",
            "value": "log.tgz",
            "dataset": "PandaJob_#{pandaid}/",
            "token": "local",
            "param_type": "log",
            "type": "template",
        },  # fmt: skip
        encode_command_line=True,
        task_rss=1000,
        task_cloud="LOCAL",
        task_site="LOCAL",
        task_priority=900,
        core_count=1,
        processing_type="testpipeline",
        task_type="lsst",
        prodSourceLabel="managed",
        vo="Rubin",
        maxattempt=1,
        maxwalltime=600,
    )


def chain_workflow(name: str, jobs: int = 2) -> Any:
    """Two works ``isr`` -> ``calib``; ``calib_jobN`` needs ``isr_jobN``.

    Every job runs ``echo`` (harmless wherever it runs).
    """
    from idds.workflowv2.workflow import Workflow

    first = make_work(name, 1, "isr")
    first.dependency_map = [{"name": f"isr_job{j}", "order_id": j, "dependencies": []} for j in range(jobs)]
    second = make_work(name, 2, "calib")
    second.dependency_map = [
        {"name": f"calib_job{j}", "order_id": j,
         "dependencies": [{"task": first.get_work_name(), "inputname": f"isr_job{j}"}]}
        for j in range(jobs)
    ]  # fmt: skip
    second.dependency_tasks = [first.get_work_name()]
    workflow = Workflow(name=name)
    workflow.add_work(first)
    workflow.add_work(second)
    return workflow


def payload(ret: Any) -> Any:
    """``(0, [True, x])`` -> ``x``; AssertionError for anything else."""
    assert isinstance(ret, tuple | list) and len(ret) == 2, ret
    assert ret[0] == 0, ret
    assert isinstance(ret[1], list) and len(ret[1]) == 2 and ret[1][0] is True, ret
    return ret[1][1]


def enum_name(value: Any) -> Any:
    """``_name_`` of an enum dict as it arrives over the wire."""
    if isinstance(value, dict) and "attributes" in value:
        return value["attributes"].get("_name_")
    return value


def shape(value: Any) -> Any:
    """The structure of a reply: dict keys and JSON type names, recursively.

    Lists become the sorted set of their items' shapes (as strings).
    """
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return ["list", sorted({repr(shape(v)) for v in value})]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def shape_differences(real: Any, local: Any, path: str = "", null_ok: bool = True) -> list[str]:
    """Where two replies differ in keys or types, as readable lines.

    With ``null_ok`` a null on either side matches any value (the real
    server's fields are null until its daemons fill them).
    """
    if null_ok and (real is None or local is None):
        return []
    if isinstance(real, dict) and isinstance(local, dict):
        out = [f"{path}.{k}: only real" for k in sorted(set(real) - set(local))]
        out += [f"{path}.{k}: only local" for k in sorted(set(local) - set(real))]
        for key in sorted(set(real) & set(local)):
            out += shape_differences(real[key], local[key], f"{path}.{key}", null_ok)
        return out
    if isinstance(real, list | tuple) and isinstance(local, list | tuple):
        out = []
        for i, (left, right) in enumerate(zip(real, local, strict=False)):
            out += shape_differences(left, right, f"{path}[{i}]", null_ok)
        return out
    if shape(real) != shape(local):
        return [f"{path}: real {shape(real)} vs local {shape(local)}"]
    return []


def service(config: Any) -> Any:
    """A `PanDAService` as ctrl_bps builds it."""
    from lsst.ctrl.bps.panda import PanDAService

    return PanDAService(config)


def prepare_and_submit(config: Any, generic_workflow: Any) -> tuple[Any, Any]:
    """prepare + submit as ``bps submit`` does; (service, workflow)."""
    svc = service(config)
    workflow = svc.prepare(config, generic_workflow, out_prefix=config["submitPath"])
    return svc, svc.submit(workflow)


def three_label(name: str) -> Any:
    """ctrl_bps's 3-label test workflow (19 jobs), no final job."""
    from lsst.ctrl.bps.tests.gw_test_utils import make_3_label_workflow

    return make_3_label_workflow(name, False)


def five_label(name: str) -> Any:
    """ctrl_bps's 5-label test workflow (uneven), no final job."""
    from lsst.ctrl.bps.tests.gw_test_utils import make_5_label_workflow

    return make_5_label_workflow(name, False, uneven=True)
