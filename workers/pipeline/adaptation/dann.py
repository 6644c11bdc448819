"""Domain-adversarial training (DANN, Ganin et al. 2016): gradient reversal and a domain discriminator."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GradientReversal(torch.autograd.Function):
    """R_λ(x) = x forward; ∂R_λ/∂x = −λ·I backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, lambd: float) -> Tensor:
        """Identity; remembers λ for the backward pass."""
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        """The upstream gradient times −λ (none for λ itself)."""
        return grad * -ctx.lambd, None


class GradientReversalLayer(nn.Module):
    """Gradient reversal as a layer; set `lambd` between steps (e.g. to `ramp(progress)`)."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = float(lambd)

    def forward(self, x: Tensor) -> Tensor:
        """x unchanged; its gradient is multiplied by −lambd."""
        return GradientReversal.apply(x, float(self.lambd))

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"


class DomainDiscriminator(nn.Module):
    """Linear → BatchNorm → ReLU, twice, then Linear → one logit per sample (as TLlib's): is it from the source?"""

    def __init__(self, in_features: int, hidden: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Domain logits, shape (N,): positive means source."""
        return self.net(x).squeeze(1)


class DomainAdversarialLoss(nn.Module):
    """L = ½ [ −1/n Σ_i log σ(D(R_λ(s_i))) − 1/m Σ_j log(1 − σ(D(R_λ(t_j)))) ], source label 1, target label 0.

    D is the discriminator, R_λ the gradient reversal: minimising L trains D to tell the domains apart while the
    reversed gradient trains the features to make them indistinguishable. `domain_accuracy` holds the last batch's
    ½ (source accuracy + target accuracy) of D, a float in [0, 1] (0.5 when the domains are aligned).
    """

    def __init__(self, discriminator: nn.Module, lambd: float = 1.0) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.grl = GradientReversalLayer(lambd)
        self.domain_accuracy: float | None = None

    def forward(self, s: Tensor, t: Tensor) -> Tensor:
        """The discriminator's loss on source features s (n×d) and target features t (m×d)."""
        if s.dim() != 2 or t.dim() != 2 or s.shape[1] != t.shape[1] or min(len(s), len(t)) < 1:
            raise ValueError(f"features must be n×d and m×d, got {tuple(s.shape)} and {tuple(t.shape)}")
        logits = self.discriminator(self.grl(torch.cat([s, t])))
        d_s, d_t = logits[: len(s)], logits[len(s):]
        loss = 0.5 * (F.binary_cross_entropy_with_logits(d_s, torch.ones_like(d_s))
                      + F.binary_cross_entropy_with_logits(d_t, torch.zeros_like(d_t)))
        with torch.no_grad():
            self.domain_accuracy = 0.5 * float((d_s > 0).float().mean() + (d_t <= 0).float().mean())
        return loss
