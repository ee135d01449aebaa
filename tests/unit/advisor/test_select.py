import math

import pandas as pd
import pytest

from advisor.constraints import AdvisorInputError, Constraints, parse_max_drop
from advisor.query import build_frame
from advisor.select import recommend
from advisor.synthetic import synthetic_tables


def frame_from(cells, quality, perf, concurrency=1, task=None, metric=None):
    return build_frame(pd.DataFrame(cells), pd.DataFrame(quality), pd.DataFrame(perf), task, metric, concurrency)


def cell(cid, prec="bf16", method="none", parent=None, tok=100.0, ttft=100.0, size=10.0, distill="none", **kw):
    return {
        "cell_id": cid,
        "model": "m",
        "precision": prec,
        "method": method,
        "distill": distill,
        "engine": "vllm",
        "device": "cuda",
        "status": "done",
        "parent_id": parent,
        "params": int(5e9),
        "kv_bytes_per_token": 131072.0,
        "size_gib": size,
        "peak_mem_gib": None,
        "output_tok_s": tok,
        "ttft_ms_p50": ttft,
        "ttft_ms_p99": 2 * ttft,
        "lm_eval_version": "0.4.13",
        "artefact_model": f"/m/{cid}",
        **kw,
    }


def q(cid, acc, se=0.01, task="dq_arc_easy", metric="acc", version="0.4.13"):
    return {
        "cell_id": cid,
        "task": task,
        "metric": metric,
        "value": acc,
        "stderr": se,
        "task_hash": "h",
        "lm_eval_version": version,
    }


def p(cid, level, tok):
    return {
        "cell_id": cid,
        "profile": "concurrency",
        "level": level,
        "output_tok_s": tok,
        "ttft_ms_p50": 1.0,
        "ttft_ms_p99": 2.0,
    }


@pytest.fixture
def family():
    cells = [
        cell("ref", size=15.0, tok=100),
        cell("q8", "int8", "gptq", "ref", tok=150, size=7.5),
        cell("q4", "int4", "gptq", "ref", tok=220, size=3.9, ttft=60),
    ]
    quality = [q("ref", 0.60), q("q8", 0.597), q("q4", 0.55)]
    perf = [p("ref", 1, 100), p("q8", 1, 150), p("q4", 1, 220)]
    return frame_from(cells, quality, perf)


def test_parse_max_drop():
    assert parse_max_drop("2%").relative and parse_max_drop("2%").value == pytest.approx(0.02)
    d = parse_max_drop("1.5pt")
    assert not d.relative and d.value == 1.5
    for bad in ("2", "two%", "150%", "-1pt"):
        with pytest.raises(AdvisorInputError):
            parse_max_drop(bad)


def test_constraint_validation():
    with pytest.raises(AdvisorInputError, match="--gpu-price"):
        Constraints(objective="cost")
    with pytest.raises(AdvisorInputError, match="choose one of"):
        Constraints(objective="speed")
    with pytest.raises(AdvisorInputError, match="go together"):
        Constraints(task="dq_arc_easy")


def test_memory_constraint_counts_kv_cache(family):
    # 128 KiB/token x 4096 x 1 = 0.5 GiB KV + 1.5 overhead: ref needs 17 GiB
    rec = recommend(family, Constraints(vram_gib=16, context_len=4096))
    assert set(rec.ranked["cell_id"]) == {"q8", "q4"}
    assert rec.rejected["memory"]["count"] == 1 and rec.rejected["memory"]["miss"] == pytest.approx(1.0)
    # 16 sequences of 4096 tokens: 8 GiB of KV; only int4 fits 16 GiB
    rec = recommend(family, Constraints(vram_gib=16, context_len=4096, concurrency=16))
    assert list(rec.ranked["cell_id"]) == ["q4"]


