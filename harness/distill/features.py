"""Feature (hidden-state) distillation: which student layer matches which teacher layer, and the loss.

Imported by the training stage (torch) and, for `layer_map` only, by the planner (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def layer_map(
    spec_map: dict | None, student_kind: str, keep_every: int | None, teacher_layers: int, student_layers: int
) -> dict[int, int]:
    """Student layer -> teacher layer. Explicit map, else a pruned student's origin layers, else spread."""
    if spec_map:
        return {int(k): int(v) for k, v in spec_map.items()}
    if student_kind == "prune" and keep_every is not None:
        from harness.models.arch import pruned_layers

        return dict(enumerate(pruned_layers(teacher_layers, keep_every)))
    return {i: round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)}


def map_problems(mapping: dict[int, int], teacher_layers: int, student_layers: int, name: str) -> list[str]:
    bad = [f"{s}->{t}" for s, t in mapping.items() if not (0 <= s < student_layers and 0 <= t < teacher_layers)]
    if bad:
        return [
            f"students[{name}].feature_layers {bad} out of range: the student has layers 0..{student_layers - 1}, "
            f"the teacher 0..{teacher_layers - 1}"
        ]
    return []


class LayerTap:
    """Captures the outputs of chosen decoder layers during a forward pass (forward hooks)."""

    def __init__(self, model, layers: list[int]) -> None:
        self.out: dict[int, object] = {}
        self.handles = [model.model.layers[i].register_forward_hook(self._hook(i)) for i in layers]

    def _hook(self, i: int):
        def f(_mod, _inp, output):
            self.out[i] = output[0] if isinstance(output, tuple) else output

        return f

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def feature_loss(student_h: dict, teacher_h: dict, mapping: dict[int, int], projections) -> torch.Tensor:
    """Mean over mapped pairs of ||P h_s - h_t||^2 / ||h_t||^2 (normalised: layers of any scale count alike)."""
    import torch

    terms = []
    for s, t in mapping.items():
        hs = student_h[s].float()
        ht = teacher_h[t].float()
        if str(s) in projections:
            hs = projections[str(s)](hs)
        terms.append(((hs - ht) ** 2).mean() / (ht**2).mean().clamp_min(1e-6))
    return torch.stack(terms).mean()
