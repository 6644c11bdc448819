"""Domain adaptation building blocks: MMD/JMMD, DANN, CORAL losses, their kernels, λ ramp, bottleneck and a domain pair.

Plain PyTorch modules, one method per file, each with its formula in its docstring.
"""

from workers.pipeline.adaptation.bottleneck import make_bottleneck
from workers.pipeline.adaptation.coral import CoralLoss
from workers.pipeline.adaptation.dann import (
    DomainAdversarialLoss,
    DomainDiscriminator,
    GradientReversal,
    GradientReversalLayer,
)
from workers.pipeline.adaptation.kernels import ALPHAS, bandwidths, multi_gaussian_kernel
from workers.pipeline.adaptation.mmd import ESTIMATORS, JointMMDLoss, MMDLoss
from workers.pipeline.adaptation.schedule import ramp

__all__ = [
    "ALPHAS",
    "ESTIMATORS",
    "CoralLoss",
    "DomainAdversarialLoss",
    "DomainDiscriminator",
    "GradientReversal",
    "GradientReversalLayer",
    "JointMMDLoss",
    "MMDLoss",
    "bandwidths",
    "make_bottleneck",
    "multi_gaussian_kernel",
    "ramp",
]
