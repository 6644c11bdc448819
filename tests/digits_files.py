"""Real digit images written as files in many formats and modes, as a user would upload them."""

import io

from PIL import Image

from workers.pipeline.datasets import load_raw

FORMATS = [("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("BMP", "RGB"), ("GIF", "P"), ("TIFF", "I;16"),
           ("WEBP", "RGB"), ("PNG", "LA")]


def encode(image: Image.Image, fmt: str, mode: str) -> bytes:
    """`image` (8-bit grayscale) converted to `mode` and encoded as `fmt`."""
    if mode == "I;16":
        converted = Image.frombytes("I;16", image.size, bytes(b for v in image.tobytes() for b in (v, v)))
    elif mode == "JPEG-big":
        converted = image.convert("RGB")
    else:
        converted = image.convert(mode)
    buf = io.BytesIO()
    converted.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def digit_files(indices: list[int]) -> list[tuple[str, bytes, int]]:
    """(filename, bytes, true label) for the digits at `indices`, cycling through formats and modes."""
    raw = load_raw("digits")
    out = []
    for n, i in enumerate(indices):
        fmt, mode = FORMATS[n % len(FORMATS)]
        out.append((f"digit{i}.{fmt.lower()}", encode(raw.images[i], fmt, mode), raw.labels[i]))
    return out
