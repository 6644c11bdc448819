"""Adaptation losses equal their formulas (checked against float64 references written from the definitions)."""

import ast
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workers.pipeline.adaptation import (
    ALPHAS,
    ESTIMATORS,
    CoralLoss,
    DomainAdversarialLoss,
    DomainDiscriminator,
    GradientReversalLayer,
    JointMMDLoss,
    MMDLoss,
    bandwidths,
    make_bottleneck,
    multi_gaussian_kernel,
    ramp,
)
from workers.pipeline.errors import PipelineError

ROOT = Path(__file__).resolve().parents[2]


def sample(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """n standard normal rows in float64, every coordinate shifted by `shift`."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


# ---- references, from the definitions, with plain loops ----

def ref_sq(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True)))


def ref_sigma_sq(z: np.ndarray, alphas) -> list[float]:
    """σ²_α = α · mean over all N² ordered pairs of the pooled sample of ‖z_i − z_j‖²."""
    mean = sum(ref_sq(a, b) for a in z for b in z) / len(z) ** 2
    return [alpha * mean for alpha in alphas]


def ref_k(a, b, sigma_sqs) -> float:
    return sum(math.exp(-ref_sq(a, b) / (2 * s2)) for s2 in sigma_sqs)


def ref_mmd(views, estimator: str) -> float:
    """MMD² of the product kernel over views [(source, target, sigma² list or None for α-family)]."""
    n, m = len(views[0][0]), len(views[0][1])
    if estimator == "linear":
        n = m = 2 * (min(n, m) // 2)
    views = [(s[:n], t[:m], fixed) for s, t, fixed in views]
    sigmas = [fixed if fixed else ref_sigma_sq(np.concatenate([s, t]), ALPHAS) for s, t, fixed in views]

    def k(i_side, i, j_side, j):
        out = 1.0
        for (s, t, _), sig in zip(views, sigmas, strict=True):
            a = (s if i_side == "s" else t)[i]
            b = (s if j_side == "s" else t)[j]
            out *= ref_k(a, b, sig)
        return out

    if estimator == "linear":
        hs = [k("s", 2 * i, "s", 2 * i + 1) + k("t", 2 * i, "t", 2 * i + 1)
              - k("s", 2 * i, "t", 2 * i + 1) - k("s", 2 * i + 1, "t", 2 * i) for i in range(n // 2)]
        return sum(hs) / len(hs)
    cross = sum(k("s", i, "t", j) for i in range(n) for j in range(m)) / (n * m)
    if estimator == "biased":
        ss = sum(k("s", i, "s", j) for i in range(n) for j in range(n)) / n**2
        tt = sum(k("t", i, "t", j) for i in range(m) for j in range(m)) / m**2
    else:
        ss = sum(k("s", i, "s", j) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        tt = sum(k("t", i, "t", j) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return ss + tt - 2 * cross


# ---- kernels ----

def test_multi_gaussian_kernel_matches_the_definition():
    """K_ij = Σ_α exp(−‖x_i − y_j‖² / (2σ²_α)) with σ²_α = α · mean of the x–y squared distances."""
    x, y = sample(6, 4, 1), sample(5, 4, 2, shift=0.7)
    xs, ys = x.numpy(), y.numpy()
    mean = sum(ref_sq(a, b) for a in xs for b in ys) / (len(xs) * len(ys))
    expected = [[ref_k(a, b, [alpha * mean for alpha in ALPHAS]) for b in ys] for a in xs]
    assert torch.allclose(multi_gaussian_kernel(x, y), torch.tensor(expected, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(multi_gaussian_kernel(x, x).diagonal(), torch.full((6,), float(len(ALPHAS)),
                                                                            dtype=torch.float64))


def test_bandwidths_are_alpha_times_the_mean_and_carry_no_gradient():
    """σ²_α = α · mean(D), detached."""
    d = torch.tensor([[0.0, 2.0], [4.0, 6.0]], requires_grad=True)
    sigma_sq = bandwidths(d, (0.5, 1.0, 2.0))
    assert sigma_sq.tolist() == [1.5, 3.0, 6.0]
    assert not sigma_sq.requires_grad


# ---- MMD ----

@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_mmd_equals_its_definition(estimator):
    """Every estimator equals a loop-by-loop float64 implementation of its formula (n = 7, m = 9, d = 5)."""
    s, t = sample(7, 5, 3), sample(9, 5, 4, shift=0.5)
    expected = ref_mmd([(s.numpy(), t.numpy(), None)], estimator)
    assert MMDLoss(estimator=estimator)(s, t).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("estimator", "n", "tolerance"), [("biased", 500, 0.02), ("unbiased", 500, 0.01),
                                                           ("linear", 40000, 0.03)])
def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_mean_shift(estimator, n, tolerance):
    """Two samples of N(0, I) give ≈ 0; shifting the target's mean by 0.5, 1, 2 gives strictly more."""
    loss = MMDLoss(estimator=estimator)
    values = [loss(sample(n, 5, 10), sample(n, 5, 11, shift=shift)).item() for shift in (0.0, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < tolerance
    assert all(a < b for a, b in itertools.pairwise(values)), values
    assert values[1] > 5 * tolerance


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_mmd_gradients_reach_source_and_target(estimator):
    """Minimising MMD moves both samples: their gradients are finite and non-zero."""
    s, t = sample(8, 5, 5).requires_grad_(), sample(8, 5, 6, shift=1.0).requires_grad_()
    MMDLoss(estimator=estimator)(s, t).backward()
    for grad in (s.grad, t.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_mmd_refuses_unknown_estimators_and_too_few_samples():
    """A misspelt estimator is a user error; an unbiased estimate needs two samples per domain."""
    with pytest.raises(PipelineError, match="unknown MMD estimator"):
        MMDLoss(estimator="quadratic")
    with pytest.raises(ValueError, match="at least 2"):
        MMDLoss(estimator="unbiased")(sample(1, 3, 0), sample(4, 3, 1))
    with pytest.raises(ValueError, match="n×d and m×d"):
        MMDLoss()(sample(4, 3, 0), sample(4, 2, 1))


# ---- JMMD ----

@pytest.mark.parametrize(("estimator", "prob_sigma"), [(e, 0.92) for e in ESTIMATORS] + [("unbiased", None)])
def test_joint_mmd_equals_its_definition(estimator, prob_sigma):
    """JMMD with k_f · k_p equals the float64 reference, for a fixed and for a data-driven probability kernel."""
    s_feat, t_feat = sample(7, 5, 7), sample(9, 5, 8, shift=0.3)
    s_prob, t_prob = sample(7, 3, 9).softmax(1), (sample(9, 3, 10) + 0.5).softmax(1)
    fixed = [prob_sigma**2] if prob_sigma is not None else None
    expected = ref_mmd([(s_feat.numpy(), t_feat.numpy(), None), (s_prob.numpy(), t_prob.numpy(), fixed)], estimator)
    value = JointMMDLoss(prob_sigma=prob_sigma, estimator=estimator)(s_feat, t_feat, s_prob, t_prob)
    assert value.item() == pytest.approx(expected, abs=1e-6)


# ---- DANN ----

def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward():
    """y = x; ∂L/∂x = −λ · ∂L/∂y exactly, for whatever λ is set to."""
    layer = GradientReversalLayer(0.3)
    for lambd in (0.3, 2.0, 0.0):
        layer.lambd = lambd
        x = torch.randn(4, 6, requires_grad=True)
        upstream = torch.randn(4, 6)
        y = layer(x)
        assert torch.equal(y, x)
        y.backward(upstream)
        assert torch.equal(x.grad, upstream * -lambd)


def test_domain_adversarial_loss_reverses_only_the_features_gradient():
    """L = ½(BCE(D(s), 1) + BCE(D(t), 0)); D gets L's gradient, the features get −λ times it."""
    torch.manual_seed(0)
    lambd = 0.7
    disc = DomainDiscriminator(10, hidden=32)
    adversarial = DomainAdversarialLoss(disc, lambd=lambd)
    s, t = torch.randn(8, 10, requires_grad=True), (torch.randn(6, 10) + 0.5).requires_grad_()
    loss = adversarial(s, t)
    loss.backward()
    assert torch.isfinite(loss)
    disc_grads = [p.grad.clone() for p in disc.parameters()]

    disc.zero_grad()
    s2, t2 = s.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    logits = disc(torch.cat([s2, t2]))
    d_s, d_t = logits[:8], logits[8:]
    own = 0.5 * (-F.logsigmoid(d_s).mean() - F.logsigmoid(-d_t).mean())
    own.backward()

    assert loss.item() == pytest.approx(own.item(), abs=1e-6)
    assert torch.allclose(s.grad, -lambd * s2.grad, atol=1e-7) and s2.grad.abs().sum() > 0
    assert torch.allclose(t.grad, -lambd * t2.grad, atol=1e-7) and t2.grad.abs().sum() > 0
    # atol 1e-6 against gradients of 0.02-0.15: the biases of the Linear layers before BatchNorm have a gradient that
    # is zero in exact arithmetic, so each computation leaves its own rounding noise there (~1e-8).
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(disc_grads, disc.parameters(), strict=True))
    accuracy = 0.5 * ((d_s > 0).float().mean() + (d_t <= 0).float().mean()).item()
    assert adversarial.domain_accuracy == pytest.approx(accuracy)


# ---- CORAL ----

def test_coral_equals_its_formula_with_numpy_covariances():
    """L = ‖C_s − C_t‖²_F / (4d²) with numpy.cov's unbiased covariances as the reference."""
    s, t = sample(30, 6, 20), sample(20, 6, 21) * 1.5 + 0.2
    cs, ct = np.cov(s.numpy(), rowvar=False), np.cov(t.numpy(), rowvar=False)
    expected = float(((cs - ct) ** 2).sum() / (4 * 6**2))
    assert CoralLoss()(s, t).item() == pytest.approx(expected, abs=1e-12)


def test_coral_is_zero_for_identical_features_and_blind_to_the_mean():
    """Identical samples give 0; CORAL only sees covariances, so a mean shift also gives ≈ 0."""
    x = sample(25, 4, 22).requires_grad_()
    assert CoralLoss()(x, x).item() == 0.0
    assert CoralLoss()(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-12)
    CoralLoss()(x, sample(25, 4, 23) * 2).backward()
    assert x.grad.abs().sum() > 0


# ---- ramp and bottleneck ----

def test_ramp_rises_from_zero_to_almost_one():
    """λ(0) = 0, λ(1) ≈ 0.9999, strictly increasing between; progress outside [0, 1] is clamped."""
    assert ramp(0.0) == 0.0
    assert round(ramp(1.0), 4) == 0.9999
    values = [ramp(p / 20) for p in range(21)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert ramp(1.5) == ramp(1.0) and ramp(-0.2) == 0.0


def test_bottleneck_is_linear_batchnorm_relu_dropout():
    """make_bottleneck(16, 8) maps N×16 to non-negative N×8 through Linear, BatchNorm1d, ReLU, Dropout."""
    block = make_bottleneck(16, 8, dropout=0.25)
    assert [type(m).__name__ for m in block] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]
    assert block[3].p == 0.25
    out = block(torch.randn(5, 16))
    assert out.shape == (5, 8) and (out >= 0).all()


def test_adaptation_imports_no_web_queue_or_database_code():
    """Every adaptation module imports only the standard library, numeric/image libraries and the pipeline."""
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy", "PIL", "sklearn", "mlxtend"}
    modules = sorted((ROOT / "workers" / "pipeline" / "adaptation").glob("*.py"))
    offenders = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                if name.split(".")[0] not in allowed and name.split(".")[:2] != ["workers", "pipeline"]:
                    offenders.append(f"{path.name}: {name}")
    assert len(modules) >= 8
    assert offenders == []
