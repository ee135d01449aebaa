"""The Ray executor's pure parts: what a cell asks Ray for, what crosses to the workers, the driver's verdict
on the nodes' facts, a node's engine, and the workers' progress lines. The cluster itself:
tests/integration/test_ray_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.executors.ray_nodes import PERF_RESOURCE, cell_options, gpus_of, node_problems, task_env
from harness.executors.ray_progress import RelayProgress, print_lines
from harness.plan import plan_matrix
from harness.settings import load_settings
from harness.spec import load_matrix
from tests.conftest import MATRICES


@pytest.fixture
def cell(settings):
    plan = plan_matrix(load_matrix(MATRICES / "smollm2-cpu.yaml"), settings, host="cpu-avx2")
    return next(c for c in plan.cells if c.status == "planned" and c.serving.kind == "vllm")


def _cuda(cell, **engine_args):
    return cell.model_copy(
        update={"device": "cuda", "serving": cell.serving.model_copy(update={"engine_args": engine_args})}
    )


def test_every_cell_holds_its_nodes_perf_slot_and_cpu_cells_their_memory(cell):
    opts = cell_options(cell, 1.0, 2)
    assert opts["resources"] == {PERF_RESOURCE: 1} and opts["num_cpus"] == 1.0 and "num_gpus" not in opts
    assert opts["memory"] == int(cell.estimate.total_gib * 2**30) and opts["max_retries"] == 2
    assert "label_selector" not in opts
    sel = {"ray.io/node-id": "in(abc)"}
    assert cell_options(cell, 1.0, 2, sel)["label_selector"] == sel


@pytest.mark.parametrize(
    "args,gpus",
    [
        ({}, 1),
        ({"tensor_parallel_size": 4}, 4),
        ({"tensor-parallel-size": 2}, 2),
        ({"tp": 2, "pipeline_parallel_size": 2}, 4),
        ({"--tensor-parallel-size": 8, "dp": 2}, 16),
    ],
)
def test_a_cuda_cell_asks_for_its_parallel_sizes_in_gpus(cell, args, gpus):
    c = _cuda(cell, **args)
    assert gpus_of(c) == gpus
    opts = cell_options(c, 1.0, 0)
    assert opts["num_gpus"] == gpus and "memory" not in opts


def test_a_student_asks_for_its_teachers_gpus_when_more(cell):
    c = _cuda(cell, tp=2).model_copy(
        update={"teacher_serving": cell.serving.model_copy(update={"engine_args": {"tensor_parallel_size": 4}})}
    )
    assert gpus_of(c) == 4


def test_only_the_flags_and_results_cross_to_workers_and_the_token_only_for_downloads(tmp_path):
    from harness.credentials import forget_credentials

    forget_credentials()
    driver = {
        "HF_TOKEN": "hf_x",
        "HF_HUB_OFFLINE": "1",
        "DQBENCH_PLUGINS": "p",
        "DQBENCH_HOME": "/driver/home",
        "DQBENCH_STAGE_PYTHON": "/driver/python",
        "DQBENCH_LLAMACPP": "/driver/llama",
        "DQBENCH_COMPRESS_PYTHON": "/driver/compress",
        "DQBENCH_ENGINE": "cpu",
        "HF_HOME": "/driver/hf",
    }
    env = task_env(tmp_path, driver)
    ray_cfg = {"RAY_kill_child_processes_on_worker_exit": "0"}  # the guards end their own trees
    assert env == {"HF_HUB_OFFLINE": "1", "DQBENCH_PLUGINS": "p", "DQBENCH_RESULTS": str(tmp_path)} | ray_cfg
    # a plan that downloads a hub model: the token goes with it (Ray shows runtime_env: only then)
    env = task_env(tmp_path, driver, hub_downloads=True)
    want = {"HF_TOKEN": "hf_x", "HF_HUB_OFFLINE": "1", "DQBENCH_PLUGINS": "p", "DQBENCH_RESULTS": str(tmp_path)}
    assert env == want | ray_cfg


def _facts(node="a" * 56, **kw):
    f = {
        "node_id": node,
        "host": "h",
        "ip": "10.0.0.1",
        "home": "/home/dq",
        "results": "/res",
        "python": "/env/bin/python",
        "python_ok": True,
        "compress_python": None,
        "compress_ok": True,
        "llamacpp": None,
        "llamacpp_source": None,
        "engine": "cpu",
        "cpu_flags": "f1",
        "sees": {"home": True, "results": True},
    }
    return {**f, **kw}


def test_a_sound_cluster_has_no_problems(settings, cell):
    assert node_problems([_facts(), _facts("b" * 56)], settings, [cell]) == []


def test_each_problem_names_the_node_the_path_and_the_fix(settings, cell):
    facts = [
        _facts(sees={"home": False, "results": True}, home="/other"),
        _facts("b" * 56, sees={"home": True, "results": False}),
        _facts("c" * 56, python_ok=False, python="/nowhere/python"),
        _facts("d" * 56, compress_ok=False, compress_python="/driver/compress/python"),
    ]
    p = node_problems(facts, settings, [cell])
    assert len(p) == 4
    assert "node aaaaaaaa" in p[0] and "DQBENCH_HOME=/other" in p[0] and str(settings.home) in p[0]
    assert "node bbbbbbbb" in p[1] and str(settings.results_dir) in p[1] and "same path" in p[1]
    assert "node cccccccc" in p[2] and "/nowhere/python" in p[2] and "DQBENCH_STAGE_PYTHON" in p[2]
    assert "node dddddddd" in p[3] and "/driver/compress/python" in p[3] and "DQBENCH_COMPRESS_PYTHON" in p[3]


def test_a_node_on_another_commit_is_refused(settings, cell):
    assert node_problems([_facts(code="abc")], settings, [cell], code="abc") == []
    (p,) = node_problems([_facts(code="abc"), _facts("b" * 56, code="def")], settings, [cell], code="abc")
    assert "node bbbbbbbb" in p and "def" in p and "same commit" in p


def test_a_plan_whose_engine_no_node_has_is_refused(settings, cell):
    p = node_problems([_facts(engine="cpu")], settings, [_cuda(cell)])
    assert len(p) == 1 and "`gpu` engine" in p[0] and "cpu" in p[0]
    assert node_problems([_facts(engine=None)], settings, [_cuda(cell)]) == []  # unknown: taken at its word


def test_llamacpp_from_a_shared_record_on_mixed_cpus_is_refused_for_gguf_plans(settings, cell):
    shared = dict(llamacpp="/home/dq/tools/llamacpp-x", llamacpp_source="/home/dq/tools/llamacpp-dir")
    facts = [_facts(cpu_flags="f1", **shared), _facts("b" * 56, cpu_flags="f2", **shared)]
    gguf = cell.model_copy(update={"method": "gguf"})
    assert node_problems(facts, settings, [cell]) == []  # no llama.cpp cell
    p = node_problems(facts, settings, [gguf])
    assert len(p) == 2 and all("DQBENCH_LLAMACPP" in x for x in p)
    own = [_facts(cpu_flags="f1"), _facts("b" * 56, cpu_flags="f2", llamacpp_source="DQBENCH_LLAMACPP")]
    assert node_problems(own, settings, [gguf]) == []


def test_a_nodes_engine_is_its_own_env_not_the_shared_homes_record(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "engine").write_text("gpu\n")  # another node's set-up choice, in a shared home
    base = {"DQBENCH_HOME": str(home)}
    assert load_settings({**base, "DQBENCH_STAGE_PYTHON": "/x/envs/cpu-1234/bin/python"}).engine == "cpu"
    assert load_settings({**base, "DQBENCH_STAGE_PYTHON": "/x/envs/gpu-1234/bin/python"}).engine == "gpu"
    assert load_settings({**base, "DQBENCH_STAGE_PYTHON": "/usr/bin/python3"}).engine is None
    assert load_settings({**base, "DQBENCH_STAGE_PYTHON": "/usr/bin/python3", "DQBENCH_ENGINE": "gpu"}).engine == "gpu"
    s = load_settings({**base, "DQBENCH_LLAMACPP": str(tmp_path)})
    assert s.llamacpp_dir == Path(tmp_path) and s.llamacpp_source == "DQBENCH_LLAMACPP"


class _Relay:
    def __init__(self):
        self.lines = []
        self.push = self

    def remote(self, *rec):
        self.lines.append(rec)


def test_a_workers_stages_reach_the_driver_through_the_relay(cell, capsys):
    from harness.progress import Progress

    relay = _Relay()
    p = RelayProgress(relay, cell.cell_id, "node-a", every=0.0)
    p.start_cell(cell)
    p.stage("serve")
    p.update({"what": "lm-eval", "unit": "requests", "done": 3, "total": 10, "t": 1.0})
    msgs = [r[2] for r in relay.lines]
    assert msgs[1] == "stage serve" and msgs[2].startswith("lm-eval 3/10 requests")
    assert all(r[:2] == (cell.cell_id, "node-a") for r in relay.lines)
    assert capsys.readouterr().err == ""  # nothing printed on the worker
    driver = Progress(every=0.0)
    print_lines(driver, relay.lines)
    assert f"[{cell.cell_id} on node-a] stage serve" in capsys.readouterr().err


def test_cells_keep_to_nodes_of_their_engine_when_the_cluster_mixes_engines(settings, cell):
    from harness.executors.ray import RayExecutor

    cpu_node, gpu_node = _facts("c" * 56, engine="cpu"), _facts("g" * 56, engine="gpu")
    ex = RayExecutor(settings)
    ex.facts = [cpu_node, _facts("u" * 56, engine=None)]
    assert ex._selectors([cell]) == {"cpu": None}  # every node fits: no selector
    ex.facts = [cpu_node, gpu_node]
    sel = ex._selectors([cell, _cuda(cell)])
    assert sel == {"cpu": {"ray.io/node-id": f"in({'c' * 56})"}, "gpu": {"ray.io/node-id": f"in({'g' * 56})"}}


def test_a_cell_no_node_can_hold_is_refused_instead_of_waiting_forever(settings, cell):
    from harness.executors.ray import RayExecutor

    ex = RayExecutor(settings)
    ex.facts = [_facts("g" * 56, engine="gpu")]
    slot = {"NodeID": "g" * 56, "Resources": {"CPU": 8, "GPU": 2, "memory": 64 * 2**30, PERF_RESOURCE: 1}}
    assert ex._unfit([_cuda(cell, tp=2)], [slot]) == []
    (p,) = ex._unfit([_cuda(cell, tp=4)], [slot])
    assert cell.cell_id in p and "GPU 4" in p and "tensor x pipeline x data parallel" in p
