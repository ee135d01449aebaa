"""The drop limit's three-valued verdict (advisor/verdict.py) through recommend(), the text and --json.

The family: a reference and four cells one step from it, with paired CIs (in points: x100) built to sit
clearly within, clearly beyond, and across a 1.5pt limit, and one cell with no CI at all."""

import io
import json

import pandas as pd
import pytest
from rich.console import Console

from advisor.constraints import AdvisorInputError, Constraints, parse_max_drop
from advisor.render import render, to_json
from advisor.select import recommend
from advisor.verdict import VERDICTS, fmt_ci, fmt_drop, items_to_decide
from tests.unit.advisor.test_select import cell, frame_from, p, q

LIMIT = parse_max_drop("1.5pt")


def qn(cid, acc, se=0.01, n=500, n_total=2000):
    return {**q(cid, acc, se=se), "n": n, "n_total": n_total}


@pytest.fixture
def family():
    paired = lambda lo, hi: dict(paired_drop_ci_lo=lo, paired_drop_ci_hi=hi)  # noqa: E731
    cells = [
        cell("ref", tok=100),
        cell("inside", "int8", "gptq", "ref", tok=150, **paired(0.000, 0.010)),  # 0.5 pt, CI 0 to 1 pt
        cell("beyond", "int4", "rtn", "ref", tok=300, **paired(0.030, 0.070)),  # 5 pt, CI 3 to 7 pt
        cell("across", "int4", "gptq", "ref", tok=250, **paired(-0.010, 0.030)),  # 1 pt, CI -1 to 3 pt
        cell("noci", "int4", "awq", "ref", tok=200),  # 0.5 pt, no stderr and no items
    ]
    quality = [
        qn("ref", 0.600),
        qn("inside", 0.595),
        qn("beyond", 0.550),
        qn("across", 0.590),
        qn("noci", 0.595, se=None),
    ]
    perf = [p(c["cell_id"], 1, c["output_tok_s"]) for c in cells]
    return frame_from(cells, quality, perf)


def verdicts(rec):
    return rec.frame.set_index("cell_id")


def test_three_verdicts_from_the_ci_against_the_limit(family):
    f = verdicts(recommend(family, Constraints(max_drop=LIMIT)))
    assert f.loc["ref", "verdict"] == "within"
    assert f.loc["inside", "verdict"] == "within" and (f.loc["inside", "drop_lo"], f.loc["inside", "drop_hi"]) == (
        pytest.approx(0.0),
        pytest.approx(1.0),
    )
    assert f.loc["beyond", "verdict"] == "beyond" and f.loc["beyond", "drop_lo"] == pytest.approx(3.0)
    assert f.loc["across", "verdict"] == "undecided" and f.loc["across", "drop"] == pytest.approx(1.0)
    assert (f["drop_limit"] == 1.5).all()
    # within and beyond need no more items; only a straddling CI gets an estimate
    assert f.loc[["inside", "beyond", "ref"], "more_items"].isna().all()


def test_a_cell_without_a_ci_is_undecided_with_its_reason(family):
    f = verdicts(recommend(family, Constraints(max_drop=LIMIT)))
    noci = f.loc["noci"]
    # its point estimate (0.5 pt) is well within 1.5 pt, but without stderr or items there is no interval
    assert noci["drop"] == pytest.approx(0.5) and pd.isna(noci["drop_lo"]) and pd.isna(noci["drop_hi"])
    assert noci["verdict"] == "undecided" and noci["verdict_reason"].startswith("no 95% CI")
    assert pd.isna(noci["more_items"])


def test_more_items_estimate_from_the_half_width():
    # half-width 2 pt, 0.5 pt between the point and the limit: (2 / 0.5)^2 = 16 x the 500 items scored
    assert items_to_decide(1.0, -1.0, 3.0, 1.5, 500) == 16 * 500 - 500
    # point above the limit: the same rule, from the other side
    assert items_to_decide(2.0, 1.0, 3.0, 1.5, 100) == 400 - 100
    # a skewed interval whose half-width is narrower than the gap: the arm that crosses the limit
    assert items_to_decide(0.5, 0.4, 1.6, 1.5, 100) == pytest.approx(100 * (1.1 / 1.0) ** 2 - 100, abs=1)
    assert items_to_decide(1.5, 1.0, 2.0, 1.5, 100) is None  # the point sits on the limit
    assert items_to_decide(1.0, -1.0, 3.0, 1.5, 0) is None  # items scored unknown


def test_more_items_for_the_straddling_cell(family):
    f = verdicts(recommend(family, Constraints(max_drop=LIMIT)))
    across = f.loc["across"]
    assert across["n_items"] == 500  # min(cell, reference) items, summed over the tasks
    assert across["more_items"] == 7500  # 500 x (2 / 0.5)^2 - 500
    assert "≈7,500 more items would decide it" in across["verdict_reason"] and "estimate" in across["verdict_reason"]


