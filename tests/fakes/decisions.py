"""A stored sequential decision (harness/result.Decision) for tests: the question's fields every test repeats
(the default method, a 5 % relative limit, error rate 5 %, 20 items in looks of 10), each overridable."""

from __future__ import annotations

from typing import Any

from harness.decide.question import method_text
from harness.result import Decision

QUESTION: dict[str, Any] = {
    "method": method_text("group-sequential"),  # the default `decide.method`
    "measure": "aggregate",
    "max_drop": "5%",
    "relative": True,
    "limit": 0.05,
    "error_rate": 0.05,
    "seed": 0,
    "batch_items": 10,
    "max_items": 20,
    "stop": "reference",
}


def decision(**fields: Any) -> Decision:
    return Decision(**(QUESTION | fields))
