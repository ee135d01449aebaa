"""Worker: per-layer quantization sensitivity (the mixed-precision planning helper's measurement).

For each decoder layer alone, round its linear weights to the method's grid (round-to-nearest, the
same per-group or per-channel scales compressed-tensors computes: symmetric absmax / ((2^b - 1) / 2),
asymmetric min-max with a zero point), run the fixed token windows, and compare the next-token
distributions with the unquantized model's: exact full-vocabulary KL(ref || layer-quantized), top-1
agreement and the perplexity ratio. The weights are restored before the next layer. One more pass
quantizes every layer (what uniform quantization does), for scale. Runs with the worker interpreter
(torch, transformers); weights stay in bf16 as served, logits are compared in fp32.
"""

from __future__ import annotations

import json
import os
import time

import torch
import torch.nn.functional as F

from harness.proc import worker_main


def fake_quant(w: torch.Tensor, bits: int, group_size, symmetric: bool) -> torch.Tensor:
    x = w.float()
    out_f, in_f = x.shape
    g = in_f if group_size in (None, "channel") else int(group_size)
    x = x.reshape(out_f, in_f // g, g)
    if symmetric:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale = (x.abs().amax(-1, keepdim=True) / ((qmax - qmin) / 2)).clamp_min(1e-12)
        q = torch.clamp(torch.round(x / scale), qmin, qmax) * scale
    else:
        qmin, qmax = 0, 2**bits - 1
        lo = x.amin(-1, keepdim=True).clamp_max(0)
        hi = x.amax(-1, keepdim=True).clamp_min(0)
        scale = ((hi - lo) / (qmax - qmin)).clamp_min(1e-12)
        zero = torch.round(-lo / scale)
        q = (torch.clamp(torch.round(x / scale) + zero, qmin, qmax) - zero) * scale
    return q.reshape(out_f, in_f).to(w.dtype)


def linears(module) -> list:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


@torch.no_grad()
def compare(model, windows: torch.Tensor, ref: list[torch.Tensor]) -> dict:
    kl, agree, nll, ref_nll, n = 0.0, 0.0, 0.0, 0.0, 0
    for i, r in enumerate(ref):
        x = windows[i : i + 1]
        lp = F.log_softmax(model(input_ids=x).logits.float()[:, :-1], -1)
        r = r.float()
        y = x[:, 1:].unsqueeze(-1)
        kl += (r.exp() * (r - lp)).sum(-1).sum().item()
        agree += (r.argmax(-1) == lp.argmax(-1)).sum().item()
        nll += -lp.gather(-1, y).sum().item()
        ref_nll += -r.gather(-1, y).sum().item()
        n += y.numel()
    return {
        "kld_mean": kl / n,
        "top1_agreement": agree / n,
        "ppl_ratio": float(torch.exp(torch.tensor((nll - ref_nll) / n))),
    }


def work(cfg: dict) -> dict:
    from transformers import AutoModelForCausalLM

    from harness.measure.prompts import token_prompts

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(cfg["source"], dtype=torch.bfloat16).eval()
    windows = torch.tensor(token_prompts(cfg["source"], cfg["corpus"], cfg["windows"], cfg["tokens"], cfg["seed"]))
    with torch.no_grad():  # the reference: log-probs of the unquantized model, kept in fp16 (V x tokens x windows)
        ref = [
            F.log_softmax(model(input_ids=windows[i : i + 1]).logits.float()[:, :-1], -1).half()
            for i in range(len(windows))
        ]
    bits, group, sym = cfg["bits"], cfg["group_size"], cfg["symmetric"]
    layers = []
    for i, layer in enumerate(model.model.layers):
        mods = linears(layer)
        saved = [m.weight.data.clone() for m in mods]
        for m in mods:
            m.weight.data = fake_quant(m.weight.data, bits, group, sym)
        row = {"layer": i, "params": sum(m.weight.numel() for m in mods), **compare(model, windows, ref)}
        for m, w in zip(mods, saved):
            m.weight.data = w
        layers.append(row)
        print(json.dumps(row), flush=True)
    for layer in model.model.layers:  # every layer at once: the uniform cell's damage, for scale
        for m in linears(layer):
            m.weight.data = fake_quant(m.weight.data, bits, group, sym)
    result = {
        "layers": layers,
        "all_layers": compare(model, windows, ref),
        "wall_s": round(time.monotonic() - t0, 1),
        "measure": "round-to-nearest per layer; exact full-vocabulary KL(ref || layer-quantized)",
    }
    return result  # written atomically under a unique temporary name: two scans of one id may run at once


if __name__ == "__main__":
    worker_main(work, result="out")
