"""Scheme: a served format as the predictions see it (precision x method x engine), read from a measured
cell's plan or from a name a user types (`w4a16-gptq`, `gguf-q4_k_m`, `fp8`).

What a scheme decides for a prediction:
- `quant`: how its weights are stored, module by module (harness/serving_memory.Quant): memory and the bytes a
  decode step streams;
- `compute_dtype`: which matmul throughput bounds it (W8A8 and GGUF k-quants multiply in int8; weight-only
  schemes dequantize to the activation dtype);
- `kernel`: the engine's kernel family, the group its speed efficiency is fitted on (harness/predict/fit.py);
- `family` / `bits_class`: the groups its quality drop is predicted from (harness/predict/quality.py).

Pure: no plugin is imported (the advisor reads this), so the method kinds are named here, not asked of the
compressor registry.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.serving_memory import GGUF_FILE_TYPES, Quant
from harness.spec.base import BITS, FULL_PRECISIONS

# llm-compressor methods that leave asymmetric int4 (zero points): AWQ (harness/compress/llmcompressor.py)
ASYMMETRIC = ("awq",)
# the GGUF type of each precision when a matrix names none (harness/compress/gguf.DEFAULT_TYPES)
GGUF_DEFAULT = {"int8": "Q8_0", "int6": "Q6_K", "int5": "Q5_K_M", "int4": "Q4_K_M", "int3": "Q3_K_M", "int2": "Q2_K"}


class Scheme(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    precision: str
    method: str = "none"  # the method's kind: none, rtn, gptq, awq, smoothquant_gptq, qat, gguf, bnb
    engine: Literal["vllm", "llamacpp"] = "vllm"
    group_size: int | Literal["channel"] | None = None
    activations: Literal[8, 16] = 16  # 8: W8A8 (activations quantized per token)
    gguf_type: str | None = None
    ignore: tuple[str, ...] = ("lm_head",)

    @property
    def uncompressed(self) -> bool:
        return self.precision in FULL_PRECISIONS

    @property
    def quant(self) -> Quant:
        bits = float(BITS[self.precision])
        if self.uncompressed:
            return Quant(bits=bits)
        if self.gguf_type:
            return Quant(bits=bits, gguf_type=self.gguf_type)
        group = "channel" if self.precision == "fp8" else self.group_size
        return Quant(bits=bits, group_size=group, symmetric=self.method not in ASYMMETRIC, ignore=self.ignore)

    def compute_dtype(self, activation_dtype: str | None) -> str:
        """The dtype the matmuls run in: int8 for W8A8-int8 and for GGUF (ggml's quantized dot products take
        int8-quantized activations), fp8 for W8A8-FP8, else the activation dtype (weight-only schemes
        dequantize to it)."""
        if self.uncompressed:
            return self.precision
        if self.gguf_type or (self.precision == "int8" and self.activations == 8):
            return "int8"
        if self.precision == "fp8":
            return "fp8"
        return activation_dtype or "bf16"

    def kv_dtype(self, activation_dtype: str | None) -> str:
        """The KV cache's dtype at the engines' defaults: llama.cpp f16, vLLM the model's compute dtype."""
        if self.engine == "llamacpp":
            return "f16"
        return self.precision if self.uncompressed else (activation_dtype or "bf16")

    @property
    def kind(self) -> str:
        """The served format (harness/plan/support.py's scheme names, GGUF by type)."""
        if self.uncompressed:
            return self.precision
        if self.gguf_type:
            return f"gguf-{self.gguf_type}"
        if self.precision == "fp8":
            return "fp8"
        if self.method == "bnb":
            return "bnb-nf4"
        if self.precision == "int8":
            return "w8a8-int8" if self.activations == 8 else "w8a16"
        return f"w{BITS[self.precision]}a16"

    @property
    def kernel(self) -> str:
        """The engine's kernel family: cells sharing it share a speed efficiency (AWQ's zero points and GPTQ's
        ordering run through the same W4A16 kernel; a group size changes little)."""
        return f"{self.engine}:{self.kind}"

    @property
    def bits_class(self) -> str:
        """The coarse quality class: uncompressed, 8-bit, 6-bit, 5-bit, 4-bit ... (fp8 is 8-bit)."""
        if self.uncompressed:
            return "uncompressed"
        return f"{BITS[self.precision]}-bit"

    @property
    def family(self) -> str:
        """The quality family: the kind with its method (w4a16-gptq, w8a8-int8-smoothquant_gptq, gguf-Q4_K_M)."""
        if self.uncompressed or self.gguf_type:
            return self.kind
        return f"{self.kind}-{self.method}"


