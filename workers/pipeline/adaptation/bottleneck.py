"""The bottleneck between backbone and classifier that adaptation losses are applied to (DAN, DANN, JAN)."""

from torch import nn


def make_bottleneck(in_features: int, dim: int, dropout: float = 0.5) -> nn.Sequential:
    """Linear(in_features, dim) → BatchNorm1d(dim) → ReLU → Dropout(dropout)."""
    return nn.Sequential(nn.Linear(in_features, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Dropout(dropout))
