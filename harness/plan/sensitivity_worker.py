"""Worker: per-layer quantization sensitivity (the mixed-precision planning helper's measurement), started by
`scan` (harness/plan/sensitivity.py) in the serving environment (torch, transformers).

For each decoder layer alone, round its linear weights to the method's grid (round-to-nearest, the
same per-group or per-channel scales compressed-tensors computes: symmetric absmax / ((2^b - 1) / 2),
asymmetric min-max with a zero point), run the fixed token windows, and compare the next-token
distributions with the unquantized model's: exact full-vocabulary KL(ref || layer-quantized), top-1
agreement and the perplexity ratio. The weights are restored before the next layer. One more pass
quantizes every layer (what uniform quantization does), for scale. Weights stay in bf16 as served, logits
are compared in fp32.

`SensitivityJob` in, `SensitivityScan` back. Importable without torch (the parent builds the job with it):
torch is imported inside the functions.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.jobs import Job, Record

if TYPE_CHECKING:
    import torch


class Damage(BaseModel):
    """What rounding did to the next-token distributions, against the unquantized model's."""

    model_config = ConfigDict(extra="forbid")

    kld_mean: float  # exact full-vocabulary KL(ref || quantized), mean over positions
    top1_agreement: float
    ppl_ratio: float


class LayerDamage(BaseModel):
    """One decoder layer quantized alone (the fields in the order the stored scan has always had them)."""

    model_config = ConfigDict(extra="forbid")

    layer: int
    params: int  # the layer's linear weights
    kld_mean: float
    top1_agreement: float
    ppl_ratio: float


class SensitivityScan(Record):
    layers: list[LayerDamage]
    all_layers: Damage  # every layer at once: the uniform cell's damage, for scale
    wall_s: float
    measure: str


class SensitivityJob(Job[SensitivityScan]):
    """Every field but `source` is part of the scan id (harness/plan/sensitivity.py hashes the job's dump):
    a new field changes every id."""

    worker = "harness.plan.sensitivity_worker:work"

    source: str  # the checkpoint folder
    trust_remote_code: bool = False  # run the checkpoint's own code (the plan allows it only with --trust-remote-code)
    bits: int
    group_size: int | Literal["channel"] | None  # None or "channel": one scale per output channel
    symmetric: bool
    corpus: str  # the token windows (harness/measure/prompts.token_prompts)
    windows: int
    tokens: int
    seed: int


def fake_quant(w: torch.Tensor, bits: int, group_size: int | str | None, symmetric: bool) -> torch.Tensor:
    import torch

    x = w.float()
    out_f, in_f = x.shape
    g = in_f if group_size is None or group_size == "channel" else int(group_size)
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


def linears(module: Any) -> list:
    import torch

    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def compare(model: Any, windows: torch.Tensor, ref: list[torch.Tensor]) -> Damage:
    import torch
    import torch.nn.functional as F

    kl, agree, nll, ref_nll, n = 0.0, 0.0, 0.0, 0.0, 0
    with torch.no_grad():
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
    return Damage(
        kld_mean=kl / n,
        top1_agreement=agree / n,
        ppl_ratio=float(torch.exp(torch.tensor((nll - ref_nll) / n))),
    )


def work(job: SensitivityJob) -> SensitivityScan:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from harness.measure.prompts import token_prompts

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(
        job.source, dtype=torch.bfloat16, trust_remote_code=job.trust_remote_code
    ).eval()
    windows = torch.tensor(token_prompts(job.source, job.corpus, job.windows, job.tokens, job.seed))
    with torch.no_grad():  # the reference: log-probs of the unquantized model, kept in fp16 (V x tokens x windows)
        ref = [
            F.log_softmax(model(input_ids=windows[i : i + 1]).logits.float()[:, :-1], -1).half()
            for i in range(len(windows))
        ]
    bits, group, sym = job.bits, job.group_size, job.symmetric
    layers = []
    for i, layer in enumerate(model.model.layers):
        mods = linears(layer)
        saved = [m.weight.data.clone() for m in mods]
        for m in mods:
            m.weight.data = fake_quant(m.weight.data, bits, group, sym)
        row = LayerDamage(
            layer=i, params=sum(m.weight.numel() for m in mods), **compare(model, windows, ref).model_dump()
        )
        for m, w in zip(mods, saved):
            m.weight.data = w
        layers.append(row)
        print(json.dumps(row.model_dump()), flush=True)
    for layer in model.model.layers:  # every layer at once: the uniform cell's damage, for scale
        for m in linears(layer):
            m.weight.data = fake_quant(m.weight.data, bits, group, sym)
    return SensitivityScan(
        layers=layers,
        all_layers=compare(model, windows, ref),
        wall_s=round(time.monotonic() - t0, 1),
        measure="round-to-nearest per layer; exact full-vocabulary KL(ref || layer-quantized)",
    )
