"""Predicted drops: every prior cites its source; the order of evidence (a fidelity pass's KL, the family on
this host, a prior); and, by simulation, the KL relation's 90 % interval holds about 90 % of new cells."""

import math
import random
from dataclasses import replace

import pytest

from harness.predict.quality import PRIORS, fit_kl_relation, predict_drop, prior
from harness.predict.schemes import parse_scheme
from tests.unit.predict.conftest import case, obs


def test_every_prior_names_its_evidence():
    for name, p in PRIORS.items():
        assert p.lo <= p.mid <= p.hi and p.source, name
    assert "Kurtic" in prior(parse_scheme("w8a8")).source and "1-3 %" in prior(parse_scheme("w8a8")).source
    g = prior(parse_scheme("gguf-q4_k_m"))
    assert "llama.cpp" in g.source and g.mid == pytest.approx(0.02, rel=0.01)
    assert prior(parse_scheme("gguf-q8_0")).mid < prior(parse_scheme("gguf-q2_k")).mid
    assert prior(parse_scheme("bf16"), student=True).hi == 1.0


def test_kl_relation_recovers_its_slope():
    rng = random.Random(3)
    pts = []
    for _ in range(40):
        k = math.exp(rng.uniform(-5, 1))
        pts.append((k, 0.3 * math.sqrt(k) + rng.gauss(0, 0.01), 0.01))
    rel = fit_kl_relation(pts)
    assert rel.slope == pytest.approx(0.3, abs=0.02) and rel.n == 40
    assert fit_kl_relation(pts[:2]) is None


@pytest.mark.parametrize(("n", "tau"), [(6, 0.03), (10, 0.0), (10, 0.08), (20, 0.03)])
def test_kl_intervals_hold_about_90_percent_of_new_measured_drops(n, tau):
    rng = random.Random(n * 100 + int(tau * 1000))
    hits, reps = 0, 1200

    def draw():
        k = math.exp(rng.uniform(math.log(0.005), math.log(2.5)))
        se = rng.uniform(0.01, 0.08)
        return k, 0.33 * math.sqrt(k) + rng.gauss(0, tau) + rng.gauss(0, se), se

    for _ in range(reps):
        rel = fit_kl_relation([draw() for _ in range(n)])
        k, d, se = draw()
        lo, hi = rel.predict(k, se).interval()
        hits += lo <= d <= hi
    assert 0.85 <= hits / reps <= 0.98


def test_the_order_of_evidence():
    ref = obs("ref", case("bf16"), parent=None)
    w4 = [obs(f"w4{i}", case("w4a16-rtn", kld=0.3), drop=0.1 + 0.02 * i) for i in range(3)]
    w8 = obs("w8", case("w8a8", kld=0.02), drop=0.01)
    have = [ref, *w4, w8]
    # a fidelity pass: the KL relation
    f = predict_drop(case("w4a16-gptq", kld=0.2), have)
    assert "sqrt(KL)" in f.basis and f.n == 4
    # no KL: the same family of this model, else its bits class, else a prior
    assert "w4a16-rtn cells" in predict_drop(case("w4a16-rtn-g32"), have).basis
    cls = predict_drop(case("gguf-q4_k_m"), have)
    assert "4-bit cells" in cls.basis and cls.value == pytest.approx(0.12)
    other_model = predict_drop(case("w4a16-gptq", model="llama"), have)
    assert other_model.source == "prior" and "Kurtic" in other_model.basis
    assert predict_drop(case("bf16"), have).value == 0.0
    # another host's cells are not this host's evidence
    assert predict_drop(replace(case("w4a16-rtn"), host_id="h2"), have).source == "prior"


def test_students_from_students_of_the_same_teacher():
    s = obs("s", case("bf16", distill="kd", keep_every=2), drop=0.2, parent="ref")
    f = predict_drop(case("bf16", distill="kd2", keep_every=2), [s])
    assert f.value == pytest.approx(0.2) and "students" in f.basis
    blind = predict_drop(case("bf16", distill="kd2", keep_every=2), [])
    assert blind.source == "prior" and blind.interval()[1] >= 0.9
