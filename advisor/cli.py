"""`advisor` command line.

    advisor --vram 24 --max-drop 2% [--decide conservative|point] [--json] ...   recommend
    advisor estimate 7B --precision fp32 fp16 int8 int4                     memory table
    advisor report --out DIR [--cell ID ...] [--title T] [--db DB]          Pareto PNGs, CSV, HTML page
    advisor predict MODEL [--host H] [--schemes S ...] [--json]              cells not yet run, predicted

Exit codes: 0 a recommendation; 4 nothing meets the constraints; 2 malformed input (a bad value, NaN
and infinities included: one message naming the flag, the value and the fix); 3 no results, or a results
database that cannot be read (missing, locked by another process's write connection, not a DuckDB file,
damaged: one message naming the path and the fix, never a traceback).

Results are per host: by default only this host's results are considered (`--host all` for every host's,
`--host ID` for one). This host's id comes from harness.hw.probe, which imports no backend (it reads its
cached probe, or runs the engine probe as a subprocess); where the probe cannot run, every host's results
are used and the output says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NOTHING_FITS = 4


def _recommend_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="advisor",
        description="Recommend a configuration from measured cells.",
        epilog="Subcommands: `advisor estimate MODEL --precision ...` prints a memory table; `advisor predict "
        "MODEL [--host H] [--schemes S ...]` predicts cells not yet run. "
        "Exit codes: 0 a recommendation, 4 nothing meets the constraints, 2 malformed "
        "input, 3 no results or an unreadable results database (missing, locked by "
        "another process, not a DuckDB file, damaged).",
    )
    ap.add_argument("--vram", help="device memory in GiB the deployment must fit (weights + KV + overhead)")
    ap.add_argument(
        "--max-drop",
        help="tolerated quality drop vs the uncompressed reference: '2%%' relative or "
        "'1.5pt' absolute (percentage points for accuracies)",
    )
    ap.add_argument("--task", help="quality task (default: the avg_acc aggregate)")
    ap.add_argument("--tasks", help="the avg_acc aggregate over these tasks only, comma-separated")
    ap.add_argument("--metric", help="quality metric of --task, e.g. acc")
    ap.add_argument("--context-len", default="4096", help="tokens per sequence the KV cache must hold")
    ap.add_argument("--concurrency", default="1", help="sequences served at once (KV cache, throughput level)")
    ap.add_argument("--min-tok-s", help="minimum output tokens/s at that concurrency (measured)")
    ap.add_argument("--max-ttft-ms", help="maximum time to first token in ms (measured, see --ttft-stat)")
    ap.add_argument("--ttft-stat", default="p99", help="p50 or p99 for --max-ttft-ms (default p99)")
    ap.add_argument("--slo-ttft", help="latency SLO: time to first token per request, e.g. 500ms or 0.5s")
    ap.add_argument("--slo-tpot", help="latency SLO: time per output token per request, e.g. 50ms")
    ap.add_argument("--slo-e2e", help="latency SLO: end-to-end latency per request, e.g. 10s")
    ap.add_argument(
        "--slo-percentile", default="90", help="%% of a level's requests that must meet the SLO (default 90)"
    )
    ap.add_argument(
        "--min-goodput",
        help="requests/s meeting the SLO that some measured load level must reach (needs an --slo-* bound)",
    )
    ap.add_argument(
        "--objective",
        default="throughput",
        help="throughput|latency|cost|memory|quality|goodput|cost-per-correct ($ per 1,000 correct answers)",
    )
    ap.add_argument("--gpu-price", help="$ per GPU-hour, for $/1M output tokens and $ per 1,000 correct answers")
    ap.add_argument(
        "--price-per-hour",
        help="$ per hour of the whole host, for $ per 1,000 correct answers (default: --gpu-price, else the "
        "matrix's hardware.price_per_hour)",
    )
    ap.add_argument("--model", help="only cells of this model (its name in the matrix)")
    ap.add_argument("--device", default="gpu", help="what --vram means: gpu device memory or cpu host RAM")
    ap.add_argument(
        "--decide",
        default=None,
        help="a drop whose 95%% CI straddles --max-drop is undecided: 'conservative' (default) counts only "
        "cells whose whole CI is within as fits; 'point' also ranks undecided cells whose point estimate is "
        "within, still marked undecided",
    )
    ap.add_argument("--conservative", action="store_true", help="the same as --decide conservative (the default)")
    ap.add_argument(
        "--host", help="whose results: a host id, or 'all' (default: this host's; `harness doctor` names it)"
    )
    ap.add_argument("--db", help="results database (default: DQBENCH_DB or results/dqbench.duckdb)")
    ap.add_argument(
        "--matrix",
        help="a matrix file whose `decide:` block gives the defaults of --max-drop, --vram, --objective, "
        "--task/--metric (its measure) and --device (its hardware.device); flags given override them",
    )
    ap.add_argument("--top", default="5", help="how many recommendations to list")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument(
        "--no-predict", action="store_true", help="leave out the predicted (unmeasured) cells and what to measure next"
    )
    return ap


def _decide(decide: str | None, conservative: bool) -> str:
    """--decide, with --conservative (kept from before --decide) as its default spelled out."""
    from advisor.constraints import AdvisorInputError

    if conservative and decide not in (None, "conservative"):
        raise AdvisorInputError(f"--conservative and --decide {decide} contradict each other: give one")
    return decide or "conservative"


def _estimate(argv: list[str]) -> int:
    from advisor.estimate_table import estimate_table, resolve_model

    ap = argparse.ArgumentParser(prog="advisor estimate", description="Memory per precision for a model.")
    ap.add_argument("model", help="a size (7B, 70B), a known hub id, or a config.json / checkpoint folder")
    ap.add_argument("--precision", nargs="+", default=["fp32", "fp16", "int8", "int4"])
    ap.add_argument("--context-len", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument(
        "--group-size", type=int, default=128, help="int4 weights per 16-bit scale (default 128, GPTQ/AWQ's)"
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        model = resolve_model(a.model)
        rows = estimate_table(model, a.precision, a.context_len, a.concurrency, group_size=a.group_size)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({"model": model, "rows": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"{a.model}: {model['params'] / 1e9:.2f}B parameters; KV for {a.context_len} tokens x {a.concurrency}"
    )
    for col in ("precision", "bits", "weights GB", "weights GiB", "KV GiB", "overhead GiB", "total GiB"):
        t.add_column(col, justify="right")
    for r in rows:
        kv = "?" if r["kv_gib"] is None else f"{r['kv_gib']:.2f}"
        t.add_row(
            r["precision"],
            str(r["bits"]),
            f"{r['weights_gb']:.1f}",
            f"{r['weights_gib']:.2f}",
            kv,
            f"{r['overhead_gib']:.1f}",
            f"{r['total_gib']:.2f}" + ("" if r["kv_gib"] is not None else "+KV"),
        )
    Console().print(t)
    if "arch" in model:
        print(
            "weights by module (harness/serving_memory.py): embeddings and lm_head 16-bit, layer linears at the "
            f"precision's bits + scales (int4: one 16-bit scale per {a.group_size} weights); bits = the "
            "effective bits per weight. KV (16-bit) and overhead are estimates (overhead: CUDA context, "
            "activations, vLLM buffers)."
        )
    else:
        print(
            "weights GB = parameters x bits / 8 (decimal GB, the usual rule of thumb: only the size is known, "
            "so embeddings, lm_head and scales are not counted); overhead is an estimate."
        )
    return 0


def host_scope(requested: str | None) -> dict:
    """{"host": id | "all", "label": words, "note": why}: which hosts' results the advice is drawn from."""
    if requested and requested != "all":
        return {"host": requested, "label": requested}
    if requested == "all":
        return {
            "host": "all",
            "label": "all hosts",
            "note": "--host all: figures from different hosts are ranked together; each row names its host",
        }
    try:
        from harness.settings import load_settings
        from harness.store.hosts import this_host

        host = this_host(load_settings())  # the `unprobed` block when the probe fails
    except Exception as exc:  # noqa: BLE001 - any failure of the probe: fall back, and say so
        host = {"host_id": None, "error": f"{type(exc).__name__}: {exc}"}
    if host.get("host_id") in (None, "unprobed"):
        return {
            "host": "all",
            "label": "all hosts",
            "note": f"this host could not be probed ({str(host.get('error'))[:200]}), so every host's results "
            f"are used; pass --host ID to pick one",
        }
    return {"host": host["host_id"], "label": f"{host.get('label')} [{host['host_id']}] (this host)"}


