"""One small lazy registry for every plugin family (compressors, servers, evaluators, model sources,
distillers, executors).

Names map to "module:attr" strings resolved on first use, so importing the registry pulls in no
backend (the lm-eval registry's design). A miss names the known entries and the closest match. Each
family has a contract (harness/contracts.py) that a plugin is checked against when it is loaded: one that
lacks a member is refused at `get`, naming what it lacks, before any cell starts.
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import Any, Generic, TypeVar, cast

from harness import contracts
from harness.errors import PlanError


class PluginContractError(PlanError):
    """A plugin was found but does not meet its family's contract."""


T = TypeVar("T")


class Registry(Generic[T]):
    """One family's plugins by name. `contract` (harness/contracts.py) is what every plugin of the family
    must offer; it is checked once, when the plugin is first loaded, and `get` returns the plugin typed as
    that contract (lm-eval's `Registry(Generic[T], base_cls)`), so mypy checks every call on a plugin."""

    def __init__(self, family: str, contract: type = object) -> None:  # T's Protocol (mypy takes no abstract type[T])
        self.family = family
        self.contract = contract
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, type[T]] = {}

    def register(self, name: str, target: str) -> None:
        if name in self._targets and self._targets[name] != target:
            raise ValueError(f"{self.family} {name!r} already registered as {self._targets[name]}")
        self._targets[name] = target

    def override(self, name: str, target: str) -> None:
        """Point `name` at another implementation (out-of-tree plugins, test fakes)."""
        self._targets[name] = target
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: str) -> bool:
        return name in self._targets

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.family} {name!r} (known: {', '.join(known) or 'none'}){hint}"

    def get(self, name: str) -> type[T]:
        """The plugin class (or factory) registered as `name`, checked against the family's contract."""
        if name not in self._targets:
            raise PlanError(self.unknown_message(name))
        if name not in self._loaded:
            target = self._targets[name]
            module, _, attr = target.partition(":")
            obj: Any = getattr(importlib.import_module(module), attr)
            problems = contracts.contract_problems(obj, self.contract)
            if problems:
                raise PluginContractError(
                    f"{self.family} {name!r} ({target}) does not meet the {self.family} contract "
                    f"(harness/contracts.py {self.contract.__name__}): {'; '.join(problems)}"
                )
            # structurally checked just above: a Protocol cannot be checked by isinstance on a class
            self._loaded[name] = cast("type[T]", obj)
        return self._loaded[name]


# The families. Entries are plain strings: adding a plugin never imports it.
compressors = Registry[contracts.CompressorContract]("compressor", contracts.CompressorContract)
servers = Registry[contracts.ServerContract]("server", contracts.ServerContract)
evaluators = Registry[contracts.EvaluatorContract]("evaluator", contracts.EvaluatorContract)
model_sources = Registry[contracts.ModelSourceContract]("model source", contracts.ModelSourceContract)
distillers = Registry[contracts.DistillerContract]("distiller", contracts.DistillerContract)
executors = Registry[contracts.ExecutorContract]("executor", contracts.ExecutorContract)

compressors.register("none", "harness.compress.identity:IdentityCompressor")
compressors.register("rtn", "harness.compress.llmcompressor:RTN")
compressors.register("gptq", "harness.compress.llmcompressor:GPTQ")
compressors.register("smoothquant_gptq", "harness.compress.llmcompressor:SmoothQuantGPTQ")
compressors.register("awq", "harness.compress.llmcompressor:AWQ")
compressors.register("qat", "harness.compress.qat:QAT")
compressors.register("gguf", "harness.compress.gguf:GGUF")
compressors.register("bnb", "harness.compress.loadtime:BitsAndBytes")
compressors.register("autoawq", "harness.compress.legacy:AutoAWQ")
compressors.register("autogptq", "harness.compress.legacy:AutoGPTQ")
servers.register("vllm", "harness.serve.vllm:VLLMServer")
servers.register("llamacpp", "harness.serve.llamacpp:LlamaCppServer")
evaluators.register("lm_eval", "harness.evaluate.lmeval:LMEvalEvaluator")
distillers.register("untrained", "harness.distill.base:Untrained")
distillers.register("logit_kd", "harness.distill.base:LogitKD")
distillers.register("sft", "harness.distill.base:SFT")
distillers.register("gkd", "harness.distill.base:GKD")
executors.register("local", "harness.executors.local:LocalExecutor")
executors.register("ray", "harness.executors.ray:RayExecutor")
model_sources.register("embedded", "harness.models.embedded:EmbeddedSource")
model_sources.register("hub", "harness.models.sources:HubSource")
model_sources.register("local", "harness.models.sources:LocalSource")

FAMILIES: dict[str, Registry[Any]] = {
    "compressor": compressors,
    "server": servers,
    "evaluator": evaluators,
    "model_source": model_sources,
    "distiller": distillers,
    "executor": executors,
}


def load_overrides(spec: str | None = None) -> None:
    """DQBENCH_PLUGINS="server.vllm=my_pkg.engines:MyServer,compressor.rtn=other:Rtn" registers or replaces
    plugins without editing dqbench: the way out-of-tree engines and methods (and test fakes) plug in."""
    spec = os.environ.get("DQBENCH_PLUGINS", "") if spec is None else spec
    for item in filter(None, (x.strip() for x in spec.split(","))):
        key, eq, target = item.partition("=")
        family, dot, name = key.partition(".")
        if not (eq and dot and ":" in target) or family not in FAMILIES:
            raise ValueError(
                f"DQBENCH_PLUGINS entry {item!r}: expected FAMILY.NAME=module:attr with FAMILY in {sorted(FAMILIES)}"
            )
        FAMILIES[family].override(name, target)


load_overrides()
