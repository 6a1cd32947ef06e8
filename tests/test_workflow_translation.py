# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Tests of the GenericWorkflow -> iDDS translation."""

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import networkx
import pytest
from idds.doma.workflowv2.domapandawork import DomaPanDAWork
from idds.workflowv2.workflow import AndCondition
from prepare_helpers import entries, generate, split_label_workflow, staged_files, translate, works

from lsst.ctrl.bps import (
    BpsConfig,
    GenericWorkflow,
    GenericWorkflowExec,
    GenericWorkflowFile,
    GenericWorkflowJob,
    GenericWorkflowLazyGroup,
    GenericWorkflowNodeType,
)
from lsst.ctrl.bps.panda.command_line import decode_hex
from lsst.ctrl.bps.panda.constants import RETRY_UNLESS_EXIT_ATTRIBUTE
from lsst.ctrl.bps.panda.exceptions import WorkflowTranslationError
from lsst.ctrl.bps.panda.service_settings import ServiceSettings
from lsst.ctrl.bps.panda.workflow_plan import even_slices
from lsst.ctrl.bps.tests.gw_test_utils import (
    make_3_label_workflow,
    make_3_label_workflow_groups_sort,
    make_3_label_workflow_noop_sort,
    make_5_label_workflow_2_groups,
    make_5_label_workflow_middle_groups,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from synthetic_workflow import build_workflow

SUFFIX = "+qgraphNodeId:+qgraphId:"


def _edges_by_name(generated: Any) -> Counter:
    """Every (parent job, child job) pair of all dependency maps, counted;
    names are mapped back to job names."""
    job_of = {entry["name"]: entry["name"].split("+")[0] for _, entry in entries(generated).values()}
    found: Counter = Counter()
    for _, entry in entries(generated).values():
        for dep in entry["dependencies"]:
            found[(job_of[dep["inputname"]], job_of[entry["name"]])] += 1
    return found


def _payload_edges(workflow: GenericWorkflow) -> set[tuple[str, str]]:
    """Expected payload edges, computed independently: flatten groups into
    one networkx graph (group -> its sources / sinks -> children), then
    connect each payload job to its nearest payload ancestors."""
    graph = networkx.DiGraph()
    kinds: dict[str, Any] = {}

    def add(wf: GenericWorkflow, prefix: str) -> tuple[list[str], list[str]]:
        sources, sinks = [], []
        ends: dict[str, tuple[list[str], list[str]]] = {}
        for name in wf.nodes:
            node = wf.get_job(name)
            if node.node_type == GenericWorkflowNodeType.GROUP:
                ends[name] = add(node, name)
            else:
                kinds[name] = node.node_type
                graph.add_node(name)
        for parent, child in wf.edges:
            for p in ends[parent][1] if parent in ends else [parent]:
                for c in ends[child][0] if child in ends else [child]:
                    graph.add_edge(p, c)
        for name in wf.nodes:
            if not any(True for _ in wf.predecessors(name)):
                sources.extend(ends[name][0] if name in ends else [name])
            if not any(True for _ in wf.successors(name)):
                sinks.extend(ends[name][1] if name in ends else [name])
        return sources, sinks

    add(workflow, "")
    expected = set()
    for name, kind in kinds.items():
        if kind != GenericWorkflowNodeType.PAYLOAD:
            continue
        stack, seen = list(graph.predecessors(name)), set()
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            if kinds[parent] == GenericWorkflowNodeType.PAYLOAD:
                expected.add((parent, name))
            else:
                stack.extend(graph.predecessors(parent))
    return expected


def _payload_jobs(workflow: GenericWorkflow) -> set[str]:
    names = set()
    for name in workflow.nodes:
        node = workflow.get_job(name)
        if node.node_type == GenericWorkflowNodeType.GROUP:
            names |= _payload_jobs(node)
        elif node.node_type == GenericWorkflowNodeType.PAYLOAD:
            names.add(name)
    return names


BUILDERS = {
    "3_label": lambda: make_3_label_workflow("wf", True),
    "3_label_no_final": lambda: make_3_label_workflow("wf", False),
    "noop_sort": lambda: make_3_label_workflow_noop_sort("wf", True),
    "groups_sort": lambda: make_3_label_workflow_groups_sort("wf", True),
    "5_label_2_groups": lambda: make_5_label_workflow_2_groups("wf", True),
    "5_label_2_groups_uneven": lambda: make_5_label_workflow_2_groups("wf", True, uneven=True),
    "5_label_middle_groups": lambda: make_5_label_workflow_middle_groups("wf", False, uneven=True),
}


@pytest.mark.parametrize("shape", sorted(BUILDERS))
@pytest.mark.parametrize("max_jobs", [1, 4, 10000])
def test_every_job_and_edge_once(tmp_path: Path, shape: str, max_jobs: int) -> None:
    workflow = BUILDERS[shape]()
    generated = generate(tmp_path, workflow, maxJobsPerTask=max_jobs)
    found = entries(generated)
    expected_jobs = _payload_jobs(workflow) | ({"pure_pseudoinput"} if workflow.get_final() else set())
    assert {name.split("+")[0] for name in found} == expected_jobs
    edges = _edges_by_name(generated)
    assert set(edges) == _payload_edges(workflow)
    assert set(edges.values()) <= {1}
    for work in works(generated):
        parent_tasks = {dep["task"] for entry in work.dependency_map for dep in entry["dependencies"]}
        assert set(work.dependency_tasks) == parent_tasks - {work.task_name}
        assert len(work.dependency_map) <= max_jobs
        for entry in work.dependency_map:
            for dep in entry["dependencies"]:
                assert found[dep["inputname"]][0] == dep["task"]


@pytest.mark.parametrize("shape", ["3_label", "groups_sort"])
def test_maps_pass_the_idds_setter(tmp_path: Path, shape: str) -> None:
    """The generator stores maps without the setter's second pass; the
    setter's own checks must accept them and record the same counts."""
    for work in works(generate(tmp_path, BUILDERS[shape](), maxJobsPerTask=4)):
        check = DomaPanDAWork(dependency_map=[])
        check.dependency_map = list(work.dependency_map)
        assert (check.num_inputs, check.num_dependencies) == (work.num_inputs, work.num_dependencies)
        assert sorted(check.dependency_tasks) == sorted(work.dependency_tasks)


def test_simple_workflow_names_and_fields(tmp_path: Path) -> None:
    generated = generate(tmp_path, make_3_label_workflow("wf", True))
    assert list(generated.tasks) == [
        "wf_01_pipetaskInit_01",
        "wf_02_label1_01",
        "wf_03_label2_01",
        "wf_04_label3_01",
        "wf_05_finalJob_01",
    ]
    assert [(t.label, t.jobs) for t in generated.tasks.values()] == [
        ("pipetaskInit", 1),
        ("label1", 6),
        ("label2", 6),
        ("label3", 6),
        ("finalJob", 1),
    ]
    init, label1, *_ = works(generated)
    assert init.dependency_map == [{"name": "pipetaskInit" + SUFFIX, "order_id": 0, "dependencies": []}]
    assert [e["order_id"] for e in label1.dependency_map] == list(range(6))
    assert label1.dependency_tasks == ["wf_01_pipetaskInit_01"]
    assert label1.primary_input_collection.name == "pseudo_input_collection#2"
    assert label1.encode_command_line is True
    assert label1.task_log["value"] == "log.tgz"
    assert generated.files_to_stage == {"finalJob.bash": "finalJob.bash"}


def test_chunks_are_even(tmp_path: Path) -> None:
    workflow = GenericWorkflow("wf")
    exe = GenericWorkflowExec("run", "/bin/true", False)
    workflow.add_job(GenericWorkflowJob("init", label="init", executable=exe))
    for index in range(25):
        job = GenericWorkflowJob(f"a_{index}", label="a", executable=exe)
        workflow.add_job(job, ["init"])
        workflow.add_job(GenericWorkflowJob(f"b_{index}", label="b", executable=exe), [f"a_{index}"])
    generated = generate(tmp_path, workflow, maxJobsPerTask=10)
    sizes = {name: task.jobs for name, task in generated.tasks.items()}
    assert sizes == {
        "wf_01_init_01": 1,
        "wf_02_a_01": 9,
        "wf_03_a_02": 8,
        "wf_04_a_03": 8,
        "wf_05_b_01": 9,
        "wf_06_b_02": 8,
        "wf_07_b_03": 8,
    }
    b2 = works(generated)[5]
    assert b2.dependency_tasks == ["wf_03_a_02"]
    assert [e["order_id"] for e in b2.dependency_map] == list(range(9, 17))
    assert b2.dependency_map[0]["dependencies"] == [{"task": "wf_03_a_02", "inputname": "a_9" + SUFFIX}]


@pytest.mark.parametrize(("count", "limit"), [(25, 10), (1, 10), (10, 10), (11, 10), (1000, 7), (3, 1)])
def test_even_slices(count: int, limit: int) -> None:
    slices = even_slices(count, limit)
    sizes = [end - start for start, end in slices]
    assert sum(sizes) == count and max(sizes) <= limit and max(sizes) - min(sizes) <= 1
    assert len(slices) == -(-count // limit)
    assert [s for s, _ in slices[1:]] == [e for _, e in slices[:-1]]


def test_final_job_and_condition(tmp_path: Path) -> None:
    workflow = make_5_label_workflow_2_groups("wf", True)
    generated = generate(tmp_path, workflow)
    template = generated.idds_workflow.template
    all_works = works(generated)
    final = all_works[-1]
    assert final.task_name.endswith("_finalJob_01")
    assert final.dependency_map == [{"name": "pure_pseudoinput" + SUFFIX, "order_id": 0, "dependencies": []}]
    (condition,) = template.conditions.values()
    assert isinstance(condition, AndCondition)
    assert [c.__self__.task_name for c in condition.conditions] == [w.task_name for w in all_works[:-1]]
    assert all(c.__name__ == "is_terminated" for c in condition.conditions)
    assert [w.task_name for w in condition.true_works] == [final.task_name]
    assert final.get_internal_id() not in template.independent_works
    assert final.processingType == "Rubin_Merge"


@pytest.mark.parametrize("max_jobs", [100, 2, 1])
def test_final_waits_for_every_job_without_children(tmp_path: Path, max_jobs: int) -> None:
    """A label split between feeding another label and ending branches, in
    one chunk and across chunks: every work holding a job without children
    (computed here from the GenericWorkflow) gates the final work."""
    workflow = split_label_workflow()
    generated = generate(tmp_path, workflow, maxJobsPerTask=max_jobs)
    (condition,) = generated.idds_workflow.template.conditions.values()
    gated = {c.__self__.task_name for c in condition.conditions}
    assert all(c.__name__ == "is_terminated" for c in condition.conditions)
    assert [w.task_name for w in condition.true_works] == [works(generated)[-1].task_name]
    task_of = {entry["name"].split("+")[0]: task for task, entry in entries(generated).values()}
    childless = [name for name in workflow if name != "finalJob" and not list(workflow.successors(name))]
    assert sorted(childless) == ["c0", "c1", "c2", "s3", "s4", "s5"]
    assert {task_of[name] for name in childless} <= gated
    split_works = {task for name, task in task_of.items() if name.startswith("s")}
    assert len(split_works) == -(-6 // max_jobs)
    assert gated == {w.task_name for w in works(generated)[:-1]}


def test_no_final_job_no_condition(tmp_path: Path) -> None:
    generated = generate(tmp_path, make_3_label_workflow("wf", False))
    assert not generated.idds_workflow.template.conditions
    assert "finalJob" not in {task.label for task in generated.tasks.values()}


def test_config_without_final_job_section(tmp_path: Path) -> None:
    """A config with no finalJob section at all (no bps or plugin defaults)."""
    values = {
        "computeSite": "S",
        "fileDistributionEndPoint": f"{tmp_path}/d",
        "submitPath": str(tmp_path),
        "uniqProcName": "r",
        "runnerCommand": "run _cmd_line_",
        "placeholderParams": ["qgraphNodeId"],
        "submitSideResolvedParams": [],
        "maxJobsPerTask": 5,
        "maxRequestLength": 100,
        "maxCopyWorkers": 1,
        "maxWalltimeSeconds": 60,
        "fallbackRequestMemory": 1,
        "requestMemoryMax": 2,
        "fallbackRequestCpus": 1,
        "fallbackNumberOfRetries": 1,
        "priority": 1,
        "enableJobNameMap": False,
        "enableQnodeMap": False,
        "orderIdMapFilename": "m.json",
        "taskType": "t",
        "prodSourceLabel": "p",
        "vo": "v",
    }
    config = BpsConfig(values)
    assert "finalJob" not in config
    workflow = make_3_label_workflow("wf", True)
    settings = ServiceSettings.from_config(config, ["pipetaskInit", "label1", "label2", "label3", "finalJob"])
    generated = translate(settings, workflow)
    final = works(generated)[-1]
    assert final.task_name == "wf_08_finalJob_01"
    assert final.processingType is None


def test_attribute_mapping(tmp_path: Path) -> None:
    workflow = GenericWorkflow("wf")
    exe = GenericWorkflowExec("run", "/bin/true", False)
    job = GenericWorkflowJob(
        "a_1",
        label="a",
        executable=exe,
        request_memory=4096,
        memory_multiplier=1.5,
        request_memory_max=9000,
        request_cpus=2,
        request_walltime="1800",
        compute_cloud="EU",
        compute_site="SITE_A",
        queue="Q1",
        priority="800",
        accounting_group="grp",
        number_of_retries=7,
    )
    workflow.add_job(job)
    workflow.add_job(GenericWorkflowJob("b_1", label="b", executable=exe), ["a_1"])
    text = "pipetask:\n  a:\n    processingType: pa\n    taskType: ta\n    prodSourceLabel: pl\n    vo: va\n"
    a, b = works(generate(tmp_path, workflow, text))
    assert (a.task_rss, a.task_rss_retry_step, a.task_rss_retry_offset, a.task_rss_max) == (
        4096,
        6144,
        0,
        9000,
    )
    assert (a.core_count, a.maxWalltime, a.maxAttempt, a.task_priority) == (2, 1800, 7, 800)
    assert (a.task_cloud, a.task_site, a.task_queue, a.working_group) == ("EU", "SITE_A", "Q1", "grp")
    assert (a.processingType, a.task_type, a.prodSourceLabel, a.vo) == ("pa", "ta", "pl", "va")
    # b: nothing set on the job, so the plugin defaults.
    assert (b.task_rss, b.task_rss_retry_step, b.task_rss_retry_offset, b.task_rss_max) == (
        2048,
        0,
        2048,
        512000,
    )
    assert (b.core_count, b.maxWalltime, b.maxAttempt, b.task_priority) == (1, 90000, 3, 500)
    assert (b.task_cloud, b.task_site, b.task_queue, b.working_group) == ("US", "SITE", None, None)
    assert (b.processingType, b.task_type, b.prodSourceLabel, b.vo) == (None, "test", "managed", "wlcg")


@pytest.mark.parametrize(
    ("value", "sent"), [([2, 1], [1, 2]), (2, [2]), ("3", [3]), (None, None), ([], None)]
)
def test_retry_unless_exit_is_sent_as_a_work_attribute(tmp_path: Path, value: Any, sent: Any) -> None:
    workflow = GenericWorkflow("wf")
    exe = GenericWorkflowExec("run", "/bin/true", False)
    workflow.add_job(GenericWorkflowJob("a_1", label="a", executable=exe, retry_unless_exit=value))
    (work,) = works(generate(tmp_path, workflow))
    assert getattr(work, RETRY_UNLESS_EXIT_ATTRIBUTE, None) == sent


def test_bad_retry_unless_exit_names_the_job(tmp_path: Path) -> None:
    workflow = GenericWorkflow("wf")
    exe = GenericWorkflowExec("run", "/bin/true", False)
    workflow.add_job(GenericWorkflowJob("a_1", label="a", executable=exe, retry_unless_exit=["x"]))
    with pytest.raises(WorkflowTranslationError, match="'a_1': retryUnlessExit"):
        generate(tmp_path, workflow)


def test_resources_are_chunk_maxima_and_categories_split(tmp_path: Path) -> None:
    workflow = GenericWorkflow("wf")
    exe = GenericWorkflowExec("run", "/bin/true", False)
    for index, (memory, walltime, queue) in enumerate([(1000, 10, "q"), (3000, None, "q"), (2000, 5, "r")]):
        job = GenericWorkflowJob(
            f"a_{index}",
            label="a",
            executable=exe,
            request_memory=memory,
            request_walltime=walltime,
            queue=queue,
        )
        workflow.add_job(job)
    q_work, r_work = works(generate(tmp_path, workflow))
    assert (q_work.task_queue, len(q_work.dependency_map), q_work.task_rss, q_work.maxWalltime) == (
        "q",
        2,
        3000,
        10,
    )
    assert (r_work.task_queue, r_work.task_rss, r_work.maxWalltime) == ("r", 2000, 5)
    assert r_work.task_name == "wf_02_a_02"


def test_invalid_attribute_names_job(tmp_path: Path) -> None:
    workflow = GenericWorkflow("wf")
    workflow.add_job(
        GenericWorkflowJob("a_1", label="a", executable=GenericWorkflowExec("r", "/r"), request_memory="lots")
    )
    with pytest.raises(WorkflowTranslationError, match="'a_1'.*requestMemory"):
        generate(tmp_path, workflow)


def _lazy_workflow(node_id: str, name: str = "a_1", label: str = "a") -> GenericWorkflow:
    workflow = GenericWorkflow("wf")
    job = GenericWorkflowJob(
        name,
        label=label,
        executable=GenericWorkflowExec("pipetask", "/bin/pipetask", False),
        arguments="run --qgraph-node-id {qgraphNodeId} --x {static}",
        cmdvals={"qgraphNodeId": node_id, "static": "s"},
    )
    workflow.add_job(job)
    return workflow


def test_lazy_values_in_pseudo_name_and_command(tmp_path: Path) -> None:
    generated = generate(tmp_path, _lazy_workflow("u1,u2"))
    (work,) = works(generated)
    assert work.dependency_map[0]["name"] == "a_1+qgraphNodeId:u1,u2+qgraphId:"
    encoded = work.executable.split()[-5]
    assert decode_hex(encoded) == "/bin/pipetask run --qgraph-node-id {qgraphNodeId} --x s"


@pytest.mark.parametrize(
    ("name", "label", "node_id", "match"),
    [
        ("a+1", "a", "u", "'a\\+1'.*job name"),
        ("a 1", "a", "u", "job name"),
        ("a_1", "a:b", "u", "label"),
        ("a_1", "a", "u:1", "'a_1'.*value of qgraphNodeId"),
    ],
)
def test_decoder_unsafe_names_rejected(
    tmp_path: Path, name: str, label: str, node_id: str, match: str
) -> None:
    with pytest.raises(WorkflowTranslationError, match=match):
        generate(tmp_path, _lazy_workflow(node_id, name, label))


def test_missing_cmdval_names_job(tmp_path: Path) -> None:
    workflow = _lazy_workflow("u")
    workflow.get_job("a_1").cmdvals.pop("static")
    with pytest.raises(WorkflowTranslationError, match="'a_1'.*static"):
        generate(tmp_path, workflow)


def test_long_name_error_and_maps(tmp_path: Path) -> None:
    long_id = ",".join(f"{i:036d}" for i in range(150))  # 5.5k characters
    with pytest.raises(WorkflowTranslationError, match="'a_1'.*exceeds the iDDS limit of 4000"):
        generate(tmp_path, _lazy_workflow(long_id))
    generated = generate(tmp_path, _lazy_workflow(long_id), enableJobNameMap=True)
    (work,) = works(generated)
    assert work.dependency_map[0]["name"] == "a:orderIdMap_0"
    assert generated.order_id_map == {"a": {"0": f"a_1+qgraphNodeId:{long_id}+qgraphId:"}}
    staged = staged_files(tmp_path, _lazy_workflow(long_id), enableJobNameMap=True)
    assert staged["panda_order_id_map.json"] == f"{tmp_path}/submit/panda_order_id_map.json"
    assert "orderIdMapFilename:panda_order_id_map.json" in work.executable
    assert work.enable_job_name_map is True


def test_job_name_map_runner_token(tmp_path: Path) -> None:
    generated = generate(
        tmp_path,
        make_3_label_workflow("wf", True),
        enableJobNameMap=True,
        runnerCommand="export MAP=orderIdMapFilename; run _cmd_line_",
    )
    found = entries(generated)
    assert "label2:orderIdMap_5" in found
    label2 = generated.order_id_map["label2"]
    assert sorted(label2, key=int) == [str(i) for i in range(6)]
    assert all(value.startswith("label2_") for value in label2.values())
    for work in works(generated):
        assert work.executable.startswith(f"export MAP=file://{tmp_path}/dist/panda_order_id_map.json; run ")
        for entry in work.dependency_map:
            for dep in entry["dependencies"]:
                assert ":orderIdMap_" in dep["inputname"]


def test_qnode_map(tmp_path: Path) -> None:
    generated = generate(tmp_path, make_3_label_workflow("wf", False), enableQnodeMap=True)
    found = entries(generated)
    assert "PH:label1_301_10" in found
    assert generated.qnode_map["PH:label1_301_10"] == "label1_301_10" + SUFFIX
    assert len(generated.qnode_map) == len(found)
    staged = staged_files(tmp_path, make_3_label_workflow("wf", False), enableQnodeMap=True)
    assert staged["qnode_map.json"] == f"{tmp_path}/submit/qnode_map.json"
    assert all("qnodemap:qnode_map.json" in work.executable for work in works(generated))


def test_per_job_files_split_tasks(tmp_path: Path) -> None:
    """Per-job quantum graphs: each job gets a task with its own file."""
    workflow = GenericWorkflow("wf")
    exe = GenericWorkflowExec("pipetask", "/bin/pipetask", False)
    for index in range(3):
        qgraph = tmp_path / f"job_{index}.qgraph"
        qgraph.write_text("x")
        gwfile = GenericWorkflowFile(
            f"qgraphFile_a_{index}", str(qgraph), wms_transfer=True, job_access_remote=True
        )
        job = GenericWorkflowJob(
            f"a_{index}", label="a", executable=exe, arguments=f"run <FILE:qgraphFile_a_{index}>"
        )
        workflow.add_job(job)
        workflow.add_job_inputs(job.name, gwfile)
    generated = generate(tmp_path, workflow)
    assert [task.jobs for task in generated.tasks.values()] == [1, 1, 1]
    for index, work in enumerate(works(generated)):
        assert work.executable.endswith(f"  qgraphFile_a_{index}:job_{index}.qgraph qgraphFile_a_{index}")
    assert generated.files_to_stage == {
        f"job_{i}.qgraph": str(tmp_path / f"job_{i}.qgraph") for i in range(3)
    }


def test_staging_name_clash(tmp_path: Path) -> None:
    workflow = GenericWorkflow("wf")
    for index in range(2):
        (tmp_path / str(index)).mkdir()
        (tmp_path / str(index) / "run.sh").write_text("")
        exe = GenericWorkflowExec(f"run{index}", str(tmp_path / str(index) / "run.sh"), True)
        workflow.add_job(GenericWorkflowJob(f"a_{index}", label="a", executable=exe))
    with pytest.raises(WorkflowTranslationError, match="'a_1'.*both be staged as run.sh"):
        generate(tmp_path, workflow)


def test_lazy_group_rejected(tmp_path: Path) -> None:
    workflow = GenericWorkflow("wf")
    workflow.add_job(GenericWorkflowLazyGroup("lazy", "l", executable=GenericWorkflowExec("x", "/x")))
    with pytest.raises(WorkflowTranslationError, match="'lazy'.*LAZY_GROUP"):
        generate(tmp_path, workflow)


def test_final_workflow(tmp_path: Path) -> None:
    workflow = make_3_label_workflow("wf", False)
    final = GenericWorkflow("final")
    exe = GenericWorkflowExec("f", "/bin/f", False)
    final.add_job(GenericWorkflowJob("f1", label="final1", executable=exe))
    final.add_job(GenericWorkflowJob("f2", label="final2", executable=exe), ["f1"])
    workflow.add_final(final)
    generated = generate(tmp_path, workflow)
    *_, f1, f2 = works(generated)
    assert f2.dependency_map[0]["dependencies"] == [{"task": f1.task_name, "inputname": "f1" + SUFFIX}]
    (condition,) = generated.idds_workflow.template.conditions.values()
    assert [w.task_name for w in condition.true_works] == [f1.task_name, f2.task_name]


def test_final_workflow_reusing_a_label(tmp_path: Path) -> None:
    workflow = make_3_label_workflow("wf", False)
    final = GenericWorkflow("final")
    final.add_job(GenericWorkflowJob("f1", label="label1", executable=GenericWorkflowExec("f", "/bin/f")))
    workflow.add_final(final)
    generated = generate(tmp_path, workflow, enableJobNameMap=True)
    assert "label1:orderIdMap_6" in entries(generated)
    assert list(generated.tasks)[-1] == "wf_05_label1_02"
    assert generated.order_id_map["label1"]["6"] == "f1" + SUFFIX


def test_synthetic_workflow(tmp_path: Path) -> None:
    """A bps-shaped 20k-job workflow: every job and edge once, maps valid."""
    workflow = build_workflow(20000, tmp_path)
    generated = generate(tmp_path, workflow, maxJobsPerTask=3000)
    found = entries(generated)
    assert len(found) == 20001
    edges = _edges_by_name(generated)
    assert len(edges) == workflow.number_of_edges() and set(edges.values()) == {1}
    assert sum(t.jobs for t in generated.tasks.values()) == 20001
    assert set(generated.files_to_stage) == {"bench_run.qg", "final_job.bash"}
    isr = next(w for w in works(generated) if "_isr_" in w.task_name)
    assert isr.executable.endswith(f"file://{tmp_path}/dist/  runQgraphFile:bench_run.qg runQgraphFile")
    entry = isr.dependency_map[0]
    assert entry["name"].startswith(entry["name"].split("+")[0] + "+qgraphNodeId:")
    json.dumps([w.dependency_map for w in works(generated)])
