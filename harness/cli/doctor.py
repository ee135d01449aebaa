"""`harness doctor`: what this host and its engine builds can run (the cached hardware probe, or a fresh
one), as text or JSON."""

from __future__ import annotations

import json

import typer

from harness.cli.console import fail, out
from harness.errors import DQError


def doctor(
    as_json: bool = typer.Option(False, "--json", help="print the probe as JSON"),
    refresh: bool = typer.Option(False, "--refresh", help="probe (and measure) again instead of reading the cache"),
    figures: bool = typer.Option(
        True,
        "--figures/--no-figures",
        help="measure memory bandwidth and matmul throughput when none are cached (~20-60 s, once per host)",
    ),
) -> None:
    """What this host and its engine builds can run: CPU/ISA, GPUs, vLLM's kernels, llama.cpp, fast dtype, and
    the roofline's figures (memory bandwidth, matmul throughput per dtype)."""
    from harness.hw.probe import host_caps, host_figures
    from harness.hw.report import render_caps
    from harness.settings import load_settings

    settings = load_settings()
    try:
        caps = host_caps(settings, refresh=refresh)
        if figures or refresh:
            host_figures(settings, measure=True, refresh=refresh)
            caps = host_caps(settings)  # now with its figures (cached beside the probe)
    except DQError as exc:
        fail(exc)
    if as_json:
        figs = caps.roofline_figures()
        doc = {**caps.model_dump(mode="json"), "host": caps.host_block()}
        doc["roofline_figures"] = figs.model_dump(mode="json") if figs else None
        print(json.dumps(doc, indent=2))
        return
    out.print(render_caps(caps), highlight=False, markup=False, soft_wrap=True)