def test_quality_drop_relative_and_absolute(family):
    # --decide point: the point estimates decide the ranking (a 1pt stderr per score leaves q8 and q4 undecided)
    rec = recommend(family, Constraints(max_drop=parse_max_drop("2%"), decide="point"))
    assert set(rec.ranked["cell_id"]) == {"ref", "q8"}  # q4 lost 8.3%
    q4 = rec.frame.set_index("cell_id").loc["q4"]
    assert q4["drop"] == pytest.approx(0.05 / 0.60)
    rec = recommend(family, Constraints(max_drop=parse_max_drop("6pt"), decide="point"))
    assert set(rec.ranked["cell_id"]) == {"ref", "q8", "q4"}
    assert rec.frame.set_index("cell_id").loc["q4"]["drop"] == pytest.approx(5.0)
    assert rec.frame.set_index("cell_id").loc["ref"]["drop"] == 0


def test_conservative_uses_upper_confidence_bound(family):
    # q8 drops 0.3 pt with a standard error of sqrt(2) pt: within 1pt as a point estimate, not at the upper bound
    plain = recommend(family, Constraints(max_drop=parse_max_drop("1pt"), decide="point"))
    cons = recommend(family, Constraints(max_drop=parse_max_drop("1pt"), decide="conservative"))
    assert Constraints().decide == "conservative" and Constraints().conservative  # the default
    assert "q8" in set(plain.ranked["cell_id"]) and "q8" not in set(cons.ranked["cell_id"])
    row = cons.frame.set_index("cell_id").loc["q8"]
    assert row["drop_hi"] == pytest.approx(0.3 + 1.959964 * math.sqrt(2), abs=1e-6)


def test_objectives_and_throughput_latency_constraints(family):
    assert recommend(family, Constraints(objective="throughput")).ranked["cell_id"][0] == "q4"
    assert recommend(family, Constraints(objective="latency")).ranked["cell_id"][0] == "q4"
    assert recommend(family, Constraints(objective="memory")).ranked["cell_id"][0] == "q4"
    assert recommend(family, Constraints(objective="quality")).ranked["cell_id"][0] == "ref"
    cost = recommend(family, Constraints(objective="cost", gpu_price=3.6))
    # $3.6/h at 220 tok/s = 3.6 / (220 * 3600) * 1e6 $/1M tokens
    assert cost.ranked.iloc[0]["cost_per_mtok"] == pytest.approx(3.6 / (220 * 3600) * 1e6)
    rec = recommend(family, Constraints(min_tok_s=160))
    assert list(rec.ranked["cell_id"]) == ["q4"] and rec.rejected["throughput"]["miss"] == pytest.approx(10)
    rec = recommend(family, Constraints(max_ttft_ms=150, ttft_stat="p99"))  # p99 = 2 x p50
    assert list(rec.ranked["cell_id"]) == ["q4"]
    rec = recommend(family, Constraints(max_ttft_ms=150, ttft_stat="p50"))
    assert len(rec.ranked) == 3


def test_ties_are_broken_by_drop_then_memory_then_id():
    cells = [
        cell("ref", tok=100),
        cell("b", "int8", "gptq", "ref", tok=100, size=5),
        cell("a", "int8", "rtn", "ref", tok=100, size=5),
    ]
    quality = [q("ref", 0.6), q("a", 0.59), q("b", 0.59)]
    rec = recommend(frame_from(cells, quality, [p(c["cell_id"], 1, 100) for c in cells]), Constraints())
    assert list(rec.ranked["cell_id"]) == ["ref", "a", "b"]


def test_nothing_fits_reports_nearest_miss(family):
    rec = recommend(family, Constraints(vram_gib=2))
    assert not rec.ok and rec.rejected["memory"]["count"] == 3
    assert rec.rejected["memory"]["nearest"]["cell_id"] == "q4"


def test_unmeasured_figures_cannot_satisfy_constraints():
    cells = [cell("ref"), cell("q", "int4", "rtn", "ref", tok=float("nan"))]
    rec = recommend(
        frame_from(cells, [q("ref", 0.6)], [p("ref", 1, 100)]), Constraints(min_tok_s=10, max_drop=parse_max_drop("5%"))
    )
    assert list(rec.ranked["cell_id"]) == ["ref"]
    assert rec.rejected["throughput"]["unknown"] == 1 and rec.rejected["quality"]["unknown"] == 1


