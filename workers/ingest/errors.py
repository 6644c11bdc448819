"""Errors an uploaded dataset can cause; their messages are shown to the user as they are."""


class IngestError(ValueError):
    """A problem with an uploaded dataset or import folder that the user can correct."""


class UnsafeArchive(IngestError):
    """The upload tries to reach outside its own folder, or holds links, devices or clashing names."""


class NotAnArchive(IngestError):
    """The upload is not a zip, tar or tar.gz archive, or it is damaged."""


class EmptyDataset(IngestError):
    """There is no file, or no valid image, to learn from."""


class LimitExceeded(IngestError):
    """The upload is bigger than a configured limit allows (size, members, ratio, pixels)."""


class InvalidManifest(IngestError):
    """`labels.csv` or a JSONL manifest cannot be read as path/label/split records."""
