"""Where predictions get their inputs: the host predicted for (this host, a preset, a GPU by name, or a host
id in the results), the measured cells (from the DuckDB index or results folders), and the predictor's
leave-one-out error on that host; and `predict_grid`, the table `advisor predict` and `harness plan` show.

Reads only: the cached host probe (never measures; `harness doctor` does), results JSON and the index
(read-only). No backend is imported.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.hw.figures import HostFigures, gpu_figures
from harness.hw.gpus import gpu_names
from harness.predict.accuracy import Row, error_words, loo
from harness.predict.observe import Observation, observations
from harness.predict.predict import HostView, Prediction, predict, user_case
from harness.predict.schemes import Scheme
from harness.predict.target import Target
from harness.result import CellResult


def results_from_dirs(dirs: list[Path]) -> list[CellResult]:
    """Every readable result under each folder (a results folder: its cells/*.json; or a folder of result
    JSONs). Unreadable files are skipped (harness/store/results.py says why, in `harness db rebuild`)."""
    from harness.store.results import ResultStore

    out: list[CellResult] = []
    for d in dirs:
        d = Path(d)
        root = d.parent if d.name == "cells" else d
        good, _ = ResultStore(root).scan()
        out += good
    return out


def results_from_db(db: Path) -> list[CellResult]:
    """The results the DuckDB index holds (their JSON is in `cells.result_json`); [] without an index."""
    if not Path(db).is_file():
        return []
    from harness.store.db import IndexUnavailable, reading
    from harness.store.results import parse

    try:
        with reading(Path(db)) as con:
            docs = con.execute("SELECT result_json FROM cells WHERE result_json IS NOT NULL").fetchall()
    except IndexUnavailable:
        return []
    out = []
    for (doc,) in docs:
        try:
            out.append(parse(json.loads(doc)))
        except Exception:  # noqa: BLE001 - a row the store cannot read is not evidence
            continue
    return out


def this_host_view(settings) -> HostView:
    from harness.hw.probe import host_caps

    caps = host_caps(settings)
    block = caps.host_block()
    return HostView(block["host_id"], str(block["label"]), caps.device, caps.roofline_figures(), caps)


def host_view(spec: str | None, settings, known_hosts: dict[str, str] | None = None) -> HostView:
    """`spec`: None (this host), a preset name or HostCaps JSON path, a GPU name (harness/hw/gpus.py), or a
    host id of the results (`known_hosts`: id -> label; its figures only when it is this host)."""
    if spec is None:
        return this_host_view(settings)
    from harness.errors import DQError
    from harness.hw.probe import load_override, preset_names

    if spec in preset_names() or spec.endswith(".json"):
        caps = load_override(spec)
        return HostView(caps.host_id, f"{caps.label} [preset {spec}]", caps.device, caps.roofline_figures(), caps)
    if known_hosts and spec in known_hosts:
        try:
            here = this_host_view(settings)
        except DQError:
            here = None
        if here is not None and here.host_id == spec:
            return here
        return HostView(spec, known_hosts[spec], "cpu", None, None)
    figs = gpu_figures(spec)
    if figs is not None:
        return HostView(f"gpu:{spec}", f"{spec} (datasheet figures)", "cuda", figs, None)
    raise ValueError(
        f"--host {spec!r}: give a preset ({', '.join(preset_names())}), a HostCaps JSON, a host id of the "
        f"results{(' (' + ', '.join(known_hosts) + ')') if known_hosts else ''}, or a GPU ({', '.join(gpu_names())})"
    )


@dataclass
class PredictContext:
    host: HostView
    obs: list[Observation]
    rows: list[Row] = field(default_factory=list)  # leave-one-out rows of this host's cells

    def errors(self, engine: str) -> dict[str, str | None]:
        return error_words(self.rows, engine)

    @property
    def cells(self) -> int:
        return len(self.obs)

    def load_shape(self) -> tuple[int, int]:
        """The input/output tokens most of this host's cells were measured with (512/128 without any)."""
        shapes = Counter((o.case.input_tokens, o.case.output_tokens) for o in self.obs if o.case.input_tokens)
        return shapes.most_common(1)[0][0] if shapes else (512, 128)


def make_context(host: HostView, results: list[CellResult]) -> PredictContext:
    obs = [o for o in observations(results) if o.host_id == host.host_id]
    figures: dict[str, HostFigures | None] = {host.host_id: host.figures}
    return PredictContext(host, obs, loo(obs, figures) if obs else [])


def family_name(target: Target, obs: list[Observation], results: list[CellResult] | None = None) -> str:
    """The model name the measured cells know `target` by: the one whose matrix name or source (hub id,
    embedded name) is what the user typed, else the one with the same config facts; else the typed name."""
    want = target.name.lower()
    for r in results or []:
        m = r.plan.get("model") or {}
        src = m.get("source") or {}
        if want in {str(m.get("name", "")).lower(), str(src.get("id", "")).lower(), str(src.get("name", "")).lower()}:
            return str(m.get("name"))
    if target.arch is not None:
        for o in obs:
            if not o.case.student and o.case.arch == target.arch:
                return o.case.model
    return target.name


def fit_group_size(scheme: Scheme, target: Target) -> tuple[Scheme, str | None]:
    """A w4a16 scheme's group size, made to divide every linear layer's input width (GPTQ/AWQ need it):
    the largest of 128, 64, 32 that does, with a note when it had to change."""
    g = scheme.group_size
    if not isinstance(g, int) or target.arch is None:
        return scheme, None
    widths = target.arch.linear_input_sizes.values()
    if all(w % g == 0 for w in widths):
        return scheme, None
    for cand in (128, 64, 32):
        if all(w % cand == 0 for w in widths):
            return scheme.model_copy(
                update={"group_size": cand}
            ), f"{scheme.name}: group {g} does not divide the layer widths; group {cand} used"
    return scheme, f"{scheme.name}: no group size divides the layer widths {sorted(set(widths))}"


def default_schemes(device: str, reference: str) -> list[str]:
    if device == "cuda":
        return ["bf16", "fp8", "w8a8", "w4a16-gptq", "w4a16-awq"]
    return [reference, "w8a8", "w4a16-gptq", "gguf-q8_0", "gguf-q4_k_m"]


def predict_grid(
    target: Target,
    schemes: list[Scheme],
    ctx: PredictContext,
    context_len: int,
    concurrencies: list[float],
    input_tokens: int,
    output_tokens: int,
    activation_dtype: str | None,
    students: list[int] | None = None,
    model_name: str | None = None,
) -> tuple[list[Prediction], list[str]]:
    """Every scheme (and every student depth x scheme) at every concurrency; with the notes about choices."""
    notes = []
    out = []
    for keep in [None, *(students or [])]:
        for s in schemes:
            s2, note = fit_group_size(s, target)
            if note:
                notes.append(note)
            for c in concurrencies:
                case = user_case(
                    model_name or target.name,
                    target.arch,
                    target.params,
                    s2,
                    ctx.host,
                    context_len,
                    c,
                    input_tokens,
                    output_tokens,
                    activation_dtype,
                    distill="none" if keep is None else f"pruned-{keep}",
                    keep_every=keep,
                )
                out.append(predict(case, ctx.host, ctx.obs, context_len, c, ctx.errors(s2.engine)))
    return out, sorted(set(notes))


def plan_predictions(cells: list, settings) -> dict[str, Prediction]:
    """cell id -> the prediction of each planned cell on the host it is planned for (the probe, or the
    DQBENCH_HOST_CAPS override `harness plan --host` sets), from this results folder's measured cells of that
    host, at the cell's top concurrency. {} when the host has no figures and nothing was measured."""
    from harness.predict.observe import case_of_plan
    from harness.store.results import ResultStore

    host = this_host_view(settings)
    results, _ = ResultStore(settings.results_dir).scan()
    ctx = make_context(host, results)
    out = {}
    for c in cells:
        dump = c.model_dump(mode="json")
        if not dump.get("arch"):
            continue
        case = case_of_plan(dump, host.host_id)
        top = max(case.concurrencies)
        out[c.cell_id] = predict(case, host, ctx.obs, c.serving.max_model_len, top, ctx.errors(case.scheme.engine))
    return out
