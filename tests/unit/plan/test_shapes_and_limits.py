"""Load shapes a cell's server would refuse are infeasible at plan time, with the numbers and the fix; the
matrix's `limits:` reach every CellPlan without entering any cell id (ids pinned below)."""

import copy
from pathlib import Path

import pytest
import yaml

from harness.plan import plan_matrix
from harness.spec import load_matrix, parse_matrix
from harness.spec.matrix import Limits
from tests.conftest import MATRICES

# Cell ids of the shipped matrices as planned before `limits` existed (and before the load-shape checks):
# neither may change one.
# re-pinned when the matrices moved to lm-eval's own tasks (issue #20); the ids of a matrix whose tasks
# did not change stay the same (tests/unit/plan/test_planner.py)
PINNED = {
    # the default re-pinned when its measured tasks (LAMBADA, ARC-Easy, HellaSwag) lost their first-N limits for
    # its `decide:` block (issue #29: scored in a seeded order until the question is decided); `decide:` itself
    # enters no id; re-pinned again when its GSM8K turned on the chat template (issue #27: `apply_chat_template`
    # per task) and 256 new tokens (its chat answers need them), which are in every cell's evaluation; a matrix that
    # leaves the new task fields unset keeps its ids; re-pinned when ARC-Challenge left the default's fixed tasks
    # (issue #29: its time goal; a 135M model answers it at chance level); re-pinned when the default sent 8 prompts
    # per request (`batch_size: 8`, issue #31: same answers, less evaluate time)
    # (test_a_matrix_written_before_the_new_evaluation_fields_keeps_its_cell_ids below)
    ("smollm2-cpu.yaml", "cpu-avx512"): [
        "1743e1d22c30",
        "aa00bde1a920",
        "caa50096e6f9",
        "3ab0f536cf3a",
        "2e16123c79fa",
        "70c52c64b1f6",
        "13a60d5e7ae0",  # the spec-decoded cell (issue #28): new, after every cell above, which kept its id
    ],
    ("smollm2-cpu.yaml", "cpu-avx2"): [
        "36fc06d8e59e",
        "f6dd64c9bf01",
        "b85e57d45302",
        "3ab0f536cf3a",
        "31f1ddad52cf",
        "f525b9e2bdd8",
        "13a60d5e7ae0",  # the spec-decoded cell (issue #28): its target, the GGUF cell, is the same on both hosts
    ],
    ("llama8b.yaml", "cuda-h100"): [
        "14516a441bc1",
        "b378db312878",
        "595b426890be",
        "75891174ed60",
        "abd00cd82d81",
        "f83325bad693",
        "c6485678101b",
        "c41b6718ccaf",
        # the student's eight cells, re-pinned when kd-4l became kd-half (issue #19: renamed for the 16 of 32
        # layers it keeps, trained in bf16 with 8-bit AdamW and checkpointing at 4 x 2048 tokens, 150 steps)
        "a15d643bca9a",
        "23b71e48302b",
        "f80c354a4304",
        "d9618d6d20fd",
        "f0f4f8c88942",
        "c6f837cdd388",
        "b75563f59a59",
        "4ed718a9c30a",
    ],
}


