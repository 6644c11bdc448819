"""How much an upload may hold before ingestion refuses it."""

from dataclasses import dataclass

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Limits:
    """Bounds on an upload and its images; every check in `workers.ingest` reads them from here."""

    max_archive_bytes: int = 2 * GiB
    max_members: int = 200_000
    max_total_uncompressed: int = 8 * GiB
    max_member_bytes: int = 64 * MiB
    max_compression_ratio: float = 200
    max_image_pixels: int = 40_000_000
    min_images_per_class_warning: int = 5
