"""`harness sensitivity`: the per-layer quantization sensitivity scan of one method on one model (run by
harness/plan/sensitivity.py), as a ranked table and a mixed-precision suggestion."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from harness.cli.console import fail, out
from harness.cli.grants import ALLOW_ENGINE_ARG, TRUST_REMOTE_CODE, grant_of
from harness.cli.matrix_plan import load_plan
from harness.errors import DQError


def sensitivity(
    file: Path = typer.Argument(..., help="matrix YAML"),
    method: str = typer.Option(..., "--method", help="a name under `methods:` (its grid is measured)"),
    precision: str = typer.Option(None, "--precision", help="default: the method's first precision"),
    model: str = typer.Option(None, "--model", help="default: the matrix's first model"),
    windows: int = typer.Option(8, "--windows"),
    tokens: int = typer.Option(256, "--tokens"),
    top: int = typer.Option(2, "--top", help="layers to keep in bf16 in the suggestion"),
    allow_engine_arg: list[str] = ALLOW_ENGINE_ARG,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
) -> None:
    """Per-layer quantization sensitivity (KL when only that layer is quantized): a mixed-precision helper."""
    from harness.plan.sensitivity import scan

    try:
        settings, matrix, _ = load_plan(file, grant=grant_of(allow_engine_arg, trust_remote_code))
        doc = scan(matrix, method, settings, precision=precision, model=model, windows=windows, tokens=tokens, top=top)
    except DQError as exc:
        fail(exc)
    t = Table(
        title=f"{doc['model']} / {doc['method']} ({doc['precision']}): one layer quantized at a time, "
        f"{doc['windows']} x {doc['tokens']} tokens"
    )
    for col in ("rank", "layer", "KLD mean", "top-1 agree", "ppl ratio", "params"):
        t.add_column(col)
    by = {r["layer"]: r for r in doc["layers"]}
    for i, layer in enumerate(doc["ranked"]):
        r = by[layer]
        t.add_row(
            str(i + 1),
            str(layer),
            f"{r['kld_mean']:.5f}",
            f"{r['top1_agreement']:.1%}",
            f"{r['ppl_ratio']:.4f}",
            f"{r['params']:,}",
        )
    out.print(t)
    a = doc["all_layers"]
    out.print(
        f"every layer quantized: KLD {a['kld_mean']:.4f}, top-1 {a['top1_agreement']:.1%}, "
        f"ppl ratio {a['ppl_ratio']:.3f}; stored {settings.results_dir / 'sensitivity' / doc['scan_id']}.json",
        highlight=False,
        markup=False,
    )
    out.print(
        f"mixed precision, the {top} most sensitive layers in bf16:\n  ignore: "
        + json.dumps(doc["suggested"]["ignore"]),
        highlight=False,
        markup=False,
    )
