"""The KD loss against hand-computed cases (3-token vocabulary), and the top-k cache's approximation."""

import math

import pytest

torch = pytest.importorskip("torch")

from harness.distill.loss import kd_loss, kl_full, kl_topk, teacher_topk  # noqa: E402

P = [0.5, 0.4, 0.1]  # the teacher's distribution at temperature T; the student is uniform (logits 0)
KL_FULL = 0.5 * math.log(1.5) + 0.4 * math.log(1.2) + 0.1 * math.log(0.3)  # 0.155265
KL_TOP1 = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))  # token 0 + one bucket: 0.058892


def teacher(T: float) -> torch.Tensor:
    # logits whose softmax at temperature T is P: z = T * log p
    return torch.tensor([[[T * math.log(p) for p in P]] * 2])  # [B=1, L=2, V=3]


def test_kl_full_matches_hand_computation():
    s = torch.zeros(1, 2, 3)
    for T in (1.0, 2.0):
        assert kl_full(s, teacher(T), T)[0, 0].item() == pytest.approx(KL_FULL, abs=1e-6)
    assert kl_full(teacher(1.0), teacher(1.0), 1.0).abs().max().item() < 1e-6  # identical: 0


def test_kd_loss_combines_kl_and_ce_with_t_squared():
    s = torch.zeros(1, 2, 3)
    labels = torch.tensor([[0, 2]])  # position 0 predicts token 2; uniform student: CE = ln 3
    out = kd_loss(s, labels, alpha=0.5, temperature=2.0, teacher_logits=teacher(2.0))
    assert out["ce"].item() == pytest.approx(math.log(3), abs=1e-6)
    assert out["kd"].item() == pytest.approx(KL_FULL, abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * 4 * KL_FULL + 0.5 * math.log(3), abs=1e-6)  # 0.859836
    ce_only = kd_loss(s, labels, alpha=0.0, temperature=2.0)  # the control needs no teacher
    assert ce_only["loss"].item() == pytest.approx(math.log(3)) and ce_only["kd"].item() == 0
    with pytest.raises(ValueError, match="needs the teacher"):
        kd_loss(s, labels, alpha=0.5, temperature=2.0)


def test_topk_with_rest_bucket_is_exact_at_full_k_and_a_lower_bound_below():
    s = torch.zeros(1, 2, 3)
    T = 2.0
    for k, want in ((3, KL_FULL), (2, KL_FULL), (1, KL_TOP1)):  # k=2: the rest is one token, still exact
        v, i, lse = teacher_topk(teacher(T), k, T)
        got = kl_topk(s, v, i, lse, T)[0, 0].item()
        assert got == pytest.approx(want, abs=1e-5), k
        assert got <= KL_FULL + 1e-6


def test_topk_loss_gradients_move_the_student_towards_the_teacher():
    torch.manual_seed(0)
    t = torch.randn(2, 5, 50) * 3
    s = torch.zeros(2, 5, 50, requires_grad=True)
    labels = torch.randint(0, 50, (2, 5))
    v, i, lse = teacher_topk(t, 8, 2.0)
    opt = torch.optim.SGD([s], lr=5.0)
    first = None
    for _ in range(30):
        out = kd_loss(s, labels, alpha=1.0, temperature=2.0, topk=(v, i, lse))
        first = first if first is not None else out["kd"].item()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["kd"].item() < 0.2 * first
    assert (
        kl_full(s.detach()[:, :-1], t[:, :-1], 2.0).mean().item()
        < kl_full(torch.zeros(2, 4, 50), t[:, :-1], 2.0).mean().item()
    )