def _report(argv: list[str]) -> int:
    """`advisor report`: the Pareto plots, summary CSV and HTML page of some cells (`harness report MATRIX`
    plans the matrix and calls this with its cell ids: the harness runs the advisor, never imports it)."""
    from advisor.report import write_report
    from harness.errors import DQError

    ap = argparse.ArgumentParser(prog="advisor report", description="Write Pareto PNGs, summary CSV and HTML.")
    ap.add_argument("--out", required=True, help="folder to write into")
    ap.add_argument("--cell", action="append", default=None, help="a cell id (repeat; default: every cell)")
    ap.add_argument("--title", default="dqbench", help="page title")
    ap.add_argument("--db", help="results database (default: DQBENCH_DB or results/dqbench.duckdb)")
    a = ap.parse_args(argv)
    if a.db:
        db = Path(a.db)
    else:
        from harness.settings import load_settings

        db = load_settings().db_path
    try:
        page = write_report(db, a.cell, Path(a.out), a.title)
    except DQError as exc:  # the index is missing, locked or unreadable: one message, exit 3
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(page)
    return 0


def _matrix_defaults(a: argparse.Namespace, argv: list[str]) -> None:
    """Fill the flags the user did not give from the matrix's `decide:` block (the question its run answered),
    so the advisor and `harness run` read one definition."""
    from advisor.constraints import AdvisorInputError
    from harness.errors import DQError
    from harness.spec import load_matrix
    from harness.spec.decide import TaskMeasure, TasksMeasure

    try:
        m = load_matrix(Path(a.matrix))
    except (DQError, OSError) as exc:
        raise AdvisorInputError(f"--matrix {a.matrix}: {exc}") from None
    d = m.decide
    if d is None:
        raise AdvisorInputError(
            f"--matrix {a.matrix}: the matrix has no `decide:` block to take defaults from; give --max-drop "
            f"(and --vram) yourself or add one (docs/matrix.md, `decide`)"
        )
    given = {x.split("=", 1)[0] for x in argv if x.startswith("--")}
    if "--max-drop" not in given:
        a.max_drop = d.max_drop
    if "--vram" not in given and d.memory_gib is not None:
        a.vram = str(d.memory_gib)
    if "--objective" not in given:
        a.objective = d.objective
    if "--tasks" not in given and "--task" not in given and isinstance(d.measure, TasksMeasure):
        a.tasks = ",".join(d.measure.tasks)
    if "--task" not in given and isinstance(d.measure, TaskMeasure):
        from harness.result_facts import primary_metric

        a.task, a.metric = d.measure.task, d.measure.metric or primary_metric(d.measure.task)
    if "--device" not in given and m.hardware.device != "auto":
        a.device = "gpu" if m.hardware.device == "cuda" else "cpu"


