"""Leave-one-out: each cell predicted from the others of its host, never from itself; summaries and words."""

import pytest

from harness.predict.accuracy import error_words, loo, summary
from tests.unit.predict.conftest import FIGS, case, obs


def cells():
    ref = obs("ref", case("bf16"), peak=3.9, levels=[(1, 24.0, 37.0, 120.0), (16, 135.0, 60.0, 1900.0)], parent=None)
    out = [ref]
    for i, (s, peak, tok) in enumerate((("w4a16-rtn", 3.4, 4.0), ("w4a16-awq", 3.41, 4.2), ("w4a16-gptq", 3.39, 3.9))):
        out.append(obs(f"w4{i}", case(s, kld=0.3), peak=peak, levels=[(1, tok, 240.0, 1300.0)], drop=0.1 + 0.01 * i))
    out.append(obs("w8", case("w8a8", kld=0.03), peak=3.7, levels=[(1, 2.2, 470.0, 1390.0)], drop=0.0))
    return out


def test_loo_never_sees_the_cell_it_predicts():
    o = cells()
    rows = loo(o, {"h1": FIGS})
    figs = {r.figure for r in rows}
    assert {"memory", "decode", "tpot", "ttft", "drop-fidelity", "drop-blind"} <= figs
    # the three w4a16 cells predict each other: decode within a few % (same kernel, similar efficiency)
    w4 = [r for r in rows if r.figure == "decode" and r.kind == "w4a16"]
    assert len(w4) == 3 and max(r.ape for r in w4) < 10
    # the only w8a8 cell is predicted from other kernels: wider, and never from its own figure
    w8 = next(r for r in rows if r.figure == "decode" and r.cell_id == "w8")
    assert w8.predicted != pytest.approx(2.2) and w8.hi / w8.lo > 3
    # leaving the cell out changes its prediction: adding it back would make memory exact
    mem = {r.cell_id: r for r in rows if r.figure == "memory"}
    assert all(r.ape > 0 for r in mem.values())


def test_summaries_and_the_words_beside_a_prediction():
    rows = loo(cells(), {"h1": FIGS})
    s = {(x.figure, x.group): x for x in summary(rows)}
    assert s[("memory", "all")].cells == 5 and s[("decode", "vllm w4a16")].cells == 3
    assert s[("drop-blind", "all")].coverage is not None and s[("drop-blind", "all")].mape is None
    words = error_words(rows, "vllm")
    assert words["decode"].startswith("±") and "5 cell(s) of this host, vllm" in words["decode"]
    assert "measured drops" in words["drop"]
    assert error_words([], "vllm")["memory"] is None


def test_no_figures_no_speed_rows():
    rows = loo(cells(), {})
    assert {r.figure for r in rows} == {"memory", "drop-fidelity", "drop-blind"}