@pytest.mark.parametrize("name, host", sorted(PINNED))
def test_limits_reach_every_cell_and_change_no_id(name, host, settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    doc = yaml.safe_load((MATRICES / name).read_text())
    plan = plan_matrix(load_matrix(MATRICES / name), settings, host=host)
    assert [c.cell_id for c in plan.cells] == PINNED[(name, host)]
    assert all(c.limits == Limits() for c in plan.cells)
    assert all("limits" not in c.model_dump(mode="json") for c in plan.cells)  # stored plans read as before
    doc["limits"] = {"cell_deadline_s": 5400, "evaluate_timeout_s": 600, "shift_timeout_s": 300}
    limited = plan_matrix(parse_matrix(copy.deepcopy(doc)), settings, host=host)
    assert [c.cell_id for c in limited.cells] == PINNED[(name, host)]
    want = Limits(cell_deadline_s=5400, evaluate_timeout_s=600, shift_timeout_s=300)
    assert all(c.limits == want for c in limited.cells)
    assert limited.cells[0].model_dump(mode="json")["limits"]["cell_deadline_s"] == 5400


def cells(base_matrix, settings, host="cpu-avx512"):
    plan = plan_matrix(parse_matrix(base_matrix), settings, host=host)
    return {(c.precision, c.method): c for c in plan.cells}


def test_requests_longer_than_the_vllm_context_are_infeasible(base_matrix, settings):
    base_matrix["load"]["input_tokens"], base_matrix["load"]["output_tokens"] = 2000, 64
    by = cells(base_matrix, settings)
    vllm = [c for c in by.values() if c.serving.kind == "vllm"]
    assert vllm and all(c.status == "infeasible" for c in vllm)
    assert (
        "load.input_tokens 2000 + load.output_tokens 64 = 2064 tokens per request exceed max_model_len of the "
        "`kind: vllm` serving entry 2048: every request would be refused; raise max_model_len of the "
        "`kind: vllm` serving entry to >= 2064 or shorten the requests"
    ) in vllm[0].reasons
    base_matrix["serving"]["max_model_len"] = 2064  # exactly enough
    base_matrix["extra_serving"][0]["max_model_len"] = 2064  # the GGUF cell's slot
    assert not any("tokens per request" in r for c in cells(base_matrix, settings).values() for r in c.reasons)


def test_llamacpp_requests_must_fit_one_slot(base_matrix, settings):
    """llama-server gets -c max_model_len x parallel and -np parallel: one request has max_model_len tokens."""
    base_matrix["extra_serving"] = [{"kind": "llamacpp", "max_model_len": 128, "parallel": 16}]
    gguf = cells(base_matrix, settings)[("int4", "gguf")]
    assert any(
        "= 160 tokens per request exceed max_model_len of the `kind: llamacpp` serving entry 128 (per slot)" in r
        for r in gguf.reasons
    ), gguf.reasons
    # scored in-process with a context of its own: evaluation.max_length 1024 > 128 is no reason here
    assert not any("evaluation" in r for r in gguf.reasons)
    base_matrix["extra_serving"][0]["max_model_len"] = 160
    assert not any("per request" in r for r in cells(base_matrix, settings)[("int4", "gguf")].reasons)


def test_evaluation_and_shift_windows_must_fit_the_scoring_server(base_matrix, settings):
    base_matrix["serving"]["max_model_len"] = 1024  # evaluation.max_length 1024 + 1, shift 256 + 2 fit? no / yes
    ref = next(c for c in cells(base_matrix, settings).values() if c.method == "none")
    assert ref.status == "infeasible" and ref.reasons == [
        "evaluation.max_length 1024 + 1 scored token exceeds max_model_len of the `kind: vllm` serving entry 1024: "
        "lm-eval's longest windows would be refused; lower evaluation.max_length to <= 1023 or raise max_model_len "
        "of the `kind: vllm` serving entry to >= 1025"
    ]
    base_matrix["serving"]["max_model_len"] = 257
    base_matrix["evaluation"]["max_length"] = 128
    base_matrix["load"]["input_tokens"] = 64
    ref = next(c for c in cells(base_matrix, settings).values() if c.method == "none")
    assert [r for r in ref.reasons if "shift" in r] == [
        "evaluation.shift.tokens 256 (+ 2: the window's next token and one generated) exceeds max_model_len of the "
        "`kind: vllm` serving entry 257; lower evaluation.shift.tokens to <= 255 or raise max_model_len of the "
        "`kind: vllm` serving entry to >= 258"
    ]
    base_matrix["evaluation"]["shift"] = None
    assert next(c for c in cells(base_matrix, settings).values() if c.method == "none").status == "planned"


def test_a_matrix_written_before_the_new_evaluation_fields_keeps_its_cell_ids(settings, monkeypatch):
    """The default matrix as it stood before issue #20 (dq_* tasks, num_fewshot then defaulting to 0):
    the fields added since (num_fewshot's None default, chat template options, gen_kwargs, resolve_drop,
    load SLOs and repeats) are left out of the id at their defaults, so its finished cells still resume."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    old = Path(__file__).parents[2] / "fixtures" / "matrices" / "smollm2-cpu-2026-11-23.yaml"
    plan = plan_matrix(load_matrix(old), settings, host="cpu-avx2")
    assert [c.cell_id for c in plan.cells] == [
        "fe9baa8abf29",
        "83597df9d0fb",
        "7ae18db8a269",
        "7bbc339a8621",
        "8d19bf448b42",
        "bbad5bc6786e",
    ]
