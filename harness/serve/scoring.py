"""Scoring: how lm-eval and the shift analysis score a served cell, as its serving plugin says
(`EngineServer.scoring()`): through the cell's server, or in-process on the same artefact.

It crosses from serve to evaluate (and into their workers), so it lives in a module of its own with no
lifecycle code beside it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# lm-eval's model arguments are its own keyword arguments (`model_args`), passed through as they are
ModelArg = str | int | float | bool | None


class Scoring(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str  # the lm-eval model name (`dq-local-completions`, `dq-llamacpp`)
    register_module: str | None = None  # the module whose import registers that model with lm-eval
    model_args: dict[str, ModelArg] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)  # what the scoring worker's environment needs besides
    how: str = ""  # one sentence for the result (`quality.scored_by`)
    # where the loglikelihoods are computed: the cell's server, or its engine in the scoring worker's process
    # (the result's `quality.evaluated_via`)
    via: Literal["server", "in-process"] = "server"
