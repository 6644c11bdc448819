"""Deep CORAL (Sun & Saenko 2016): align the second-order statistics of source and target features."""

from torch import Tensor, nn


def covariance(x: Tensor) -> Tensor:
    """Unbiased covariance C = (XᵀX − (1ᵀX)ᵀ(1ᵀX)/n)/(n−1) of the rows of X (n×d), computed on centred X."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / (len(x) - 1)


class CoralLoss(nn.Module):
    """L = ‖C_s − C_t‖²_F / (4d²), C = (XᵀX − (1ᵀX)ᵀ(1ᵀX)/n)/(n−1) for source (n×d) and target (m×d) features."""

    def forward(self, s: Tensor, t: Tensor) -> Tensor:
        """The CORAL loss between source features s and target features t (a scalar)."""
        if s.dim() != 2 or t.dim() != 2 or s.shape[1] != t.shape[1]:
            raise ValueError(f"features must be n×d and m×d, got {tuple(s.shape)} and {tuple(t.shape)}")
        if min(len(s), len(t)) < 2:
            raise ValueError("CORAL needs at least 2 samples per domain")
        d = s.shape[1]
        return (covariance(s) - covariance(t)).pow(2).sum() / (4.0 * d * d)
