"""Speculative decoding as a grid axis (harness/plan/speculative.py): a new cell per target x draft with a stable
id that moves no existing cell, its lineage, what makes it infeasible, and the accepted length predicted before
running (Leviathan et al. 2023), checked against a simulation of the process it models."""

import copy
import json

import numpy as np
import pytest

from harness.plan import plan_matrix
from harness.plan.speculative import predicted_accepted_len, prediction, vocab_fingerprint, vocab_problem
from harness.result import CellResult
from harness.spec import load_matrix, parse_matrix
from tests.conftest import MATRICES

STUDENT = {
    "name": "kd",
    "kind": "untrained",
    "student": {"kind": "prune", "keep_every": 2},
    "methods": [],
}


def _matrix(base_matrix, drafts, axis=None):
    m = copy.deepcopy(base_matrix)
    m["students"] = [STUDENT]
    m["axes"]["distill"] = ["none", "kd"]
    m["axes"]["draft"] = axis or ["none", *drafts]
    m["drafts"] = drafts
    return m


def _plan(m, settings, host="cpu-avx512"):
    return plan_matrix(parse_matrix(m), settings, host=host)


def test_drafts_add_cells_and_move_no_existing_id(base_matrix, settings):
    m = _matrix(base_matrix, {})
    m["axes"].pop("draft")
    m.pop("drafts")
    before = _plan(m, settings)
    after = _plan(_matrix(base_matrix, {"d": {"student": "kd", "method": "gguf", "targets": ["gguf"]}}), settings)
    old = [c.cell_id for c in before.cells]
    assert [c.cell_id for c in after.cells][: len(old)] == old  # the same cells, in the same order, first
    spec = [c for c in after.cells if c.draft is not None]
    assert len(spec) == 1 and spec[0].cell_id not in old
    target = next(c for c in after.cells if c.cell_id == spec[0].draft.target_id)
    assert (target.method, target.distill, target.serving.kind) == ("gguf", "none", "llamacpp")
    # the spec cell is its target's configuration with a draft: same lineage, its reference is the target's
    assert spec[0].parent_id == target.parent_id and spec[0].serving == target.serving
    assert spec[0].label == target.label + "+d" and spec[0].status == "planned", spec[0].reason
    # the draft is the student's int4 GGUF cell (not on the grid: the student is crossed with no method)
    dc = spec[0].draft.cell
    assert (dc.distill, dc.precision, dc.method) == ("kd", "int4", "gguf") and not spec[0].draft.in_grid
    base = next(c for c in after.cells if c.distill == "kd" and c.method == "none")
    assert spec[0].draft.alpha_from == base.cell_id == dc.parent_id
    # the draft's weights and KV cache are added to the target's memory estimate
    assert spec[0].estimate.total_gib > target.estimate.total_gib


def test_spec_ids_are_stable_and_differ_by_what_the_draft_is(base_matrix, settings):
    d = {"student": "kd", "method": "gguf", "targets": ["gguf"]}
    a = [c for c in _plan(_matrix(base_matrix, {"d": d}), settings).cells if c.draft]
    b = [c for c in _plan(_matrix(base_matrix, {"d": dict(d)}), settings).cells if c.draft]
    assert [c.cell_id for c in a] == [c.cell_id for c in b]
    renamed = [c for c in _plan(_matrix(base_matrix, {"other": d}), settings).cells if c.draft]
    assert renamed[0].cell_id == a[0].cell_id  # a draft's name is not what is measured
    more = [c for c in _plan(_matrix(base_matrix, {"d": {**d, "tokens": 6}}), settings).cells if c.draft]
    assert more[0].cell_id != a[0].cell_id


def test_unset_targets_pair_a_draft_with_every_teacher_cell_its_engine_takes(base_matrix, settings):
    p = _plan(_matrix(base_matrix, {"v": {"student": "kd"}}), settings)
    spec = [c for c in p.cells if c.draft is not None]
    assert {c.method for c in spec} == {"none", "w8a8", "w4a16"}  # every vLLM teacher cell, not the GGUF one
    assert all(c.serving.kind == "vllm" and c.status == "planned" for c in spec), [c.reason for c in spec]
    assert any("x draft v: llamacpp takes a GGUF file" in s for s in p.skipped)
    # spec-decoded cells come last: they read their target's and their draft's results
    first_spec = next(i for i, c in enumerate(p.cells) if c.draft is not None)
    assert all(c.draft is not None for c in p.cells[first_spec:])


def test_a_target_whose_engine_cannot_take_the_draft_is_infeasible_with_the_fix(base_matrix, settings):
    p = _plan(_matrix(base_matrix, {"v": {"student": "kd", "targets": ["gguf"]}}), settings)
    (spec,) = [c for c in p.cells if c.draft is not None]
    assert spec.status == "infeasible"
    assert "llamacpp (the target's engine) drafts with a GGUF file" in spec.reason
    assert "give the draft a method served by llamacpp" in spec.reason