def scheme_of_plan(plan: dict[str, Any]) -> Scheme:
    """The scheme of a planned cell (a CellPlan's JSON dump, as stored in every result)."""
    prec = str(plan["precision"])
    spec = plan.get("method_spec") or {}
    kind = str(spec.get("kind") or "none")
    engine = (plan.get("serving") or {}).get("kind", "vllm")
    opts = spec.get("options") or {}
    label = f"{prec}/{plan.get('method', kind)}"
    if prec in FULL_PRECISIONS or kind == "none":
        return Scheme(name=prec, precision=prec, engine=engine)
    if engine == "llamacpp" or kind == "gguf":
        t = str(opts.get("type") or GGUF_DEFAULT.get(prec, "Q4_K_M"))
        return Scheme(name=f"gguf-{t}", precision=prec, method="gguf", engine="llamacpp", gguf_type=t)
    act = 8 if prec == "int8" and int(opts.get("activations", 8)) == 8 else 16
    group = spec.get("group_size")
    return Scheme(
        name=label,
        precision=prec,
        method=kind,
        engine=engine,
        group_size=group,
        activations=act,  # type: ignore[arg-type]
        ignore=tuple(spec.get("ignore") or ("lm_head",)),
    )


# names a user may type, with what they stand for (the methods and group sizes llm-compressor users pick)
NAMED: dict[str, dict[str, Any]] = {
    "bf16": dict(precision="bf16"),
    "fp16": dict(precision="fp16"),
    "fp32": dict(precision="fp32"),
    "fp8": dict(precision="fp8", method="rtn"),
    "w8a8": dict(precision="int8", method="smoothquant_gptq", activations=8),
    "w8a8-rtn": dict(precision="int8", method="rtn", activations=8),
    "w8a8-gptq": dict(precision="int8", method="gptq", activations=8),
    "w8a8-sq": dict(precision="int8", method="smoothquant_gptq", activations=8),
    "w8a16": dict(precision="int8", method="rtn", activations=16),
    "w4a16": dict(precision="int4", method="gptq", group_size=128),
    "w4a16-gptq": dict(precision="int4", method="gptq", group_size=128),
    "w4a16-awq": dict(precision="int4", method="awq", group_size=128),
    "w4a16-rtn": dict(precision="int4", method="rtn", group_size=128),
    "w4a16-qat": dict(precision="int4", method="qat", group_size=128),
    "bnb-nf4": dict(precision="int4", method="bnb"),
}


def parse_scheme(text: str) -> Scheme:
    """A scheme from its name: NAMED's (`w4a16-gptq`, with an optional `-g64` group size), or `gguf-<type>`
    for any llama-quantize type (`gguf-q4_k_m`). A ValueError names the known ones."""
    raw = text.strip().lower()
    m = re.fullmatch(r"gguf[-_:]?(.+)", raw)
    if m:
        t = m.group(1).upper()
        if t not in GGUF_FILE_TYPES:
            raise ValueError(f"scheme {text!r}: GGUF type {t} unknown; known: {', '.join(GGUF_FILE_TYPES)}")
        prec = f"int{int(t[1])}" if t[1].isdigit() else "int4"
        return Scheme(name=f"gguf-{t}", precision=prec, method="gguf", engine="llamacpp", gguf_type=t)
    group = None
    g = re.fullmatch(r"(.+?)-g(\d+)", raw)
    if g:
        raw, group = g.group(1), int(g.group(2))
    if raw not in NAMED:
        known = ", ".join([*NAMED, "gguf-<type> (gguf-q4_k_m, gguf-q8_0 ...)"])
        raise ValueError(f"scheme {text!r} unknown: give one of {known} (a w4a16 name takes -g32/-g64/-g128)")
    args = dict(NAMED[raw])
    if group is not None:
        if args.get("precision") != "int4" or args.get("method") == "bnb":
            raise ValueError(f"scheme {text!r}: a group size (-g{group}) applies to w4a16 schemes only")
        args["group_size"] = group
    return Scheme(name=text.strip().lower(), **args)
