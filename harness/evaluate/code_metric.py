"""HumanEval's pass@1 scored through dqbench's sandbox: the filter and metric that the offline `humaneval` override
(harness/evaluate/overrides.py `code_override_yaml`) puts in place of lm-eval's, whose metric runs HF
`evaluate`'s `code_eval` in the evaluating process and loads it from the hub.

lm-eval resolves `!function harness.evaluate.code_metric.<name>` by importing this module in the lm-eval worker
(harness/evaluate/lmeval_worker.py), which calls `allow(...)` with the matrix's `allow_code_execution` before any
task is built: every program then runs through `code_sandbox.run_program(..., allowed=that)`, which refuses to run
anything without the opt-in. lm-eval calls the metric once per document (references=[its target],
predictions=[[prompt + completion]]), so each item's `pass@1` is 0 or 1 and flips, paired intervals and the
sequential measure read it as they read an accuracy. A sandbox fault (outcome "error": the sandbox could not be
set up, not the program failing) is never scored as the model's failure: it raises `SandboxFault`, which ends the
task with the sandbox's own words. Standard library and pydantic only (through code_sandbox).
"""

from __future__ import annotations

from harness.evaluate.code_sandbox import SandboxLimits, SandboxResult, run_program

# the matrix's `allow_code_execution`, set by the lm-eval worker; False until it says otherwise
_allowed = False


class SandboxFault(RuntimeError):
    """The sandbox could not run a program (not a failure of the program): the score would be wrong, so stop."""


def allow(allowed: bool) -> None:
    """Carry the user's opt-in (LMEvalSpec.allow_code_execution) to the metric; set once per worker."""
    global _allowed
    _allowed = bool(allowed)


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval's humaneval `create_test` filter (tasks/humaneval/utils.py `build_predictions`), verbatim in
    behaviour: the prompt, then the model's completion. Defined here because importing lm-eval's own module
    loads `code_eval` from the hub."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs, strict=True)]


def run_check(candidate: str, reference: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run one candidate against its check: `candidate + "\\n" + reference`, as `code_eval` composes it. With
    candidate = prompt + completion (the filter) and reference = `{test}\\ncheck({entry_point})` (the task's
    target) this is exactly `code_sandbox.humaneval_program(prompt, completion, test, entry_point)`."""
    result = run_program(candidate + "\n" + reference, allowed=_allowed, limits=limits)
    if result.outcome == "error":
        raise SandboxFault(
            f"the code sandbox could not run a program (exit {result.exit_code}); no score is recorded rather "
            f"than a failure the model did not make: {result.stderr_tail[-600:]!r}"
        )
    return result


def pass_at_1(references: list[str], predictions: list[list[str]], **_ignored: object) -> dict[str, float]:
    """{"pass@1": the share of (reference, first candidate) pairs whose check passed}: one pair per call from
    lm-eval, so 0.0 or 1.0 per item (greedy decoding, one sample: pass@1 is whether that sample passed)."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references for {len(predictions)} predictions")
    passed = [run_check(cands[0], ref).passed for ref, cands in zip(references, predictions, strict=True)]
    return {"pass@1": sum(passed) / len(passed) if passed else 0.0}
