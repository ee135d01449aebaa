"""Goodput at a latency SLO the user asks for (`--slo-ttft 500ms --slo-tpot 50ms --min-goodput 2`), judged
from the stored load levels (the `perf` table). Pure pandas, no I/O, no backend.

A request is good when each asked objective holds for it (TTFT, TPOT, end-to-end latency at most the bound:
harness/measure/slo.py, `vllm bench serve --goodput`'s definition); a level *meets* the SLO when at least
`percentile` % of its requests are good; its goodput is good requests per second. A configuration qualifies
when some measured level (a sweep's constant-rate levels included) meets the SLO with goodput >= the
minimum; the best such level (highest goodput) is its figure.

What is exact and what is a bound. The per-request latencies are not in the index, only each level's
p50/p90/p99 (numpy's linear interpolation over its completed requests), so:
- `exact`: the level's stored SLO (the plan's load.slo) has the asked bounds: its stored goodput and
  attainment are the answer (attainment judged against the asked percentile).
- `stricter stored SLO`: every asked objective has a stored bound at most the asked one: a request good
  under the stored SLO is good under the asked one, so the stored goodput is a lower bound.
- `percentiles`: otherwise, a lower bound from the percentiles: if a level's p_q of an objective is within
  its bound, at least floor((n-1)q)+1 of its n completed requests meet it (linear interpolation never puts a
  percentile below the sample at floor((n-1)q)); the requests failing some objective are at most the sum of
  those failing each (the union bound). A level this bound cannot show to meet the SLO is not counted, even
  if it may well meet it: the advice is conservative, and says which rule decided.
Figures are over the whole level (the SLO's definition counts every request sent), not the steady window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

OBJECTIVES = ("ttft", "tpot", "e2e")
PCTS = ((0.99, "p99"), (0.9, "p90"), (0.5, "p50"))  # the stored percentiles, best evidence first


@dataclass(frozen=True)
class AskedSLO:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float = 90.0  # % of a level's requests that must be good

    def bounds(self) -> dict[str, float]:
        return {m: v for m in OBJECTIVES if (v := getattr(self, f"{m}_ms")) is not None}

    def __str__(self) -> str:
        b = ", ".join(f"{m.upper()} <= {v:g} ms" for m, v in self.bounds().items())
        return f"{b} for {self.percentile:g}% of requests"


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name].astype(float) if name in df else pd.Series(np.nan, index=df.index, dtype=float)


def _same(stored: pd.Series, asked: float | None) -> pd.Series:
    return stored.isna() if asked is None else np.isclose(stored.fillna(-1.0), asked, rtol=1e-9, atol=1e-9)


def level_goodput(perf: pd.DataFrame, slo: AskedSLO) -> pd.DataFrame:
    """Per level (perf rows): `slo_rule` (exact | stricter stored SLO | percentiles), `good_lo` (a lower
    bound of its good requests; exact under `exact`), `att_lo` (good / requests), `goodput_lo` (req/s) and
    `meets` (att_lo reaches the asked percentile)."""
    p = perf.copy()
    requests = _col(p, "requests")
    completed = _col(p, "completed").fillna(requests)
    duration = _col(p, "duration_s")
    req_s = _col(p, "req_s")
    # good requests by the percentile bound, per objective, then jointly (union bound on the bad ones)
    bad = pd.Series(0.0, index=p.index)
    for m, bound in slo.bounds().items():
        good_m = pd.Series(0.0, index=p.index)
        for q, name in reversed(PCTS):  # the largest q whose percentile is within the bound wins
            within = _col(p, f"{m}_ms_{name}") <= bound
            good_m = good_m.where(~within, np.floor((completed - 1) * q) + 1)
        bad += completed - good_m
    by_pct = (completed - bad).clip(lower=0)
    # the stored SLO's own count where it says as much or more
    stored_att = _col(p, "slo_attainment")
    stored_good = stored_att * requests
    same = pd.Series(True, index=p.index)
    stricter = pd.Series(True, index=p.index)
    for m in OBJECTIVES:
        asked = getattr(slo, f"{m}_ms")
        stored = _col(p, f"slo_{m}_ms")
        same &= _same(stored, asked)
        if asked is not None:
            stricter &= stored.notna() & (stored <= asked + 1e-9)
    has_stored = stored_att.notna() & (
        _col(p, "slo_ttft_ms").notna() | _col(p, "slo_tpot_ms").notna() | _col(p, "slo_e2e_ms").notna()
    )
    exact = has_stored & same
    lower = has_stored & stricter & ~exact & (stored_good >= by_pct)
    p["slo_rule"] = np.where(exact, "exact", np.where(lower, "stricter stored SLO", "percentiles"))
    p["good_lo"] = np.where(exact | lower, stored_good, by_pct)
    p["att_lo"] = p["good_lo"] / requests
    # goodput = good / the level's duration; an index without durations: req_s counts completed per second
    per_s = np.where(duration > 0, 1.0 / duration, req_s / completed)
    stored_gp = _col(p, "goodput_req_s")
    p["goodput_lo"] = np.where(exact & stored_gp.notna(), stored_gp, p["good_lo"] * per_s)
    p["meets"] = (p["att_lo"] * 100.0 >= slo.percentile - 1e-9).fillna(False)
    return p


def _fmt_level(r: dict) -> str:
    lvl = r.get("level")
    if r.get("profile") == "synchronous":
        return "the synchronous level"
    if r.get("profile") == "concurrency":
        return f"concurrency {lvl:g}"
    return f"{r.get('profile')} {lvl:g} req/s"


RULE_WORDS = {
    "exact": "stored under the same SLO: exact",
    "stricter stored SLO": "stored under a stricter SLO: a lower bound",
    "percentiles": "a lower bound from the level's latency percentiles; its stored SLO differs or is absent",
}


def best_at_slo(perf: pd.DataFrame, slo: AskedSLO, key: tuple[str, ...] = ("cell_id", "host_id")) -> pd.DataFrame:
    """Per (cell, host): the level meeting the SLO with the highest goodput (lower bound): `slo_goodput`
    (0 where no level is shown to meet it), `slo_attainment`, `slo_level`, `slo_rule`, `slo_levels` (levels
    measured), `slo_text` (words naming the level and figures)."""
    if perf.empty:
        return pd.DataFrame(columns=[*key, "slo_goodput", "slo_attainment", "slo_level", "slo_rule", "slo_text"])
    lv = level_goodput(perf, slo)
    rows = []
    for k, g in lv.groupby(list(key), sort=False):
        ok = g[g["meets"]]
        if not ok.empty:
            r = ok.loc[ok["goodput_lo"].idxmax()].to_dict()
            text = (
                f"{_fmt_level(r)} meets {slo}: goodput {r['goodput_lo']:.3g} req/s, "
                f"{r['att_lo']:.0%} of its {int(r['requests'])} requests good ({RULE_WORDS[r['slo_rule']]})"
            )
            rows.append((*k, float(r["goodput_lo"]), float(r["att_lo"]), _fmt_level(r), r["slo_rule"], len(g), text))
            continue
        known = g["att_lo"].dropna()
        near = g.loc[known.idxmax()].to_dict() if not known.empty else g.iloc[0].to_dict()
        att = near.get("att_lo")
        shown = "?" if att is None or (isinstance(att, float) and math.isnan(att)) else f"{att:.0%}"
        text = (
            f"no level of {len(g)} is shown to meet {slo}; closest: {_fmt_level(near)} with {shown} of its "
            f"requests good ({RULE_WORDS[near['slo_rule']]})"
        )
        rows.append((*k, 0.0, att, _fmt_level(near), near["slo_rule"], len(g), text))
    cols = [*key, "slo_goodput", "slo_attainment", "slo_level", "slo_rule", "slo_levels", "slo_text"]
    return pd.DataFrame(rows, columns=cols)
