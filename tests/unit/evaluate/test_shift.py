"""Distribution-shift maths: KL and agreement on hand-made distributions, the top-k approximation against
exact KL, the paired bootstrap against a known case, flips on synthetic samples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.evaluate.shift import (
    flips,
    kl_exact,
    kl_topk,
    paired_bootstrap,
    read_items,
    shift_metrics,
    topk_from_logits,
)


def dump(logits: np.ndarray, tokens: np.ndarray, k: int) -> dict:
    token_lp, top_ids, top_lp = topk_from_logits(logits, tokens, k)
    return {"tokens": tokens, "token_lp": token_lp, "top_ids": top_ids, "top_lp": top_lp}


def test_kl_of_a_hand_computed_pair():
    # vocabulary of 3, k = 3 (complete): KL(p||q) = sum p log p/q
    p, q = np.array([0.7, 0.2, 0.1]), np.array([0.5, 0.3, 0.2])
    want = float((p * np.log(p / q)).sum())  # 0.0851...
    got = kl_topk(np.array([[0, 1, 2]]), np.log(p)[None], np.array([[0, 1, 2]]), np.log(q)[None])
    assert got[0] == pytest.approx(want, rel=1e-9)
    assert kl_exact(np.log(p)[None], np.log(q)[None])[0] == pytest.approx(want, rel=1e-9)


def test_identical_dumps_have_zero_kl_and_full_agreement():
    rng = np.random.default_rng(0)
    logits, tokens = rng.normal(size=(50, 100)), rng.integers(0, 100, 50)
    d = dump(logits, tokens, 10)
    m = shift_metrics(d, d)
    assert m["kld_mean"] == pytest.approx(0, abs=1e-12) and m["kld_p99"] == pytest.approx(0, abs=1e-12)
    assert m["top1_agreement"] == 1.0 and m["ppl_ratio"] == pytest.approx(1.0) and m["dp_rms"] == 0


def test_agreement_delta_p_and_perplexity_ratio_are_exact():
    # two positions, vocab 4; the cell flips the argmax at position 1 only
    ref = np.log(np.array([[0.6, 0.2, 0.1, 0.1], [0.5, 0.3, 0.1, 0.1]]))
    cell = np.log(np.array([[0.6, 0.2, 0.1, 0.1], [0.3, 0.5, 0.1, 0.1]]))
    tokens = np.array([0, 0])
    m = shift_metrics(dump(ref, tokens, 2), dump(cell, tokens, 2))
    assert m["top1_agreement"] == 0.5
    assert m["dp_mean"] == pytest.approx((0.0 - 0.2) / 2)
    assert m["dp_rms"] == pytest.approx(math.sqrt(0.04 / 2))
    assert m["ppl_ratio"] == pytest.approx(
        math.exp((-math.log(0.6) - math.log(0.3)) / 2 - (-math.log(0.6) - math.log(0.5)) / 2)
    )


def test_different_tokens_are_refused():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 20))
    with pytest.raises(ValueError, match="different tokens"):
        shift_metrics(dump(logits, np.arange(5), 3), dump(logits, np.arange(1, 6), 3))


def test_topk_kl_orders_noisy_copies_like_exact_kl():
    # a 5,000-token vocabulary; cells are noisy copies of the reference's logits (like quantization).
    # The error against real model logits is measured in tests/integration/test_shift_exact.py.
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(300, 5000)) * 3.0
    r = dump(ref, np.zeros(300, int), 20)
    exact, approx = [], []
    for noise in (0.05, 0.2, 0.8):
        cell = ref + rng.normal(size=ref.shape) * noise
        c = dump(cell, np.zeros(300, int), 20)
        exact.append(kl_exact(ref, cell).mean())
        approx.append(kl_topk(r["top_ids"], r["top_lp"], c["top_ids"], c["top_lp"]).mean())
    assert exact == sorted(exact) and approx == sorted(approx)
    assert all(0.2 * e < a < 1.5 * e for e, a in zip(exact, approx))


def test_paired_bootstrap_known_case():
    # every item drops by exactly 1: any resample gives 1
    lo, hi = paired_bootstrap(np.ones(30), np.zeros(30), iters=500)
    assert lo == hi == 1.0
    # half the items flip right->wrong: the drop is 0.5 and the CI is the binomial one, about +-0.18 at n=30
    ref, cell = np.ones(30), np.r_[np.zeros(15), np.ones(15)]
    lo, hi = paired_bootstrap(ref, cell, iters=4000, seed=3)
    se = math.sqrt(0.25 / 30)
    assert lo == pytest.approx(0.5 - 1.96 * se, abs=0.05) and hi == pytest.approx(0.5 + 1.96 * se, abs=0.05)


def test_stratified_bootstrap_averages_task_drops():
    ref = np.r_[np.ones(10), np.ones(40)]
    cell = np.r_[np.zeros(10), np.ones(40)]  # task a drops 1.0, task b 0.0 -> aggregate 0.5 exactly
    lo, hi = paired_bootstrap(ref, cell, iters=300, strata=np.array(["a"] * 10 + ["b"] * 40))
    assert lo == hi == pytest.approx(0.5)


def test_flips_on_synthetic_samples(tmp_path):
    def write(name: str, accs: list[float]) -> dict[int, float]:
        p = tmp_path / name
        p.write_text("".join(json.dumps({"doc_id": i, "acc": a, "target": 0}) + "\n" for i, a in enumerate(accs)))
        return read_items(p, "acc")

    ref = write("ref.jsonl", [1, 1, 1, 0, 0, 1])
    cell = write("cell.jsonl", [1, 0, 0, 1, 0, 1])
    f = flips(ref, cell, iters=200)
    assert f["n"] == 6 and f["ref_correct_cell_wrong"] == 2 and f["ref_wrong_cell_correct"] == 1
    assert f["lost_doc_ids"] == [1, 2] and f["gained_doc_ids"] == [3]
    assert f["flip_rate"] == pytest.approx(0.5) and f["drop_abs"] == pytest.approx(1 / 6)
    assert f["drop_ci95"][0] <= f["drop_abs"] <= f["drop_ci95"][1]
