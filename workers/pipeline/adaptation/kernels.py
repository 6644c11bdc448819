"""Gaussian kernel families whose bandwidths follow the data: σ²_α = α · mean pairwise squared distance (as DAN)."""

from collections.abc import Sequence

import torch
from torch import Tensor

ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)


def squared_distances(x: Tensor, y: Tensor | None = None) -> Tensor:
    """D_ij = ‖x_i − y_j‖² for x (n×d) and y (m×d), vectorised; y = None means x against itself (zero diagonal)."""
    other = x if y is None else y
    centre = torch.cat([x, other]).mean(0)  # distances ignore translation; centring limits cancellation
    a, b = x - centre, other - centre
    d = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * a @ b.T).clamp_min(0.0)
    if y is None:
        d = d.masked_fill(torch.eye(len(x), dtype=torch.bool, device=x.device), 0.0)
    return d


def mean_squared_distance(z: Tensor) -> Tensor:
    """Mean of ‖z_i − z_j‖² over all N² ordered pairs (diagonal included) in O(N·d): 2 · mean_i ‖z_i − z̄‖²."""
    return 2.0 * (z - z.mean(0)).pow(2).sum(1).mean()


def bandwidths(distances_sq: Tensor, alphas: Sequence[float] = ALPHAS) -> Tensor:
    """σ²_α = α · mean(distances_sq) for every α, detached from the graph (shape: len(alphas))."""
    mean = distances_sq.detach().mean().clamp_min(torch.finfo(distances_sq.dtype).tiny)
    return torch.as_tensor(alphas, dtype=distances_sq.dtype, device=distances_sq.device) * mean


def gaussian_sum(distances_sq: Tensor, sigma_sq: Tensor) -> Tensor:
    """k = Σ_α exp(−D / (2σ²_α)), elementwise over D (any shape)."""
    return torch.exp(-distances_sq.unsqueeze(-1) / (2.0 * sigma_sq)).sum(-1)


def multi_gaussian_kernel(x: Tensor, y: Tensor, alphas: Sequence[float] = ALPHAS) -> Tensor:
    """K_ij = Σ_α exp(−‖x_i − y_j‖² / (2σ²_α)), σ²_α = α · mean_ij ‖x_i − y_j‖² (n×m)."""
    d = squared_distances(x, None if y is x else y)
    return gaussian_sum(d, bandwidths(d, alphas))
