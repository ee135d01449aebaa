"""The advisor on sequentially decided cells (advisor/verdict.py, advisor/select.py): the stored anytime-valid
confidence sequence replaces the fixed-n interval where the measure and units match, its projection gives the
rounds that would decide an undecided one, a skipped evaluation says so; `--matrix` takes the `decide:` block's
defaults."""

from __future__ import annotations

import pytest

from advisor.constraints import Constraints, parse_max_drop
from advisor.select import recommend
from tests.unit.advisor.test_select import cell, frame_from, p, q


def decided(verdict, lo, hi, point, items=40, more=None, stop=None, measure="aggregate", relative=True):
    return {
        "decision_measure": measure,
        "decision_relative": relative,
        "decision_error_rate": 0.05,
        "decision_verdict": verdict,
        "decision_stop": stop or verdict,
        "decision_stop_reason": "why",
        "decision_items": items,
        "decision_point": point,
        "decision_lo": lo,
        "decision_hi": hi,
        "decision_more_items": more,
    }


def frame():
    cells = [
        cell("ref", tok=10.0, **decided(None, None, None, None, stop="reference")),
        cell("a", prec="int8", method="w8a8", parent="ref", tok=30.0, **decided("within", -0.03, 0.04, 0.0)),
        cell(
            "b",
            prec="int4",
            method="gptq",
            parent="ref",
            tok=50.0,
            **decided("undecided", -0.1, 0.2, 0.06, more=300, stop="budget"),
        ),
        cell("c", prec="int4", method="awq", parent="ref", tok=60.0, **decided(None, None, None, None, stop="skipped")),
    ]
    quality = [q("ref", 0.5), q("a", 0.5), q("b", 0.47)]  # fixed-n stderr would say otherwise
    perf = [p(c["cell_id"], 1, c["output_tok_s"]) for c in cells]
    return frame_from(cells, quality, perf)


def test_the_stored_sequence_judges_a_sequentially_decided_drop():
    c = Constraints(max_drop=parse_max_drop("5%"), device="gpu")
    rec = recommend(frame(), c)
    f = rec.frame.set_index("cell_id")
    assert f.loc["a", "verdict"] == "within" and f.loc["a", "drop_hi"] == pytest.approx(0.04)
    assert "95% interval valid under repeated looks over 40 paired items" in f.loc["a", "ci_kind"]
    assert f.loc["b", "verdict"] == "undecided" and int(f.loc["b", "more_items"]) == 300
    assert "≈300 more items would decide it" in f.loc["b", "verdict_reason"]
    assert f.loc["c", "verdict"] == "undecided" and f.loc["c", "verdict_reason"].startswith("not evaluated: why")
    assert list(rec.ranked["cell_id"]) == ["a", "ref"]  # b and c are not shown to fit
    # a stricter limit is judged from the same sequence: [-3 %, +4 %] is not within 2 %
    rec2 = recommend(frame(), Constraints(max_drop=parse_max_drop("2%"), device="gpu"))
    assert rec2.frame.set_index("cell_id").loc["a", "verdict"] == "undecided"


def test_an_aggregate_over_named_tasks_matches_its_decision():
    cells = [
        cell("ref", tok=10.0, **decided(None, None, None, None, stop="reference")),
        cell(
            "a",
            prec="int8",
            method="w8a8",
            parent="ref",
            tok=30.0,
            **decided("within", -0.03, 0.04, 0.0, measure="aggregate:t1,t2"),
        ),
    ]
    quality = [q("ref", 0.5, task="t1"), q("a", 0.5, task="t1"), q("ref", 0.4, task="t2"), q("a", 0.4, task="t2")]
    f = frame_from(cells, quality, [p(c["cell_id"], 1, c["output_tok_s"]) for c in cells])
    c = Constraints(max_drop=parse_max_drop("5%"), device="gpu", tasks=("t1", "t2"))
    rec = recommend(f, c)
    assert "repeated looks" in rec.frame.set_index("cell_id").loc["a", "ci_kind"]
    assert rec.measure.startswith("avg_acc over t1, t2")
    plain = recommend(f, Constraints(max_drop=parse_max_drop("5%"), device="gpu"))
    assert "repeated looks" not in str(plain.frame.set_index("cell_id").loc["a", "ci_kind"])


def test_another_measure_or_unit_keeps_the_fixed_n_interval():
    rec = recommend(frame(), Constraints(max_drop=parse_max_drop("1pt"), device="gpu"))
    f = rec.frame.set_index("cell_id")
    assert "repeated looks" not in str(f.loc["a", "ci_kind"])  # decided relative, asked absolute


def test_advisor_matrix_takes_the_decide_block_as_defaults(tmp_path, capsys):
    import yaml

    from advisor.cli import _matrix_defaults, _recommend_parser
    from advisor.constraints import AdvisorInputError
    from tests.conftest import MATRICES

    argv = ["--matrix", str(MATRICES / "smollm2-cpu.yaml"), "--objective", "latency"]
    a = _recommend_parser().parse_args(argv)
    _matrix_defaults(a, argv)
    assert (a.max_drop, a.vram, a.objective, a.device, a.task) == ("5%", "24.0", "latency", "cpu", None)
    assert a.tasks == "arc_easy,hellaswag,lambada_openai"  # the default's measure
    m = yaml.safe_load((MATRICES / "smollm2-cpu.yaml").read_text())
    m.pop("decide")
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(m))
    argv = ["--matrix", str(path)]
    with pytest.raises(AdvisorInputError, match="no `decide:` block"):
        _matrix_defaults(_recommend_parser().parse_args(argv), argv)