def test_estimated_vs_measured_weights():
    cells = [cell("ref", size=None), cell("q", "int4", "rtn", "ref", size=3.0)]
    rec = recommend(frame_from(cells, [q("ref", 0.6), q("q", 0.6)], []), Constraints(vram_gib=80))
    f = rec.frame.set_index("cell_id")
    # no size on disk and no plan estimate in the index: parameters x nominal bits, and it says so
    assert f.loc["ref", "weights_src"] == "estimated (params x nominal bits)"
    assert f.loc["ref", "weights_gib"] == pytest.approx(5e9 * 2 / 2**30)
    assert f.loc["q", "weights_src"] == "measured" and f.loc["q", "weights_gib"] == 3.0


def test_plan_weights_estimate_beats_the_flat_rule():
    """An index carrying the plan's module-wise weights (est_weights_gib, harness/serving_memory.py) uses them
    where nothing was measured: an int4 cell with 16-bit embeddings is not params x 4 bits."""
    cells = [cell("ref"), cell("q", "int4", "gptq", "ref", size=None, est_weights_gib=5.309)]
    rec = recommend(frame_from(cells, [q("ref", 0.6), q("q", 0.6)], []), Constraints(vram_gib=80))
    f = rec.frame.set_index("cell_id")
    assert f.loc["q", "weights_src"] == "estimated" and f.loc["q", "weights_gib"] == pytest.approx(5.309)
    assert f.loc["q", "mem_need_gib"] == pytest.approx(5.309 + 0.5 + 1.5)  # + 128 KiB x 4096 KV + GPU default


def test_cpu_overhead_is_derived_from_measured_peaks_and_reused_for_the_engine():
    """Host RAM: overhead = measured peak - weights - the KV the run reserved; the need is recomposed for the
    asked context x concurrency; a cell without a peak takes its engine's median on the same host."""
    cpu = dict(device="cpu", engine="vllm", host_id="h")
    cells = [
        cell("ref", size=1.0, peak_mem_gib=4.0, est_kv_gib=1.0, **cpu),  # overhead 2.0
        cell("q8", "int8", "rtn", "ref", size=0.5, peak_mem_gib=3.7, est_kv_gib=1.0, **cpu),  # 2.2
        cell("q4", "int4", "rtn", "ref", size=0.3, peak_mem_gib=None, est_kv_gib=1.0, **cpu),
        cell("g", "int4", "gguf", "ref", size=0.3, peak_mem_gib=None, est_kv_gib=1.0, **{**cpu, "engine": "llamacpp"}),
    ]
    f = frame_from(cells, [q(c["cell_id"], 0.6) for c in cells], [])
    rec = recommend(f, Constraints(device="cpu", context_len=8192, concurrency=2))  # KV: 128 KiB x 16384 = 2 GiB
    by = rec.frame.set_index("cell_id")
    assert by.loc["ref", "overhead_gib"] == pytest.approx(2.0) and by.loc["ref", "mem_src"] == "measured"
    assert by.loc["ref", "mem_need_gib"] == pytest.approx(1.0 + 2.0 + 2.0)
    assert by.loc["q4", "overhead_gib"] == pytest.approx(2.1)  # median of 2.0 and 2.2
    assert by.loc["q4", "overhead_src"] == "measured (same engine, host)" and by.loc["q4", "mem_src"] == "estimated"
    assert by.loc["g", "overhead_src"] == "default"  # no llama.cpp cell measured on this host


def test_throughput_taken_at_the_requested_concurrency():
    cells = [cell("ref")]
    perf = [p("ref", 1, 10), p("ref", 4, 35), p("ref", 16, 90)]
    f = frame_from(cells, [q("ref", 0.5)], perf, concurrency=8)
    assert f.loc[0, "tok_s_level"] == 4 and f.loc[0, "tok_s"] == 35
    f = frame_from(cells, [q("ref", 0.5)], perf, concurrency=64)
    assert f.loc[0, "tok_s_level"] == 16


