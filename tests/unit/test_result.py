"""The derived facts of a CellResult (harness/result_facts.py), each defined once."""

import json

import pytest

from harness.evaluate.items import read_sample_items
from harness.result import CellResult, Level
from harness.result_facts import FIGURES, HEADLINE, cell_status, figures, headline, primary_metric, primary_scores
from harness.store.schema import CELL_COLS
from tests.conftest import REPO

V3 = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())


def result(status="done", **kw) -> CellResult:
    return CellResult.model_validate(
        {"cell_id": "c1", "matrix": "m", "label": "l", "plan": {}, "status": status, "host": {"host_id": "h1"}, **kw}
    )


def level(profile: str, lvl: float, tok_s: float, ttft_p50: float, failed: int = 0) -> Level:
    return Level(
        profile=profile,
        level=lvl,
        requests=4,
        completed=4 - failed,
        failed=failed,
        output_tok_s=tok_s,
        ttft_ms={"p50": ttft_p50, "p99": ttft_p50 * 2},
    )


def test_headline_latency_from_synchronous_throughput_from_top_concurrency():
    h = headline(
        [
            level("concurrency", 16, 300.0, 900.0, failed=1),
            level("synchronous", 1, 20.0, 100.0),
            level("concurrency", 4, 90.0, 300.0),
            level("poisson", 2.0, 50.0, 200.0, failed=2),
        ]
    )
    assert list(h) == list(HEADLINE)
    assert h["ttft_ms_p50"] == 100.0 and h["output_tok_s"] == 300.0 and h["top_concurrency"] == 16
    assert h["ttft_ms_p99_at_top"] == 1800.0 and h["failed_requests"] == 3
    # no synchronous level: latency from the lowest concurrency
    assert headline([level("concurrency", 8, 1.0, 50.0), level("concurrency", 2, 1.0, 10.0)])["ttft_ms_p50"] == 10.0
    assert headline([]) == {}


def test_every_figure_is_a_cells_column_and_figures_name_them_in_order():
    r = CellResult.model_validate(V3)
    f = figures(r)
    assert list(f) == list(FIGURES) and set(FIGURES) <= set(CELL_COLS)
    assert f["output_tok_s"] == V3["perf"]["headline"]["output_tok_s"]
    assert f["size_gib"] == pytest.approx(V3["artefact"]["size_bytes"] / 2**30)


def test_primary_scores_take_each_task_headline_metric():
    r = CellResult.model_validate(V3)
    assert primary_metric("dq_hellaswag") == "acc_norm" and primary_metric("dq_pydoc_ppl") is None
    assert primary_scores(r) == {"dq_lambada": 0.34, "dq_arc_easy": 0.49, "dq_hellaswag": 0.46}
    assert primary_scores(result()) == {}


@pytest.mark.parametrize(
    ("plan_status", "res", "elsewhere", "want"),
    [
        ("planned", None, None, ("planned", None)),
        ("infeasible", None, None, ("infeasible", "no kernel")),
        ("planned", "done", None, ("done", None)),
        ("planned", "failed", None, ("failed", "serve: boom")),
        ("infeasible", "failed", None, ("failed", "serve: boom")),
        ("planned", None, {"h2": "CPU B"}, ("planned", "done on CPU B [h2], not on this host")),
    ],
)
def test_cell_status_a_result_decides_else_the_plan(plan_status, res, elsewhere, want):
    r = result(res, reason="serve: boom" if res == "failed" else None) if res else None
    got = cell_status(plan_status, "no kernel" if plan_status == "infeasible" else None, r, elsewhere)
    assert got.status == want[0]
    assert got.reason == want[1] or (want[1] is not None and got.reason.startswith(want[1]))


def test_a_done_result_under_a_plan_that_now_says_infeasible_reads_done_and_says_so():
    got = cell_status("infeasible", "no W4A16 kernel on AVX2", result("done"))
    assert got.status == "done" and "no W4A16 kernel on AVX2" in got.reason and "predates" in got.reason


def test_items_are_read_from_samples_keeping_only_per_item_scores(tmp_path):
    p = tmp_path / "t.jsonl"
    rows = [
        {"doc_id": 3, "acc": 1, "acc_norm": 0.0, "target": 1},
        {"doc_id": 4, "acc": True},  # a bool is not a score lm-eval reports for these metrics: left out
        {"doc_id": 5, "perplexity": -2.5},  # a loglikelihood, not an item score
        {"doc_id": 6, "acc": 0.0},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    items = read_sample_items(p)
    assert [(i.doc_id, i.scores) for i in items] == [(3, {"acc": 1.0, "acc_norm": 0.0}), (6, {"acc": 0.0})]
    r = result(quality={"tasks": {"t": {"items": [i.model_dump() for i in items]}}})
    assert r.items("t", "acc") == {3: 1.0, 6: 0.0} and r.items("t", "acc_norm") == {3: 0.0}
    assert result().items("t", "acc") == {}


def test_the_artefact_block_reads_and_writes_back_as_stored():
    """One Artefact: what a compressor returns, what serve loads and what the result stores. `server_args`
    came later and is left out of a dump when empty, so a stored result writes back as it was read."""
    from harness.result import Artefact

    r = CellResult.model_validate(V3)
    assert r.model_dump(mode="json")["artefact"] == V3["artefact"]
    art = r.artefact
    assert art is not None and art.server_args == {} and art.tokenizer_src == art.model
    gguf = Artefact(model="/w/model-Q4_K_M.gguf", dtype="gguf", quantization="Q4_K_M", tokenizer="/src")
    assert gguf.tokenizer_src == "/src" and "server_args" not in gguf.model_dump(mode="json")
    bnb = Artefact(
        model="/src", dtype="bfloat16", quantization="bitsandbytes", server_args={"quantization": "bitsandbytes"}
    )
    stored = result(artefact=bnb).model_dump(mode="json")["artefact"]
    assert stored["server_args"] == {"quantization": "bitsandbytes"}
    assert CellResult.model_validate(result(artefact=bnb).model_dump(mode="json")).artefact == bnb
