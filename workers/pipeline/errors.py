"""Errors a user can cause and fix; their messages are shown to the user as they are."""


class PipelineError(ValueError):
    """A problem with the job's inputs or settings that the user can correct."""


class UnknownArch(PipelineError):
    """The backbone architecture is not a torchvision classification model."""


class WeightsUnavailable(PipelineError):
    """Pretrained weights were asked for but cannot be found or loaded."""


class TrainingDiverged(PipelineError):
    """The loss stopped being a finite number."""


class InvalidImage(PipelineError):
    """An input file could not be decoded as an image."""
