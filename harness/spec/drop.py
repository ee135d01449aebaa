"""A quality drop written as the user writes it: `2%` (relative to the reference's score) or `1.5pt`
(absolute accuracy points). Pure; read by the matrix's `evaluation.resolve_drop` (harness/spec/evaluation.py) and
the plan's power figures (harness/plan/power.py).

The advisor's `--max-drop` takes the same words (advisor/constraints.py); the harness must not import the
advisor, so the few lines of parsing live here too, with the same meaning: a relative drop is
(reference - cell) / reference, an absolute one is reference - cell in percentage points.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DROP = re.compile(r"(\d+(?:\.\d+)?)\s*(%|pt|pts|points?)")
FORMS = "a relative drop like '2%' (of the reference's score) or absolute accuracy points like '1.5pt'"


@dataclass(frozen=True)
class Drop:
    value: float  # a fraction of the reference's score (0.02) when relative, accuracy points (1.5) when absolute
    relative: bool

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}pt"

    def points(self, reference: float) -> float:
        """The drop in accuracy points at a reference accuracy `reference` (a fraction in [0, 1])."""
        return self.value * reference * 100 if self.relative else self.value


def parse_drop(text: object) -> Drop:
    """`2%` / `1.5pt` -> Drop; ValueError naming the value and what to write instead."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected {FORMS}")
    if not isinstance(text, str):  # a bare number: which unit is meant cannot be guessed
        raise ValueError(f"a drop needs its unit: write '{text:g}%' (relative) or '{text:g}pt' (absolute points)")
    m = _DROP.fullmatch(text.strip().lower())
    if not m:
        raise ValueError(f"expected {FORMS}")
    v = float(m.group(1))
    if not math.isfinite(v) or v <= 0:  # 400 digits read as inf; a drop of 0 needs infinitely many items
        raise ValueError(f"expected a finite drop greater than 0, {FORMS}")
    if m.group(2) == "%":
        if v >= 100:
            raise ValueError("a relative drop must be below 100% (of the reference's score)")
        return Drop(v / 100, True)
    if v > 100:
        raise ValueError("an accuracy drop is at most 100 points")
    return Drop(v, False)