def test_a_draft_with_another_vocabulary_is_infeasible(base_matrix, settings, tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    cfg = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    p = _plan(
        _matrix(base_matrix, {"x": {"source": {"kind": "local", "path": str(folder)}, "targets": ["none"]}}), settings
    )
    (spec,) = [c for c in p.cells if c.draft is not None]
    assert spec.status == "infeasible" and "its vocabulary has 32000 tokens and the target's 49152" in spec.reason
    assert spec.draft.cell is None and spec.draft.alpha_from is None


def test_an_ambiguous_draft_precision_is_a_reason(base_matrix, settings):
    m = _matrix(base_matrix, {"d": {"student": "kd", "method": "g2", "targets": ["gguf"]}})
    m["methods"]["g2"] = {"kind": "gguf", "precisions": ["int8", "int4"]}
    (spec,) = [c for c in _plan(m, settings).cells if c.draft is not None]
    assert spec.status == "infeasible" and "say which with `precision:`" in spec.reason
    m["drafts"]["d"]["precision"] = "int8"
    (spec,) = [c for c in _plan(m, settings).cells if c.draft is not None]
    assert spec.status == "planned" and spec.draft.cell.precision == "int8"


def test_the_shipped_matrices_plan_their_spec_cells(settings):
    p = plan_matrix(load_matrix(MATRICES / "smollm2-cpu.yaml"), settings, host="cpu-avx512")
    spec = [c for c in p.cells if c.draft is not None]
    assert [(c.method, c.serving.kind, c.draft.name) for c in spec] == [("gguf", "llamacpp", "kd-draft")]
    full = plan_matrix(load_matrix(MATRICES / "smollm2-cpu-full.yaml"), settings, host="cpu-avx512")
    engines = {c.serving.kind for c in full.cells if c.draft is not None}
    assert engines == {"llamacpp", "vllm"}
    # vLLM's draft_model method is planned on CUDA hosts too (harness/serve/speculative.py)
    gpu = plan_matrix(load_matrix(MATRICES / "smollm2-cpu-full.yaml"), settings, host="cuda-h100")
    assert any(c.draft is not None and c.serving.kind == "vllm" for c in gpu.cells)


def test_leviathan_accepted_length():
    assert predicted_accepted_len(0.0, 4) == 1.0
    assert predicted_accepted_len(1.0, 4) == 5.0
    assert predicted_accepted_len(0.5, 4) == pytest.approx(1.9375)
    with pytest.raises(ValueError):
        predicted_accepted_len(1.5, 4)


@pytest.mark.parametrize("alpha,gamma", [(0.2, 3), (0.6, 4), (0.9, 5), (0.97, 8)])
def test_the_prediction_matches_a_simulation_of_greedy_verification(alpha, gamma):
    """Each step drafts gamma tokens; the target accepts the longest prefix of independent Bernoulli(alpha)
    successes and adds its own token: mean tokens per step over 200,000 simulated steps vs the formula."""
    rng = np.random.default_rng(0)
    ok = rng.random((200_000, gamma)) < alpha
    accepted = np.where(ok.all(axis=1), gamma, np.argmin(ok, axis=1))  # the first rejection ends the step
    got = float((accepted + 1).mean())
    se = float((accepted + 1).std() / np.sqrt(len(accepted)))
    assert abs(got - predicted_accepted_len(alpha, gamma)) < 4 * se


def test_prediction_reads_the_students_measured_agreement(base_matrix, settings):
    p = _plan(_matrix(base_matrix, {"d": {"student": "kd", "method": "gguf", "targets": ["gguf"]}}), settings)
    (spec,) = [c for c in p.cells if c.draft is not None]
    none = prediction(spec, None)
    assert none.mean_accepted_len is None and "run the draft's student cell" in none.note
    res = CellResult.model_validate(
        {
            "cell_id": spec.draft.alpha_from,
            "matrix": "m",
            "label": "x",
            "status": "done",
            "plan": {},
            "shift": {"metrics": {"top1_agreement": 0.75, "n_tokens": 1024}},
        }
    )
    pr = prediction(spec, res)
    assert pr.alpha == 0.75 and pr.gamma == 4
    assert pr.mean_accepted_len == pytest.approx((1 - 0.75**5) / 0.25)
    assert spec.draft.alpha_from in pr.source


def test_vocabularies_are_compared_by_tokenizer_and_size(tmp_path):
    for name, vocab in (("a", {"x": 0, "y": 1}), ("b", {"x": 0, "y": 1}), ("c", {"x": 1, "y": 0})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}))
    assert vocab_fingerprint(tmp_path / "a") == vocab_fingerprint(tmp_path / "b") != vocab_fingerprint(tmp_path / "c")
    assert vocab_fingerprint(tmp_path / "missing") is None
    assert vocab_problem(49152, 49152, "d") is None and vocab_problem(None, 5, "d") is None
    assert "32000 tokens and the target's 49152" in vocab_problem(49152, 32000, "d")
