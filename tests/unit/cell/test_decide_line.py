"""The live decision line names the interval its method computed (harness/cell/decide.py)."""

from __future__ import annotations

import pytest

from harness.cell.decide import decision_line
from harness.decide.question import method_text
from harness.result import Decision


def _decision(method: str) -> Decision:
    return Decision(
        method=method_text(method),
        measure="aggregate",
        max_drop="5%",
        relative=True,
        limit=0.05,
        error_rate=0.05,
        seed=0,
        batch_items=50,
        max_items=300,
        reference="ref",
        verdict="undecided",
        stop="budget",
        items_used=300,
        point=-0.018,
        lo=-0.101,
        hi=0.058,
    )


@pytest.mark.parametrize(
    ("method", "words"),
    [("group-sequential", "repeated 95% CI -10.1 to +5.8"), ("confidence-sequence", "anytime 95% CS -10.1 to +5.8")],
)
def test_the_line_names_the_methods_interval(method, words):
    line = decision_line(_decision(method))
    assert "drop -1.8 %" in line and words in line
