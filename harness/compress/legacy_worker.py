"""Worker: int4 with the archived CUDA-era packages (AutoAWQ GEMM, AutoGPTQ). Calibration windows are drawn as
in the llm-compressor worker. Started by harness/compress/legacy.py in the serving environment; needs a CUDA
GPU and an environment with the torch and transformers those packages need (torch 2.6 / 2.2,
transformers < 5): none of dqbench's environments is one, so the plan refuses these methods (legacy.py says
why and what to use instead) and this worker runs only where a user has built such an environment.

`LegacyJob` in, the checkpoint folder at `out` and `LegacyRecord` back (kept as compress-record.json).
Importable without torch or the packages.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.compress.base import Calibration
from harness.jobs import Job, Record


class LegacyCalibration(BaseModel):
    """The calibration as this worker's record has always spelled it (the job's field names of its time)."""

    model_config = ConfigDict(extra="forbid")

    calibration_source: str
    calibration_samples: int
    calibration_seq_len: int
    seed: int


class LegacyRecord(Record):
    tool: str
    method: str
    precision: str  # "int4"
    recipe: dict[str, Any]  # the package's own quantization config, as passed to it
    calibration: LegacyCalibration
    wall_s: float
    peak_vram_gib: float
    versions: dict[str, str]


class LegacyJob(Job[LegacyRecord]):
    worker = "harness.compress.legacy_worker:work"

    tool: Literal["autoawq", "auto-gptq"]
    source: str
    trust_remote_code: bool = False  # run the checkpoint's own code (the plan allows it only with --trust-remote-code)
    out: str  # the quantized checkpoint (a temporary name the parent renames into place)
    group_size: int  # the parent passes 128 for "channel" or none
    calibration: Calibration


def windows(job: LegacyJob) -> list[list[int]]:
    from harness.measure.prompts import token_prompts

    c = job.calibration
    return token_prompts(job.source, c.source, c.samples, c.seq_len, c.seed)


def work(job: LegacyJob) -> LegacyRecord:
    import torch
    from transformers import AutoTokenizer

    if not torch.cuda.is_available():
        raise SystemExit(f"{job.tool} needs a CUDA GPU (its kernels are CUDA-only)")
    t0 = time.monotonic()
    tok = AutoTokenizer.from_pretrained(job.source, trust_remote_code=job.trust_remote_code)
    calib = windows(job)
    qcfg: dict[str, Any]
    if job.tool == "autoawq":
        from awq import AutoAWQForCausalLM

        qcfg = {"zero_point": True, "q_group_size": job.group_size, "w_bit": 4, "version": "GEMM"}
        # AutoAWQ trusts repository code unless told not to: always told (harness/plan/trust.py)
        model = AutoAWQForCausalLM.from_pretrained(job.source, trust_remote_code=job.trust_remote_code)
        model.quantize(tok, quant_config=qcfg, calib_data=[tok.decode(w) for w in calib])
        model.save_quantized(job.out)
    else:
        from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig

        qcfg = {"bits": 4, "group_size": job.group_size, "desc_act": False}
        model = AutoGPTQForCausalLM.from_pretrained(
            job.source, BaseQuantizeConfig(**qcfg), trust_remote_code=job.trust_remote_code
        )
        model.quantize(
            [{"input_ids": torch.tensor([w]), "attention_mask": torch.ones(1, len(w), dtype=torch.long)} for w in calib]
        )
        model.save_quantized(job.out)
    tok.save_pretrained(job.out)
    pkg = "autoawq" if job.tool == "autoawq" else "auto-gptq"
    c = job.calibration
    return LegacyRecord(
        tool=job.tool,
        method=job.tool,
        precision="int4",
        recipe=qcfg,
        calibration=LegacyCalibration(
            calibration_source=c.source, calibration_samples=c.samples, calibration_seq_len=c.seq_len, seed=c.seed
        ),
        wall_s=time.monotonic() - t0,
        peak_vram_gib=torch.cuda.max_memory_allocated() / 2**30,
        versions={pkg: metadata.version(pkg), "torch": torch.__version__},
    )
