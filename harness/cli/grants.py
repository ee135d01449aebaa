"""The command-line opt-ins a matrix may need (harness/plan/trust.py), shared by the commands that plan a matrix
to run it or to show what a run would do: `run`, `plan`, `validate`, `prepare`, `sensitivity`."""

from __future__ import annotations

import typer

from harness.plan.trust import Grant

ALLOW_ENGINE_ARG = typer.Option(
    None,
    "--allow-engine-arg",
    metavar="NAME",
    help="allow the matrix's engine option NAME (e.g. tool-parser-plugin, rpc) although it loads code, opens "
    "connections or touches files outside the cell (repeatable; the plan names what was allowed)",
)
TRUST_REMOTE_CODE = typer.Option(
    False,
    "--trust-remote-code",
    help="allow models with `trust_remote_code: true` (or whose repository carries code, auto_map) to run that code",
)


def grant_of(allow: list[str] | None, trust_remote_code: bool) -> Grant:
    return Grant(engine_args=frozenset(allow or ()), trust_remote_code=trust_remote_code)
