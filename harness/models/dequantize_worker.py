"""Worker: dequantize a GGUF checkpoint to a safetensors folder with transformers (offline), for the embedded
model's preparation (harness/models/embedded.py), in the serving environment (torch, transformers).

`DequantizeJob` in (the GGUF, beside the output folder: transformers reads the tokenizer from the GGUF's
folder), the checkpoint written into `out`, `Dequantized` back. transformers' GGUF loader dequantizes on load
but leaves a `quantization_config` on the config that would make save_pretrained write something vLLM reads as
quantized; we rebuild a plain model from the config and load the dequantized state dict into it. Importable
without torch (the parent builds the job with it).
"""

from __future__ import annotations

from pathlib import Path

from harness.jobs import Job, Record


class Dequantized(Record):
    out: str  # the checkpoint folder (config, weights, tokenizer)
    params: int
    greedy: str  # the greedy continuation of a fixed prompt: a sanity check to read in the log


class DequantizeJob(Job[Dequantized]):
    worker = "harness.models.dequantize_worker:work"

    gguf: str
    out: str
    dtype: str = "bfloat16"  # a torch dtype name: what the saved weights are


def work(job: DequantizeJob) -> Dequantized:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(job.gguf)
    dtype = getattr(torch, job.dtype)
    # the embedded model comes from a GGUF in a registry package: no repository code, ever
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, trust_remote_code=False
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied lm_head may be reported missing; anything else means a broken conversion
    bad = [k for k in missing if k != "lm_head.weight"] + list(unexpected)
    if bad:
        raise SystemExit(f"state dict mismatch after dequantization: {bad[:10]}")
    model = model.to(dtype)
    model.tie_weights()
    out = Path(job.out)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    # sanity: the greedy continuation of a fixed prompt, in the log and the record
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=3, do_sample=False)
    greedy = str(tok.decode(gen[0][ids["input_ids"].shape[1] :]))
    params = sum(p.numel() for p in model.parameters())
    print("greedy:", repr(greedy))
    print("params:", params)
    return Dequantized(out=job.out, params=params, greedy=greedy)
