"""The orchestrator must not import heavy backends at import time (they live in stage subprocesses)."""

import json
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ["torch", "vllm", "lm_eval", "transformers", "llmcompressor", "datasets", "tokenizers"]
MODULES = [
    "harness",
    "harness.cli",
    "harness.runner",
    "harness.plan",
    "harness.spec",
    "harness.store.db",
    "harness.measure.run",
    "harness.serve.vllm",
    "harness.evaluate.lmeval",
    "harness.models.embedded",
    "harness.compress.identity",
    "harness.compress.qat",
    "harness.distill.base",
    "harness.distill.data",
    "harness.distill.generate",
    "harness.distill.cost",
    "harness.distill.features",
    "harness.plan.sensitivity",
    "harness.cell",
    "harness.hw.caps",
    "harness.hw.probe",
    "harness.hw.report",
    "harness.hw.engine_probe",
    "harness.store.hosts",
]


def test_orchestrator_imports_no_heavy_backend():
    code = (
        "import sys, json\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_planning_a_matrix_imports_no_heavy_backend():
    code = (
        "import sys, json\nfrom harness.spec import load_matrix\nfrom harness.plan import plan_matrix\n"
        "from harness.settings import load_settings\n"
        "plan_matrix(load_matrix('matrices/llama8b.yaml'), load_settings(), host='cpu-avx512')\n"
        "plan_matrix(load_matrix('matrices/smollm2-cpu.yaml'), load_settings(), host='cpu-avx512')\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_advisor_imports_no_backend_and_no_pipeline_stage():
    code = (
        "import sys, json\nfrom advisor.cli import main\n"
        "import advisor.select, advisor.query, advisor.render, advisor.views, advisor.report\n"
        "main(['estimate', '7B', '--json'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        + repr(HEAVY)
        + " or m.startswith(('harness.serve', 'harness.runner', 'harness.evaluate', "
        "'harness.measure', 'harness.compress'))]\n"
        "print(json.dumps(bad), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []


def test_harness_never_imports_the_advisor():
    """One-way: the advisor reads the store; the harness runs the advisor as a command, never imports it."""
    import ast

    offenders = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "advisor"]
    assert offenders == []
