"""The top-k KL estimate against exact full-vocabulary KL, on the real model's logits (transformers) for
the same tokens: reference = SmolLM2-135M, cell = the same model with its linear weights rounded to int4
(symmetric, groups of 64) or int8 (per channel) in torch. Prints the error for the README."""

from __future__ import annotations

import numpy as np
import pytest

from harness.evaluate.shift import kl_exact, kl_topk, topk_from_logits

pytestmark = pytest.mark.slow


def fake_quant_(model, bits: int, group: int | None) -> None:
    import torch

    qmax = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and "lm_head" not in name:
                w = mod.weight
                g = w.reshape(-1, group) if group else w
                scale = g.abs().amax(-1, keepdim=True).clamp(min=1e-8) / qmax
                mod.weight.copy_((torch.round(g / scale).clamp(-qmax - 1, qmax) * scale).reshape(w.shape))


def test_topk_kl_error_against_exact_kl(settings):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from harness.measure.prompts import token_prompts

    src = settings.models_dir / "smollm2-135m-instruct"
    if not (src / "model.safetensors").is_file():
        pytest.skip("embedded model not prepared (./dq setup)")
    windows = torch.tensor(token_prompts(str(src), "pydoc", 4, 129, seed=7))

    def logits(bits=None, group=None):
        m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        if bits:
            fake_quant_(m, bits, group)
        with torch.no_grad():
            return m(windows).logits[:, :-1].reshape(-1, m.config.vocab_size).numpy()

    tokens = windows[:, 1:].reshape(-1).numpy()
    ref = logits()
    r = topk_from_logits(ref, tokens, 20)
    rows = {}
    for label, bits, group in (("int8-channel", 8, None), ("int4-g64", 4, 64)):
        cell = logits(bits, group)
        c = topk_from_logits(cell, tokens, 20)
        exact, approx = kl_exact(ref, cell), kl_topk(r[1], r[2], c[1], c[2])
        rows[label] = (exact.mean(), approx.mean())
        print(
            f"{label}: exact KL {exact.mean():.5f}, top-20 estimate {approx.mean():.5f} "
            f"({approx.mean() / exact.mean() - 1:+.1%}), per-position corr "
            f"{np.corrcoef(exact, approx)[0, 1]:.3f}"
        )
        assert approx.mean() == pytest.approx(exact.mean(), rel=0.3)
        assert np.corrcoef(exact, approx)[0, 1] > 0.9
    assert rows["int8-channel"][1] < rows["int4-g64"][1]  # the estimate orders them as exact KL does
