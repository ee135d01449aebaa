"""The drop limit's three-valued verdict per cell, and how a person writes a drop. Pure pandas, no I/O;
the advisor's selection, its text and JSON, and the dashboard's Pareto charts all take it from here.

A quality drop is an estimate with a 95% interval (advisor/select.add_quality: the paired bootstrap over
the same items where the index has it, else the normal approximation from the two scores' stderr). Against
a limit L it is:
- `within`:    the whole interval is at or below L;
- `beyond`:    the whole interval is above L;
- `undecided`: the interval straddles L, or there is no interval (no per-item scores and no stderr), or
  no drop at all (quality not measured).

For an undecided cell with an interval and a known item count n, `more_items` estimates how many more
items would decide it: a CI's half-width h shrinks as 1/sqrt(n), so it reaches |L - point| at
n x (h / |L - point|)^2 items. It is an estimate: it assumes the point estimate and the per-item spread stay
as measured.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

VERDICTS = ("within", "beyond", "undecided")
DECIDE = ("conservative", "point")  # how `undecided` cells count against --max-drop (advisor/constraints.py)
EPS = 1e-12  # float slack at the limit: a bound equal to the limit is within
MINUS = "\u2212"  # the typographic minus a person writes ("−2.0 %"), not a hyphen


def _num(v: object) -> float | None:
    """A finite float, or None (NaN, None, pd.NA)."""
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def items_to_decide(point: float, lo: float, hi: float, limit: float, n: float) -> int | None:
    """≈ how many more items would shrink the interval off the limit (None: no count helps, or n unknown):
    n x (half-width / |limit - point|)^2 - n.

    A skewed bootstrap interval can straddle the limit with its long arm while its half-width is already
    narrower than |limit - point|; then the arm that crosses the limit (hi - point, or point - lo) stands
    for the half-width, so the answer is at least one."""
    gap = abs(limit - point)
    if gap <= EPS or not n or n <= 0:
        return None
    width = (hi - lo) / 2.0
    if width <= gap:
        width = (hi - point) if point <= limit else (point - lo)
    if width <= gap:
        return None
    return max(1, math.ceil(n * (width / gap) ** 2 - n - 1e-6))  # 1e-6: float noise, not an item


def drop_verdicts(f: pd.DataFrame, limit: float | None) -> pd.DataFrame:
    """`f` (with drop, drop_lo, drop_hi in the limit's units; n_items, items_left where known) with the
    columns drop_limit, verdict, verdict_reason and more_items. No limit: all four are missing."""
    f = f.copy()
    if limit is None:
        f["drop_limit"] = np.nan
        f["verdict"] = None
        f["verdict_reason"] = None
        f["more_items"] = pd.array([pd.NA] * len(f), dtype="Int64")
        return f
    n_col = f["n_items"] if "n_items" in f else pd.Series(np.nan, index=f.index)
    left_col = f["items_left"] if "items_left" in f else pd.Series(np.nan, index=f.index)
    ref_col = (f["cell_id"] == f["root_id"]) if {"cell_id", "root_id"} <= set(f) else pd.Series(False, index=f.index)
    verdicts, reasons, more = [], [], []
    for point, lo, hi, n, left, is_ref in zip(f["drop"], f["drop_lo"], f["drop_hi"], n_col, left_col, ref_col):
        v, why, m = _verdict(_num(point), _num(lo), _num(hi), limit, _num(n), _num(left), bool(is_ref))
        verdicts.append(v)
        reasons.append(why)
        more.append(pd.NA if m is None else m)
    f["drop_limit"] = float(limit)
    f["verdict"] = verdicts
    f["verdict_reason"] = reasons
    f["more_items"] = pd.array(more, dtype="Int64")
    return f


def _verdict(
    point: float | None,
    lo: float | None,
    hi: float | None,
    limit: float,
    n: float | None,
    left: float | None,
    is_ref: bool,
) -> tuple[str, str, int | None]:
    if is_ref:
        return "within", "the reference itself (drop 0 by definition)", None
    if point is None:
        return "undecided", "quality not measured (no score for this cell or its reference)", None
    if lo is None or hi is None:
        return (
            "undecided",
            "no 95% CI: no per-item scores for a paired bootstrap and no stderr for every task, "
            "so the point estimate alone cannot decide",
            None,
        )
    if hi <= limit + EPS:
        return "within", "the whole 95% CI is within the limit", None
    if lo > limit + EPS:
        return "beyond", "the whole 95% CI is past the limit", None
    if n is None:
        return (
            "undecided",
            "the 95% CI straddles the limit (items scored not recorded: no estimate of how many more)",
            None,
        )
    m = items_to_decide(point, lo, hi, limit, n)
    if m is None:
        return (
            "undecided",
            "the 95% CI straddles the limit and the point estimate sits on it: more items may not decide it",
            None,
        )
    why = (
        f"the 95% CI straddles the limit; ≈{m:,} more items would decide it "
        f"(an estimate: CI width ∝ 1/√n, n = {n:,.0f})"
    )
    if left is not None and m > left:
        why += f"; the tasks have only {left:,.0f} unscored items left"
    return "undecided", why, m


def counts_as_fit(f: pd.DataFrame, decide: str) -> pd.Series:
    """Which rows pass the drop limit under `decide`: conservative = within only; point = within, and
    undecided rows whose point estimate is within (they stay `undecided` in every output)."""
    within = f["verdict"].eq("within")
    if decide == "point":
        return within | (f["verdict"].eq("undecided") & (f["drop"] <= f["drop_limit"] + EPS)).fillna(False)
    return within


def fmt_drop(value: object, relative: bool, digits: int = 1) -> str:
    """A drop as a person writes it: '+1.6 pt', '−2.0 %' ('?' when missing). `relative`: a fraction of the
    reference's score, shown in %; else points (already in points or metric units)."""
    x = _num(value)
    if x is None:
        return "?"
    x = x * 100.0 if relative else x
    text = f"{x:+.{digits}f}"
    if text.lstrip("+-").strip("0.") == "":  # -0.0 and +0.0 read as 0
        text = f"{0.0:.{digits}f}"
    return text.replace("-", MINUS) + (" %" if relative else " pt")


def fmt_ci(lo: object, hi: object, relative: bool, digits: int = 1) -> str:
    """'95% CI −0.4 to +3.6 pt' (or 'no 95% CI')."""
    if _num(lo) is None or _num(hi) is None:
        return "no 95% CI"
    a, b = fmt_drop(lo, relative, digits), fmt_drop(hi, relative, digits)
    return f"95% CI {a.rsplit(' ', 1)[0]} to {b}"


def verdict_words(row: dict, decide: str | None = None) -> str:
    """One cell's verdict in words: 'within', 'beyond', or 'undecided (≈N more items would decide it, an
    estimate)'; under --decide point an undecided cell ranked by its point estimate says so."""
    v = row.get("verdict")
    if not isinstance(v, str):
        return ""
    if v != "undecided":
        return v
    m = row.get("more_items")
    m = None if m is None or m is pd.NA or (isinstance(m, float) and math.isnan(m)) else int(m)
    if m is not None:
        text = f"undecided: ≈{m:,} more items would decide it (estimate)"
    else:
        reason = str(row.get("verdict_reason") or "")
        text = "undecided: " + (reason.split(":")[0] if reason.startswith("no 95% CI") else reason)
    if decide == "point":
        point, lim = _num(row.get("drop")), _num(row.get("drop_limit"))
        if point is not None and lim is not None and point <= lim + EPS:
            text += "; ranked on its point estimate (--decide point), not shown to fit"
    return text


def sequential_rows(
    f: pd.DataFrame, task: str | None, metric: str | None, relative: bool, tasks: tuple[str, ...] | None = None
) -> pd.Series:
    """Rows whose drop on the asked measure was decided sequentially (harness/result.Decision in the index's
    `decision_*` columns): the same measure (`aggregate`, `aggregate:<tasks>`, or `<task>/<metric>`, as
    harness/decide/question.measure_name names them) in the same units."""
    if "decision_measure" not in f:
        return pd.Series(False, index=f.index)
    want = f"{task}/{metric}" if task is not None else "aggregate:" + ",".join(sorted(tasks)) if tasks else "aggregate"
    if "decision_relative" not in f:
        return pd.Series(False, index=f.index)
    rel = f["decision_relative"].astype("boolean").fillna(not relative)
    return (f["decision_measure"].eq(want) & rel.eq(relative) & f["decision_lo"].notna()).fillna(False).astype(bool)


def sequential_drops(f: pd.DataFrame, seq: pd.Series, relative: bool) -> pd.DataFrame:
    """Replace the drop and its interval of `seq` rows with the stored sequential interval (a confidence sequence
    or a group-sequential design's repeated confidence interval, in the advisor's units: a fraction when
    relative, points when absolute), valid at its stopping look whatever limit it is compared with."""
    if not seq.any():
        return f
    unit = 1.0 if relative else 100.0
    for col, src in (("drop", "decision_point"), ("drop_lo", "decision_lo"), ("drop_hi", "decision_hi")):
        f.loc[seq, col] = (f[src].astype(float) * unit)[seq]
    err = f["decision_error_rate"].astype(float)
    items = f["decision_items"]
    f.loc[seq, "ci_kind"] = [
        f"{1 - e:.0%} interval valid under repeated looks over {int(n)} paired items (sequential evaluation)"
        for e, n in zip(err[seq], items[seq], strict=True)
    ]
    return f


def sequential_verdicts(f: pd.DataFrame, seq: pd.Series) -> pd.DataFrame:
    """The verdict words of sequentially decided rows: an undecided one gives the items its stored projection
    says would decide it (not the fixed-n 1/√n formula); a cell `--until-decided` did not evaluate says so."""
    if "decision_stop" in f:
        skipped = f["decision_stop"].eq("skipped").fillna(False).astype(bool) & f["verdict"].eq("undecided")
        f.loc[skipped, "verdict_reason"] = ("not evaluated: " + f["decision_stop_reason"].astype(str))[skipped]
    und = seq & f["verdict"].eq("undecided")
    if not und.any():
        return f
    reasons, more = [], []
    for _, r in f[und].iterrows():
        m = _num(r.get("decision_more_items"))
        text = f"the interval (valid under repeated looks) straddles the limit after {int(r['decision_items'])} items"
        if m is not None:
            text += f"; ≈{int(m):,} more items would decide it (an estimate: drop and spread as measured)"
        stop = r.get("decision_stop_reason")
        reasons.append(text + (f" ({stop})" if isinstance(stop, str) and stop else ""))
        more.append(pd.NA if m is None else int(m))
    f.loc[und, "verdict_reason"] = reasons
    f.loc[und, "more_items"] = pd.array(more, dtype="Int64")
    return f