def main(argv: list[str] | None = None) -> int:
    from harness.entry import restore_sigint

    restore_sigint()  # Ctrl-C works however the advisor was launched (harness/entry.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "estimate":
        return _estimate(argv[1:])
    if argv and argv[0] == "report":
        return _report(argv[1:])
    if argv and argv[0] == "predict":  # cells not yet run: harness/predict (advisor/predict_cli.py)
        from advisor.predict_cli import main as predict_main

        return predict_main(argv[1:])
    from advisor.constraints import (
        AdvisorInputError,
        Constraints,
        parse_count,
        parse_max_drop,
        parse_ms,
        parse_percent,
        parse_positive,
    )
    from advisor.query import NoResultsError, load_frame
    from advisor.render import render, to_json
    from advisor.select import recommend

    a = _recommend_parser().parse_args(argv)
    try:
        if a.matrix:
            _matrix_defaults(a, argv)
        c = Constraints(
            vram_gib=parse_positive("--vram", a.vram),
            max_drop=parse_max_drop(a.max_drop) if a.max_drop else None,
            task=a.task,
            metric=a.metric,
            tasks=tuple(sorted(t.strip() for t in a.tasks.split(",") if t.strip())) if a.tasks else None,
            context_len=parse_count("--context-len", a.context_len),
            concurrency=parse_count("--concurrency", a.concurrency),
            min_tok_s=parse_positive("--min-tok-s", a.min_tok_s),
            max_ttft_ms=parse_positive("--max-ttft-ms", a.max_ttft_ms),
            ttft_stat=a.ttft_stat,
            objective=a.objective,
            gpu_price=parse_positive("--gpu-price", a.gpu_price),
            price_per_hour=parse_positive("--price-per-hour", a.price_per_hour),
            model=a.model,
            decide=_decide(a.decide, a.conservative),
            device=a.device,
            top=parse_count("--top", a.top),
            slo_ttft_ms=parse_ms("--slo-ttft", a.slo_ttft),
            slo_tpot_ms=parse_ms("--slo-tpot", a.slo_tpot),
            slo_e2e_ms=parse_ms("--slo-e2e", a.slo_e2e),
            slo_percentile=parse_percent("--slo-percentile", a.slo_percentile),
            min_goodput=parse_positive("--min-goodput", a.min_goodput),
        )
    except AdvisorInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if a.db:
        db = Path(a.db)
    else:
        from harness.settings import load_settings

        db = load_settings().db_path
    scope = host_scope(a.host)
    try:
        frame = load_frame(
            db,
            c.task,
            c.metric,
            c.concurrency,
            c.model,
            host=None if scope["host"] == "all" else scope["host"],
            slo=c.slo,
            tasks=c.tasks,
        )
    except NoResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if c.objective == "cost-per-correct" and c.price_per_hour is None and c.gpu_price is None:
        stored = frame.get("price_per_hour")
        if stored is None or not stored.notna().any():
            print(
                "error: --objective cost-per-correct needs a price: --price-per-hour (the host's $/hour) or "
                "--gpu-price, or hardware.price_per_hour in the matrix the cells were run from",
                file=sys.stderr,
            )
            return 2
    rec = recommend(frame, c)
    predicted = None
    if not a.no_predict:  # cells not measured here, predicted and marked so (advisor/predicted.py)
        from advisor.predicted import predicted_view

        predicted = predicted_view(rec, db, scope)
    if a.json:
        print(json.dumps({**to_json(rec, scope), "predicted": predicted}, indent=2, default=str))
    else:
        from rich.console import Console

        console = Console(width=None if sys.stdout.isatty() else 160)
        render(rec, console, scope)
        if predicted is not None:
            from advisor.predicted import render_predicted

            render_predicted(predicted, console)
    return 0 if rec.ok else NOTHING_FITS


if __name__ == "__main__":
    sys.exit(main())
