"""Quality against context length from the index's quality and flips rows: one row per cell, host and length, the
drop and its CI joined where the shift step compared the cell with its reference."""

import math

import pandas as pd

from advisor.context_view import context_curve


def _quality() -> pd.DataFrame:
    rows = []
    for cell, scores in (("ref", {1024: 1.0, 4096: 0.75}), ("q4", {1024: 1.0, 4096: 0.25})):
        for n, v in scores.items():
            rows.append({"cell_id": cell, "host_id": "h", "task": f"dq_niah@{n}", "metric": "acc", "value": v, "n": 4})
    rows.append({"cell_id": "q4", "host_id": "h", "task": "arc_easy", "metric": "acc_norm", "value": 0.4, "n": 9})
    return pd.DataFrame(rows)


def _flips() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "cell_id": "q4",
                "host_id": "h",
                "ref_id": "ref",
                "task": t,
                "metric": "acc",
                "drop_abs": d,
                "drop_ci_lo": lo,
                "drop_ci_hi": hi,
            }
            for t, d, lo, hi in (("dq_niah@1024", 0.0, 0.0, 0.0), ("dq_niah@4096", 0.5, 0.0, 1.0))
        ]
    )


def test_rows_per_length_with_the_drop_and_its_ci():
    out = context_curve(_quality(), _flips())
    assert list(out["length"]) == [1024, 4096, 1024, 4096]  # q4 then ref, by length; arc_easy is no length task
    assert set(out["task"]) == {"dq_niah"}
    q4 = out[out["cell_id"] == "q4"].set_index("length")
    assert q4.loc[4096, "score"] == 0.25 and q4.loc[4096, "drop_abs"] == 0.5
    assert (q4.loc[4096, "drop_lo"], q4.loc[4096, "drop_hi"]) == (0.0, 1.0) and q4.loc[4096, "ref_id"] == "ref"
    ref = out[out["cell_id"] == "ref"]
    assert all(math.isnan(x) for x in ref["drop_abs"])  # the reference has no drop against itself


def test_without_flips_or_length_tasks():
    out = context_curve(_quality(), pd.DataFrame())
    assert len(out) == 4 and out["drop_abs"].isna().all()
    assert context_curve(_quality().iloc[-1:], _flips()).empty