def test_student_lineage_uses_the_teacher_as_reference():
    cells = [cell("t"), cell("s", distill="kd", parent="t", size=5), cell("sq", "int8", "rtn", "s", distill="kd")]
    f = frame_from(cells, [q("t", 0.6), q("s", 0.5), q("sq", 0.49)], [])
    assert set(f["root_id"]) == {"t"}
    rec = recommend(f, Constraints(max_drop=parse_max_drop("20%")))
    # the quantized student's drop is against the teacher (0.60), not against its parent, the student (0.50)
    assert rec.frame.set_index("cell_id").loc["sq", "drop"] == pytest.approx(0.11 / 0.6)


def test_reference_is_computed_from_the_lineage_when_the_frame_has_none():
    from advisor.select import add_quality

    f = pd.DataFrame(
        {
            "cell_id": ["t", "s", "sq"],
            "parent_id": [None, "t", "s"],
            "q": [0.6, 0.5, 0.49],
            "q_ref": [0.6, 0.6, 0.6],
            "q_se": [0.0] * 3,
            "q_ref_se": [0.0] * 3,
            "paired_drop_ci_lo": [None, 0.05, 0.0],
            "paired_drop_ci_hi": [None, 0.15, 0.02],
        }
    )
    out, _ = add_quality(f, Constraints(max_drop=parse_max_drop("1pt")))
    by = out.set_index("cell_id")
    assert list(by["root_id"]) == ["t", "t", "t"]
    # the student's paired CI is against its parent, the teacher: it stands; the quantized student's is against
    # the student, so its drop against the teacher keeps the stderr interval
    assert by.loc["s", "ci_kind"].startswith("paired") and by.loc["sq", "ci_kind"].startswith("normal")
    assert by.loc["sq", "drop"] == pytest.approx(11.0)


def test_student_recommendation_states_its_training_cost():
    from advisor.explain import decision

    train = dict(distill_kind="logit_kd", train_tokens=81920, train_s=412.0, ref_gpu_hours=23.9, ref_usd=59.7)
    cells = [cell("t"), cell("s", distill="kd", parent="t", size=5, **train)]
    f = frame_from(cells, [q("t", 0.6), q("s", 0.59)], [])
    rec = recommend(f, Constraints(objective="quality", max_drop=parse_max_drop("5%"), decide="point"))
    rec.ranked = rec.ranked[rec.ranked["cell_id"] == "s"].reset_index(drop=True)
    text = decision(rec)
    assert "A distilled student (kd)" in text and "81,920 tokens" in text and "~23.9 GPU-hours ($60)" in text


def test_different_lm_eval_version_is_flagged():
    cells = [cell("ref"), cell("q", "int8", "rtn", "ref")]
    f = frame_from(cells, [q("ref", 0.6, version="0.4.9"), q("q", 0.6)], [])
    assert not f.set_index("cell_id").loc["q", "same_lm_eval"]
    from advisor.explain import decision

    rec = recommend(f, Constraints(objective="quality"))
    rec.ranked = rec.ranked[rec.ranked["cell_id"] == "q"].reset_index(drop=True)
    assert "different lm-eval version" in decision(rec)


def test_synthetic_grid_recommends_sensibly():
    cells, quality, perf = synthetic_tables(20, seed=1)
    f = build_frame(cells, quality, perf, None, None, 8)
    rec = recommend(f, Constraints(vram_gib=24, max_drop=parse_max_drop("2%"), context_len=4096, concurrency=8))
    assert rec.ok
    assert (rec.ranked["mem_need_gib"] <= 24).all() and (rec.ranked["drop"] <= 0.02).all()
    assert rec.ranked["tok_s"].is_monotonic_decreasing


