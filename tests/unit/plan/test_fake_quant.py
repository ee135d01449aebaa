"""The sensitivity scan's round-to-nearest grid is compressed-tensors' grid (symmetric absmax / 7.5 for
int4, min-max with a zero point when asymmetric), so a layer's measured damage is the damage the
served cell would have."""

import pytest

torch = pytest.importorskip("torch")

from harness.plan.sensitivity_worker import fake_quant  # noqa: E402


def test_symmetric_int4_grid():
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    q = fake_quant(w, 4, 32, True)
    g = w.reshape(8, 2, 32)
    scale = g.abs().amax(-1, keepdim=True) / 7.5
    levels = (q.reshape(8, 2, 32) / scale).round()
    assert torch.allclose(q.reshape(8, 2, 32), levels * scale, atol=1e-6)
    assert levels.min() >= -8 and levels.max() <= 7
    assert (q - w).abs().max() <= scale.max() / 2 + 1e-6
    assert (fake_quant(w, 8, 32, True) - w).abs().mean() < (q - w).abs().mean() / 8  # 8 bits: far closer


def test_asymmetric_and_channel():
    w = torch.rand(4, 16) + 1.0  # all positive: asymmetric uses the range, not +-absmax
    qa = fake_quant(w, 4, "channel", False)
    qs = fake_quant(w, 4, "channel", True)
    assert (qa - w).abs().mean() < (qs - w).abs().mean()


def test_matches_compressed_tensors_when_available():
    ct = pytest.importorskip("compressed_tensors.quantization.lifecycle.forward")
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.utils import calculate_qparams

    torch.manual_seed(1)
    w = torch.randn(16, 128)
    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=64)
    g = w.reshape(16, 2, 64)
    scale, zp = calculate_qparams(g.amin(-1), g.amax(-1), args)
    ref = ct.fake_quantize(w, scale, zp, args)
    assert torch.allclose(fake_quant(w, 4, 64, True), ref, atol=1e-5)
