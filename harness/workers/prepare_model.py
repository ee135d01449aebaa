"""Worker: dequantize a GGUF checkpoint to a bf16 safetensors folder with transformers (offline).

transformers' GGUF loader dequantizes on load but leaves a `quantization_config` on the config that
would make save_pretrained write something vLLM reads as quantized; we rebuild a plain model from the
config and load the dequantized state dict into it.
"""

from __future__ import annotations

from pathlib import Path

from harness.proc import REQUIRED, worker_main


def work(cfg: dict) -> None:

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(cfg["gguf"])
    dtype = getattr(torch, cfg["dtype"])
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
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
    out = Path(cfg["out"])
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    # sanity: the greedy continuation of a fixed prompt, stored for the manifest reader
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=3, do_sample=False)
    print("greedy:", repr(tok.decode(gen[0][ids["input_ids"].shape[1] :])))
    print("params:", sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    worker_main(work, flags={"gguf": REQUIRED, "dtype": "bfloat16"})
