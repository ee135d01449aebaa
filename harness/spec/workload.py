"""`load.workload`: what the requests of a load test look like, chosen by `kind`.

- `fixed` (the default): every request is `load.input_tokens` prompt tokens and `load.output_tokens`
  generated ones, as before workloads existed.
- `shared_prefix`: every prompt starts with one of `prefixes` shared prefixes of `prefix_tokens` tokens,
  then a distinct suffix up to `load.input_tokens` (vLLM bench's `prefix_repetition` dataset: prefix_len,
  suffix_len = input - prefix, num_prefixes). Whether the server reuses the prefix is the serving entry's
  setting: on by default in both engines, off with vLLM `engine_args: {no_enable_prefix_caching: true}` or
  llama-server `extra_args: {no_cache_prompt: true}`; the result's serve block records what the engine ran
  with (`loaded.engine_config.enable_prefix_caching`, `loaded.cache_prompt`).
- `chat`: conversations of `turns` user turns over /v1/chat/completions with the model's chat template. Each
  user turn is about `load.input_tokens` tokens of corpus text; each reply `load.output_tokens` tokens. The
  history carries fixed corpus replies of that length, not the model's own words, so every cell of a matrix
  sends the same conversations (a quantized model's different answers would otherwise change the load).
  The turns of one conversation go one after another; concurrency and rates count conversations.
- `distribution`: prompt and output lengths drawn per request (seeded) from a `normal` (mean, stdev),
  `uniform` or the `corpus`'s own document lengths, each clipped to [min, max] -- GuideLLM's synthetic data
  options (prompt_tokens, _stdev, _min, _max). `load.input_tokens`/`output_tokens` are not used.

Pure models: the prompts are built in harness/measure/workloads.py. No imports of harness/spec/loadtest.py
(it imports this).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TOKENS = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedWorkload(_Strict):
    kind: Literal["fixed"] = "fixed"

    def longest(self, input_tokens: int, output_tokens: int) -> tuple[int, int]:
        """(prompt tokens, output tokens) of the longest request, for the plan's context check."""
        return input_tokens, output_tokens

    def check(self, input_tokens: int, output_tokens: int) -> None:
        return None


class SharedPrefixWorkload(_Strict):
    kind: Literal["shared_prefix"]
    prefix_tokens: int = Field(ge=1, le=MAX_TOKENS, description="K: the shared prefix's length in tokens")
    prefixes: int = Field(default=1, ge=1, le=10_000, description="distinct prefixes, given to requests in turn")

    def longest(self, input_tokens: int, output_tokens: int) -> tuple[int, int]:
        return input_tokens, output_tokens

    def check(self, input_tokens: int, output_tokens: int) -> None:
        if self.prefix_tokens >= input_tokens:
            raise ValueError(
                f"load.workload.prefix_tokens: got {self.prefix_tokens}, but load.input_tokens is {input_tokens}; "
                "each prompt is the shared prefix plus a distinct suffix, so raise load.input_tokens above "
                f"{self.prefix_tokens} (e.g. {self.prefix_tokens + 64}) or shorten the prefix"
            )


class ChatWorkload(_Strict):
    kind: Literal["chat"]
    turns: int = Field(default=3, ge=1, le=100, description="user turns per conversation")
    system_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, description="a system message of this many tokens")
    # the chat template adds a few tokens per message (SmolLM2: 5) and may add a default system prompt when
    # none is given (SmolLM2's: 20 tokens); the plan's context check counts this many
    TEMPLATE_TOKENS_PER_MESSAGE: ClassVar[int] = 8
    TEMPLATE_TOKENS_DEFAULT_SYSTEM: ClassVar[int] = 32

    def longest(self, input_tokens: int, output_tokens: int) -> tuple[int, int]:
        # the last turn's prompt holds every earlier turn and reply, the system message and the template
        messages = 2 * self.turns - 1 + (self.system_tokens > 0)
        prompt = self.system_tokens + self.turns * input_tokens + (self.turns - 1) * output_tokens
        template = messages * self.TEMPLATE_TOKENS_PER_MESSAGE
        return prompt + template + (0 if self.system_tokens else self.TEMPLATE_TOKENS_DEFAULT_SYSTEM), output_tokens

    def check(self, input_tokens: int, output_tokens: int) -> None:
        return None


class Lengths(_Strict):
    """A length distribution in tokens, every draw clipped to [min, max]."""

    shape: Literal["normal", "uniform", "corpus"]
    min: int = Field(ge=1, le=MAX_TOKENS)
    max: int = Field(ge=1, le=MAX_TOKENS)
    mean: float | None = Field(default=None, description="normal only")
    stdev: float | None = Field(default=None, ge=0, description="normal only")

    @model_validator(mode="after")
    def _consistent(self) -> "Lengths":
        if self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}: swap them")
        if self.shape == "normal":
            if self.mean is None or self.stdev is None:
                raise ValueError("shape normal needs `mean` and `stdev` (tokens), e.g. {mean: 128, stdev: 32}")
            if not self.min <= self.mean <= self.max:
                raise ValueError(f"mean {self.mean:g} lies outside [min {self.min}, max {self.max}]: move it inside")
        elif self.mean is not None or self.stdev is not None:
            draws = "evenly in [min, max]" if self.shape == "uniform" else "the corpus documents' lengths"
            raise ValueError(
                f"shape {self.shape} takes no mean/stdev (it draws {draws}); remove them or use shape: normal"
            )
        return self


class DistributionWorkload(_Strict):
    kind: Literal["distribution"]
    input: Lengths
    output: Lengths
    seed: int = 0

    def longest(self, input_tokens: int, output_tokens: int) -> tuple[int, int]:
        return self.input.max, self.output.max

    def check(self, input_tokens: int, output_tokens: int) -> None:
        return None


Workload = Annotated[
    FixedWorkload | SharedPrefixWorkload | ChatWorkload | DistributionWorkload, Field(discriminator="kind")
]
