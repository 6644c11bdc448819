"""Maximum mean discrepancy under a multi-bandwidth Gaussian kernel (DAN, 2015) and its joint form (JAN, 2017)."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from workers.pipeline.adaptation.kernels import (
    ALPHAS,
    bandwidths,
    gaussian_sum,
    mean_squared_distance,
    squared_distances,
)
from workers.pipeline.errors import PipelineError

ESTIMATORS = ("biased", "unbiased", "linear")


@dataclass(frozen=True)
class _Family:
    """A Gaussian family: σ²_α = α · mean pooled squared distance, or one fixed σ² = sigma² when `sigma` is set."""

    alphas: Sequence[float] = ALPHAS
    sigma: float | None = None

    def sigma_sq(self, distances_sq: Tensor) -> Tensor:
        """The family's bandwidths σ² for a pooled sample with these squared distances."""
        if self.sigma is None:
            return bandwidths(distances_sq, self.alphas)
        return torch.full((1,), float(self.sigma) ** 2, dtype=distances_sq.dtype, device=distances_sq.device)


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise PipelineError(f"unknown MMD estimator {estimator!r}; choose one of {list(ESTIMATORS)}")
    return estimator


def _check_pair(s: Tensor, t: Tensor, estimator: str, what: str = "features") -> None:
    if s.dim() != 2 or t.dim() != 2 or s.shape[1] != t.shape[1]:
        raise ValueError(f"source and target {what} must be n×d and m×d, got {tuple(s.shape)} and {tuple(t.shape)}")
    least = 1 if estimator == "biased" else 2
    if min(len(s), len(t)) < least:
        raise ValueError(f"the {estimator} MMD estimator needs at least {least} samples per domain")


def _mmd2(views: list[tuple[Tensor, Tensor, _Family]], estimator: str) -> Tensor:
    """MMD² under the product kernel k = Π_v k_v over views v = (source, target, family)."""
    n, m = len(views[0][0]), len(views[0][1])
    if estimator == "linear":
        even = 2 * (min(n, m) // 2)
        terms: list[Tensor | float] = [1.0, 1.0, 1.0, 1.0]  # k(x₁, x₂), k(y₁, y₂), k(x₁, y₂), k(x₂, y₁)
        for s, t, family in views:
            s, t = s[:even], t[:even]
            sigma_sq = family.sigma_sq(mean_squared_distance(torch.cat([s, t])))
            x1, x2, y1, y2 = s[0::2], s[1::2], t[0::2], t[1::2]
            pairs = ((x1, x2), (y1, y2), (x1, y2), (x2, y1))
            terms = [k * gaussian_sum((a - b).pow(2).sum(1), sigma_sq) for k, (a, b) in zip(terms, pairs, strict=True)]
        return (terms[0] + terms[1] - terms[2] - terms[3]).mean()
    kernel: Tensor | float = 1.0
    for s, t, family in views:
        d = squared_distances(torch.cat([s, t]))
        kernel = kernel * gaussian_sum(d, family.sigma_sq(d))
    kss, ktt, kst = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    if estimator == "biased":
        return kss.mean() + ktt.mean() - 2.0 * kst.mean()
    within_s = (kss.sum() - kss.diagonal().sum()) / (n * (n - 1))
    within_t = (ktt.sum() - ktt.diagonal().sum()) / (m * (m - 1))
    return within_s + within_t - 2.0 * kst.mean()


class MMDLoss(nn.Module):
    """Multi-kernel MMD² between source features s (n×d) and target features t (m×d), as in DAN.

    k(a, b) = Σ_α exp(−‖a − b‖² / (2σ²_α)), σ²_α = α · mean ‖z_i − z_j‖² over all pairs of the pooled
    sample z = s ∪ t (diagonal included; detached), α ∈ `alphas`.

    - biased:   MMD² = 1/n² Σ_ij k(s_i, s_j) + 1/m² Σ_ij k(t_i, t_j) − 2/(nm) Σ_ij k(s_i, t_j);
    - unbiased: MMD² = 1/(n(n−1)) Σ_{i≠j} k(s_i, s_j) + 1/(m(m−1)) Σ_{i≠j} k(t_i, t_j) − 2/(nm) Σ_ij k(s_i, t_j);
    - linear:   MMD² = 2/L Σ_{i<L/2} h(i), L = the largest even number ≤ min(n, m) (both samples cut to L),
                h(i) = k(x₁, x₂) + k(y₁, y₂) − k(x₁, y₂) − k(x₂, y₁) with x₁ = s_{2i}, x₂ = s_{2i+1},
                y₁ = t_{2i}, y₂ = t_{2i+1}; bandwidths from the pooled cut samples (Gretton et al. 2012).
    """

    def __init__(self, alphas: Sequence[float] = ALPHAS, estimator: str = "unbiased") -> None:
        super().__init__()
        self.alphas = tuple(float(a) for a in alphas)
        self.estimator = _check_estimator(estimator)

    def forward(self, s: Tensor, t: Tensor) -> Tensor:
        """MMD² between the source and target samples (a scalar)."""
        _check_pair(s, t, self.estimator)
        return _mmd2([(s, t, _Family(self.alphas))], self.estimator)

    def extra_repr(self) -> str:
        return f"alphas={self.alphas}, estimator={self.estimator!r}"


class JointMMDLoss(nn.Module):
    """Joint MMD² (JMMD, Long et al. 2017) over features and softmax outputs, with the product kernel

    k((f, p), (f', p')) = k_f(f, f') · k_p(p, p'),
    k_f(f, f') = Σ_α exp(−‖f − f'‖² / (2σ²_α)), σ²_α = α · mean pooled ‖f_i − f_j‖² (detached), α ∈ `alphas`;
    k_p(p, p') = exp(−‖p − p'‖² / (2 · prob_sigma²)) (TLlib's JAN uses prob_sigma = 0.92), or, with
    prob_sigma = None, the same data-driven family as k_f computed on the probabilities.

    The estimators are MMDLoss's (biased, unbiased, linear) with k in place of the feature kernel.
    """

    def __init__(self, alphas: Sequence[float] = ALPHAS, prob_sigma: float | None = 0.92,
                 estimator: str = "unbiased") -> None:
        super().__init__()
        self.alphas = tuple(float(a) for a in alphas)
        self.prob_sigma = prob_sigma
        self.estimator = _check_estimator(estimator)

    def forward(self, s_feat: Tensor, t_feat: Tensor, s_prob: Tensor, t_prob: Tensor) -> Tensor:
        """JMMD² between (features, probabilities) of the source and of the target (a scalar)."""
        _check_pair(s_feat, t_feat, self.estimator)
        _check_pair(s_prob, t_prob, self.estimator, "probabilities")
        if len(s_feat) != len(s_prob) or len(t_feat) != len(t_prob):
            raise ValueError("features and probabilities must have one row per sample")
        views = [(s_feat, t_feat, _Family(self.alphas)),
                 (s_prob, t_prob, _Family(self.alphas, self.prob_sigma))]
        return _mmd2(views, self.estimator)

    def extra_repr(self) -> str:
        return f"alphas={self.alphas}, prob_sigma={self.prob_sigma}, estimator={self.estimator!r}"
