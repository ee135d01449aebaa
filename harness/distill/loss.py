"""Logit-distillation losses (torch; imported by the training stage and the tests, never by the orchestrator).

kd_loss = alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(student, labels), per position, averaged.
T^2 keeps the soft-target gradients on the scale of the hard ones (Hinton et al. 2015).

With a top-k teacher cache the teacher distribution is known only on its k most likely tokens, plus the
total mass of the rest (from the logsumexp stored with them). The KL is then computed on k + 1 outcomes
(those tokens and one bucket for everything else) -- exact for k = V, a lower bound otherwise, because
merging outcomes never increases a KL divergence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def kl_full(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T) per position: [..., V] x [..., V] -> [...]."""
    lt = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    ls = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (lt.exp() * (lt - ls)).sum(-1)


def kl_topk(
    student_logits: torch.Tensor,
    top_values: torch.Tensor,
    top_indices: torch.Tensor,
    teacher_lse: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """KL on (top-k + rest bucket). top_values: the teacher's raw logits at top_indices [..., k];
    teacher_lse: logsumexp of the teacher's full logits / T [...]."""
    lt = top_values.float() / temperature - teacher_lse.float().unsqueeze(-1)  # log p_i at T
    ls_full = F.log_softmax(student_logits.float() / temperature, dim=-1)
    ls = ls_full.gather(-1, top_indices.long())  # log q_i at the teacher's top-k
    p, q = lt.exp(), ls.exp()
    p_rest = (1.0 - p.sum(-1)).clamp_min(0.0)
    q_rest = (1.0 - q.sum(-1)).clamp_min(_EPS)
    head = (p * (lt - ls)).sum(-1)
    tail = torch.where(
        p_rest > _EPS, p_rest * (torch.log(p_rest.clamp_min(_EPS)) - torch.log(q_rest)), torch.zeros_like(p_rest)
    )
    return head + tail


def kd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    teacher_logits: torch.Tensor | None = None,
    topk: tuple | None = None,
) -> dict[str, torch.Tensor]:
    """Next-token loss over positions [B, L-1] (logits [B, L, V] predict labels shifted by one).

    Give the teacher as full logits [B, L, V] or as topk = (values, indices, lse) with shapes [B, L, k],
    [B, L, k], [B, L]. Returns loss, ce and kd (kd is 0 when alpha = 0 and no teacher is given)."""
    s = student_logits[:, :-1]
    y = labels[:, 1:]
    ce = F.cross_entropy(s.reshape(-1, s.size(-1)).float(), y.reshape(-1))
    if alpha == 0.0:
        kd = torch.zeros((), dtype=ce.dtype)
    elif teacher_logits is not None:
        kd = kl_full(s, teacher_logits[:, :-1], temperature).mean()
    elif topk is not None:
        v, i, lse = topk
        kd = kl_topk(s, v[:, :-1], i[:, :-1], lse[:, :-1], temperature).mean()
    else:
        raise ValueError("alpha > 0 needs the teacher: teacher_logits or topk")
    loss = alpha * temperature**2 * kd + (1.0 - alpha) * ce
    return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}


def teacher_topk(teacher_logits: torch.Tensor, k: int, temperature: float) -> tuple[torch.Tensor, ...]:
    """What the cache keeps per position: top-k raw logits (fp32: fp16 rounding would leak mass into the
    rest bucket), their ids (int32), logsumexp at T (fp32)."""
    x = teacher_logits.float()
    v, i = x.topk(k, dim=-1)
    lse = torch.logsumexp(x / temperature, dim=-1)
    return v, i.int(), lse
