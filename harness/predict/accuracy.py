"""The predictor's error, measured: leave-one-out over measured cells. Each cell is predicted from the other
cells of its host (never from itself) and compared with what it measured:

- memory: the predicted peak (host RAM) vs the measured peak, % error;
- decode: predicted output tok/s vs measured, at every closed-loop level the cell measured, % error;
- ttft: predicted TTFT p50 of the synchronous level vs measured, % error;
- tpot: predicted TPOT p50 at every level vs measured, % error;
- drop: whether the measured drop lies in the 90 % interval (coverage), in two modes: `fidelity` (the cell's
  own KL is known, as after a cheap fidelity pass) and `blind` (only the scheme and the model are known).

`loo(...)` returns one row per (cell, figure, level); `summary(...)` aggregates per engine x scheme kind and
overall (MAPE, median APE, coverage); `error_words(...)` turns it into the "±12 % on 9 cells of this host"
that the advisor prints beside a prediction. Pure.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace

from harness.hw.figures import HostFigures
from harness.predict.observe import Observation
from harness.predict.predict import memory_estimate, speed_estimates
from harness.predict.quality import predict_drop

GOALS = {"memory": 5.0, "decode": 15.0, "ttft": 25.0, "coverage": 80.0}  # issue #32's goals (%)


@dataclass(frozen=True)
class Row:
    cell_id: str
    label: str
    host_id: str
    engine: str
    kind: str
    figure: str  # memory | decode | tpot | ttft | drop-fidelity | drop-blind
    level: float | None
    measured: float
    predicted: float
    lo: float
    hi: float
    source: str  # fitted | default | prior

    @property
    def ape(self) -> float:
        """Absolute % error of the point prediction."""
        return 100.0 * abs(self.predicted - self.measured) / abs(self.measured) if self.measured else math.nan

    @property
    def covered(self) -> bool:
        return self.lo <= self.measured <= self.hi


def loo(obs: list[Observation], figures: dict[str, HostFigures | None]) -> list[Row]:
    """Leave-one-out rows for every observation; `figures`: host id -> its roofline figures (speed rows only
    where the host has figures)."""
    rows: list[Row] = []
    for i, o in enumerate(obs):
        rest = [x for j, x in enumerate(obs) if j != i]  # the host's other cells (and other hosts', as fallbacks)
        base = dict(cell_id=o.cell_id, label=o.label, host_id=o.host_id, engine=o.engine, kind=o.case.scheme.kind)
        if o.peak_gib is not None and o.case.device == "cpu" and o.weights_gib is not None:
            _, _, mem = memory_estimate(o.case, rest, None)
            rows.append(Row(**base, figure="memory", level=None, measured=o.peak_gib, predicted=mem.value,
                            lo=mem.lo, hi=mem.hi, source=mem.source))  # fmt: skip
        figs = figures.get(o.host_id)
        if figs is not None and o.case.arch is not None:
            sync = min(o.levels, key=lambda x: x.concurrency) if o.levels else None
            for lv in o.levels:
                sp = speed_estimates(o.case, figs, rest, lv.concurrency, {}, figures)
                d = sp["decode"]
                rows.append(Row(**base, figure="decode", level=lv.concurrency, measured=lv.output_tok_s,
                                predicted=d.value, lo=d.lo, hi=d.hi, source=d.source))  # fmt: skip
                if lv.tpot_ms_p50:
                    t = sp["tpot"]
                    rows.append(Row(**base, figure="tpot", level=lv.concurrency, measured=lv.tpot_ms_p50,
                                    predicted=t.value, lo=t.lo, hi=t.hi, source=t.source))  # fmt: skip
                if lv is sync and lv.ttft_ms_p50:
                    t = sp["ttft"]
                    rows.append(Row(**base, figure="ttft", level=lv.concurrency, measured=lv.ttft_ms_p50,
                                    predicted=t.value, lo=t.lo, hi=t.hi, source=t.source))  # fmt: skip
        if o.drop is not None and not o.is_reference:
            se = o.drop_se or 0.0
            modes = [("drop-blind", replace(o.case, kld=None))]
            if o.case.kld is not None:
                modes.insert(0, ("drop-fidelity", o.case))
            for name, case in modes:
                f = predict_drop(case, rest, measurement_se=se)
                lo, hi = f.interval()
                rows.append(Row(**base, figure=name, level=None, measured=o.drop, predicted=f.value, lo=lo, hi=hi,
                                source=f.source))  # fmt: skip
    return rows


@dataclass(frozen=True)
class Summary:
    figure: str
    group: str
    cells: int
    points: int
    mape: float | None  # mean absolute % error (speed, memory)
    median_ape: float | None
    max_ape: float | None
    coverage: float | None  # % of measured values inside the 90 % interval

    def words(self, host_words: str = "this host") -> str:
        if self.figure.startswith("drop"):
            return (
                f"90 % interval held {self.coverage:.0f} % of {self.points} measured drops on {host_words} "
                "(leave-one-out)"
            )
        return f"±{self.mape:.0f} % on {self.cells} cell(s) of {host_words} (leave-one-out mean abs. error)"


def _summ(figure: str, group: str, rows: list[Row]) -> Summary:
    apes = [r.ape for r in rows if not math.isnan(r.ape)]
    drop = figure.startswith("drop")
    return Summary(
        figure=figure,
        group=group,
        cells=len({r.cell_id for r in rows}),
        points=len(rows),
        mape=None if drop or not apes else statistics.fmean(apes),
        median_ape=None if drop or not apes else statistics.median(apes),
        max_ape=None if drop or not apes else max(apes),
        coverage=100.0 * sum(r.covered for r in rows) / len(rows) if rows else None,
    )


def summary(rows: list[Row], by: str = "engine/kind") -> list[Summary]:
    """Per figure: overall, then per engine, per engine x scheme kind and per host."""
    out = []
    for fig in ("memory", "decode", "tpot", "ttft", "drop-fidelity", "drop-blind"):
        fr = [r for r in rows if r.figure == fig]
        if not fr:
            continue
        out.append(_summ(fig, "all", fr))
        groups: dict[str, list[Row]] = defaultdict(list)
        for r in fr:
            groups[r.engine].append(r)
            if by == "engine/kind":
                groups[f"{r.engine} {r.kind}"].append(r)
                groups[f"host {r.host_id}"].append(r)
        out += [_summ(fig, g, rs) for g, rs in sorted(groups.items())]
    return out


def error_words(rows: list[Row], engine: str | None = None) -> dict[str, str | None]:
    """figure -> the leave-one-out error in words, on `engine`'s cells of the host (all cells when no engine
    is named); None where none was measured: a prediction of an engine never run here has no measured error."""
    out: dict[str, str | None] = {}
    figures = (("memory", "memory"), ("decode", "decode"), ("tpot", "tpot"), ("ttft", "ttft"), ("drop-blind", "drop"))
    for fig, key in figures:
        use = [r for r in rows if r.figure == fig and (engine is None or r.engine == engine)]
        if fig == "drop-blind" and engine is not None and not use:
            use = [r for r in rows if r.figure == fig]  # drops are the model's, whichever engine served it
        if not use:
            out[key] = None
            continue
        who = f"this host, {engine}" if engine is not None and any(r.engine == engine for r in use) else "this host"
        out[key] = _summ(fig, engine or "all", use).words(who)
    return out
