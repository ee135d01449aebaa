"""Worker: int4 with the archived CUDA-era packages (AutoAWQ GEMM, AutoGPTQ). Calibration windows are drawn as
in the llm-compressor worker. Needs a CUDA GPU and an environment with the torch and transformers those
packages need (torch 2.6 / 2.2, transformers < 5): none of dqbench's environments is one, so the plan refuses
these methods (harness/compress/legacy.py says why and what to use instead) and this worker runs only where
a user has built such an environment."""

from __future__ import annotations

import time
from importlib import metadata

from harness.proc import worker_main


def windows(cfg: dict) -> list[list[int]]:
    from harness.measure.prompts import token_prompts

    return token_prompts(
        cfg["source"], cfg["calibration_source"], cfg["calibration_samples"], cfg["calibration_seq_len"], cfg["seed"]
    )


def work(cfg: dict) -> dict:

    import torch
    from transformers import AutoTokenizer

    if not torch.cuda.is_available():
        raise SystemExit(f"{cfg['tool']} needs a CUDA GPU (its kernels are CUDA-only)")
    t0 = time.monotonic()
    tok = AutoTokenizer.from_pretrained(cfg["source"])
    calib = windows(cfg)
    if cfg["tool"] == "autoawq":
        from awq import AutoAWQForCausalLM

        qcfg = {"zero_point": True, "q_group_size": cfg["group_size"], "w_bit": 4, "version": "GEMM"}
        model = AutoAWQForCausalLM.from_pretrained(cfg["source"])
        model.quantize(tok, quant_config=qcfg, calib_data=[tok.decode(w) for w in calib])
        model.save_quantized(cfg["out"])
    else:
        from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig

        qcfg = {"bits": 4, "group_size": cfg["group_size"], "desc_act": False}
        model = AutoGPTQForCausalLM.from_pretrained(cfg["source"], BaseQuantizeConfig(**qcfg))
        model.quantize(
            [{"input_ids": torch.tensor([w]), "attention_mask": torch.ones(1, len(w), dtype=torch.long)} for w in calib]
        )
        model.save_quantized(cfg["out"])
    tok.save_pretrained(cfg["out"])
    pkg = "autoawq" if cfg["tool"] == "autoawq" else "auto-gptq"
    record = {
        "tool": cfg["tool"],
        "method": cfg["tool"],
        "precision": "int4",
        "recipe": qcfg,
        "calibration": {
            k: cfg[k] for k in ("calibration_source", "calibration_samples", "calibration_seq_len", "seed")
        },
        "wall_s": time.monotonic() - t0,
        "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30,
        "versions": {pkg: metadata.version(pkg), "torch": torch.__version__},
    }
    return record


if __name__ == "__main__":
    worker_main(work, result="record")