def test_the_estimate_says_when_the_tasks_have_too_few_items_left():
    cells = [cell("ref"), cell("a", "int4", "rtn", "ref", paired_drop_ci_lo=-0.01, paired_drop_ci_hi=0.03)]
    quality = [qn("ref", 0.6, n=500, n_total=600), qn("a", 0.59, n=500, n_total=600)]
    f = verdicts(recommend(frame_from(cells, quality, []), Constraints(max_drop=LIMIT)))
    assert f.loc["a", "more_items"] == 7500 and "only 100 unscored items left" in f.loc["a", "verdict_reason"]


def test_decide_conservative_counts_only_within_and_point_ranks_undecided_marked(family):
    cons = recommend(family, Constraints(max_drop=LIMIT))  # the default
    assert list(cons.ranked["cell_id"]) == ["inside", "ref"]
    assert cons.rejected["quality"]["count"] == 3
    assert (cons.rejected["quality"]["beyond"], cons.rejected["quality"]["undecided"]) == (1, 2)
    point = recommend(family, Constraints(max_drop=LIMIT, decide="point"))
    # undecided cells whose point estimate is within are ranked, and still say undecided
    assert list(point.ranked["cell_id"]) == ["across", "noci", "inside", "ref"]
    assert list(point.ranked["verdict"]) == ["undecided", "undecided", "within", "within"]
    assert "beyond" not in set(point.ranked["cell_id"])
    with pytest.raises(AdvisorInputError, match="--decide 'maybe'"):
        Constraints(decide="maybe")


def test_an_undecided_point_above_the_limit_never_ranks(family):
    # 2 pt point estimate, CI 1 to 3 pt: undecided against 1.5 pt, and its point estimate is past it
    cells = [cell("ref"), cell("a", "int4", "rtn", "ref", paired_drop_ci_lo=0.01, paired_drop_ci_hi=0.03)]
    f = frame_from(cells, [qn("ref", 0.6), qn("a", 0.58)], [])
    rec = recommend(f, Constraints(max_drop=LIMIT, decide="point"))
    assert verdicts(rec).loc["a", "verdict"] == "undecided" and list(rec.ranked["cell_id"]) == ["ref"]


def text(rec) -> str:
    buf = io.StringIO()
    render(rec, Console(file=buf, width=400), None)
    return buf.getvalue()


def test_text_never_calls_an_undecided_cell_a_fit(family):
    out = text(recommend(family, Constraints(max_drop=LIMIT, decide="point")))
    assert "that fit" not in out  # the title counts fits and undecided apart
    assert "4 ranked: 2 fit, 2 undecided on the drop limit" in out
    assert "Recommended: m int4/gptq/none" in out  # the fastest ranked cell is the undecided one
    assert "UNDECIDED against the 1.5 points absolute limit, not shown to fit" in out
    row = next(line for line in out.splitlines() if "[across]" in line)
    assert "undecided: ≈7,500 more items would decide it (estimate)" in row and "not shown to fit" in row


def test_text_lists_what_conservative_left_undecided(family):
    out = text(recommend(family, Constraints(max_drop=LIMIT)))
    assert "top 2 of 2 that fit" in out and "--decide conservative" in out
    assert "undecided on the drop limit" in out
    row = next(line for line in out.splitlines() if "[across]" in line and "straddles" in line)
    assert "≈7,500 more items would decide it" in row
    assert "2 of the 3 cell(s) the drop limit left out are undecided on it" in out
    assert "pass --decide point" in out


def test_json_carries_verdict_ci_limit_and_more_items_for_each_cell(family):
    doc = json.loads(json.dumps(to_json(recommend(family, Constraints(max_drop=LIMIT))), default=str))
    assert doc["constraints"]["decide"] == "conservative" and doc["drop_unit"] == "points"
    by = {v["cell_id"]: v for v in doc["drop_verdicts"]}
    assert set(by) == {"ref", "inside", "beyond", "across", "noci"}
    assert all(v["verdict"] in VERDICTS and v["drop_limit"] == 1.5 for v in by.values())
    a = by["across"]
    assert (a["verdict"], a["drop_lo"], a["drop_hi"], a["more_items"], a["ranked"]) == (
        "undecided",
        pytest.approx(-1.0),
        pytest.approx(3.0),
        7500,
        False,
    )
    assert by["noci"]["drop_lo"] is None and by["noci"]["more_items"] is None
    assert [r["verdict"] for r in doc["recommendations"]] == ["within", "within"]
    assert doc["rejected"]["quality"]["undecided"] == 2 and doc["rejected"]["quality"]["beyond"] == 1


def test_no_limit_means_no_verdict(family):
    doc = to_json(recommend(family, Constraints()))
    assert doc["drop_verdicts"] is None and all(r["verdict"] is None for r in doc["recommendations"])


def test_drops_read_as_a_person_writes_them():
    assert fmt_drop(1.6, relative=False) == "+1.6 pt"
    assert fmt_drop(-0.02, relative=True) == "\u22122.0 %"
    assert fmt_drop(-0.0001, relative=True) == "0.0 %"
    assert fmt_drop(float("nan"), relative=False) == "?"
    assert fmt_ci(-0.4, 3.6, relative=False) == "95% CI \u22120.4 to +3.6 pt"
    assert fmt_ci(None, 3.6, relative=False) == "no 95% CI"
