"""`harness doctor`: what this host and its engine builds can run (the cached hardware probe, or a fresh
one), as text or JSON."""

from __future__ import annotations

import json

import typer

from harness.cli.console import fail, out
from harness.errors import DQError


def doctor(
    as_json: bool = typer.Option(False, "--json", help="print the probe as JSON"),
    refresh: bool = typer.Option(False, "--refresh", help="probe again instead of reading the cache"),
) -> None:
    """What this host and its engine builds can run: CPU/ISA, GPUs, vLLM's kernels, llama.cpp, fast dtype."""
    from harness.hw.probe import host_caps
    from harness.hw.report import render_caps
    from harness.settings import load_settings

    try:
        caps = host_caps(load_settings(), refresh=refresh)
    except DQError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({**caps.model_dump(mode="json"), "host": caps.host_block()}, indent=2))
        return
    out.print(render_caps(caps), highlight=False, markup=False, soft_wrap=True)