def test_paired_bootstrap_ci_replaces_the_stderr_ci_for_the_aggregate():
    from advisor.select import add_quality

    f = pd.DataFrame(
        {
            "cell_id": ["r", "a", "b"],
            "root_id": ["r", "r", "r"],
            "parent_id": [None, "r", "x"],
            "q": [0.5, 0.45, 0.45],
            "q_ref": [0.5, 0.5, 0.5],
            "q_se": [0.03] * 3,
            "q_ref_se": [0.03] * 3,
            "paired_drop_ci_lo": [None, 0.02, 0.02],
            "paired_drop_ci_hi": [None, 0.08, 0.08],
        }
    )
    out, _ = add_quality(f, Constraints(max_drop=parse_max_drop("1.5pt")))
    a, b = out.set_index("cell_id").loc["a"], out.set_index("cell_id").loc["b"]
    assert a["drop"] == pytest.approx(5.0) and (a["drop_lo"], a["drop_hi"]) == pytest.approx((2.0, 8.0))
    assert a["ci_kind"].startswith("paired bootstrap")
    # b's paired CI is against a parent that is not the root: the stderr CI stays
    assert b["ci_kind"].startswith("normal") and b["drop_hi"] - b["drop_lo"] > 6.0
    rel, _ = add_quality(f, Constraints(max_drop=parse_max_drop("2%")))
    assert rel.set_index("cell_id").loc["a", "drop_hi"] == pytest.approx(0.08 / 0.5)


def test_reference_is_the_same_cell_on_the_same_host():
    """One family measured on two hosts: each quantized cell is compared with the reference measured on its own
    host, never with the other host's (scores differ in the last digits by ISA)."""
    a, b = {"host_id": "hostA", "host_label": "CPU A"}, {"host_id": "hostB", "host_label": "GPU B"}
    cells = [
        cell("ref", **a),
        cell("q4", "int4", "gptq", "ref", **a),
        cell("ref", **b),
        cell("q4", "int4", "gptq", "ref", **b),
    ]
    quality = [
        dict(q("ref", 0.60), host_id="hostA"),
        dict(q("q4", 0.57), host_id="hostA"),
        dict(q("ref", 0.50), host_id="hostB"),
        dict(q("q4", 0.50), host_id="hostB"),
    ]
    perf = [
        dict(p(c, 1, t), host_id=h)
        for c, t, h in (("ref", 100, "hostA"), ("q4", 200, "hostA"), ("ref", 900, "hostB"), ("q4", 1800, "hostB"))
    ]
    f = frame_from(cells, quality, perf)
    assert len(f) == 4  # the same cell id on two hosts is two rows
    rec = recommend(f, Constraints(max_drop=parse_max_drop("2%"), decide="point"))
    by = rec.frame.set_index(["cell_id", "host_id"])
    assert by.loc[("q4", "hostA"), "q_ref"] == pytest.approx(0.60)
    assert by.loc[("q4", "hostA"), "drop"] == pytest.approx(0.05)
    assert by.loc[("q4", "hostB"), "q_ref"] == pytest.approx(0.50) and by.loc[("q4", "hostB"), "drop"] == 0
    assert by.loc[("q4", "hostB"), "tok_s"] == 1800 and by.loc[("q4", "hostA"), "tok_s"] == 200
    w = rec.ranked.iloc[0]
    assert (w["cell_id"], w["host_id"]) == ("q4", "hostB")  # the 5% drop on host A is rejected
    from advisor.explain import decision

    assert "measured on GPU B [hostB]" in decision(rec)


def test_measured_gpu_peak_replaces_the_estimate():
    cells = [cell("ref", size=15.0, gpu_peak_gib=20.5), cell("q4", "int4", "gptq", "ref", size=3.9)]
    f = frame_from(cells, [q("ref", 0.60), q("q4", 0.60)], [p("ref", 1, 100), p("q4", 1, 200)])
    rec = recommend(f, Constraints(vram_gib=20.0, objective="memory"))
    by = rec.frame.set_index("cell_id")
    assert by.loc["ref", "mem_need_gib"] == 20.5 and by.loc["ref", "mem_src"] == "measured"
    assert by.loc["q4", "mem_src"] == "estimated"
    assert rec.rejected["memory"]["nearest"]["mem_src"] == "measured"  # 20.5 measured > 20
    from advisor.explain import decision

    assert "(estimated)" in decision(rec)  # the winner's figure says what it is
    rec = recommend(f.drop(columns=["gpu_peak_gib"]), Constraints(vram_gib=20.0))
    assert set(rec.frame["mem_src"]) == {"estimated"}  # an index without the column: estimates, as before
    # --device cpu keeps using the measured host peak
    assert set(recommend(f.assign(peak_mem_gib=3.0), Constraints(device="cpu")).frame["mem_src"]) == {"measured"}
