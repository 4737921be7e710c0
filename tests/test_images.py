"""The shared image loader: bad files get reasons, odd modes become upright RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from skin_model.images import MAX_PIXELS, MIN_SIDE, ImageLoadError, load_image

from .synthetic import jpeg_bytes, smooth_picture


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<html><body>not an image</body></html>", "not an image"),
        (b"%PDF-1.4\n%...", "not an image"),
        (jpeg_bytes(smooth_picture(1))[:300], "truncated"),
        (_png(Image.new("RGB", (8, 8))), f"at least {MIN_SIDE} pixels"),
    ],
)
def test_bad_inputs_have_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(ImageLoadError, match=reason):
        load_image(data)


def test_decompression_bomb_refused_before_decoding() -> None:
    side = int(MAX_PIXELS**0.5) + 100
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 2_000_000  # small file, huge picture
    with pytest.raises(ImageLoadError, match="megapixel"):
        load_image(buf.getvalue())


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "1", "I;16"])
def test_modes_become_rgb(mode: str) -> None:
    base = smooth_picture(3, size=48)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    loaded = load_image(buf.getvalue())
    assert loaded.image.mode == "RGB" and loaded.image.size == (48, 48)


def test_exif_rotation_is_applied() -> None:
    img = Image.new("RGB", (60, 40), (200, 50, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    loaded = load_image(buf.getvalue())
    assert loaded.image.size == (40, 60)
    assert any("EXIF" in note for note in loaded.notes)


def test_huge_image_is_downscaled_not_rejected() -> None:
    big = Image.new("RGB", (5000, 3000), (120, 80, 60))
    loaded = load_image(jpeg_bytes(big), max_side=1024)
    assert max(loaded.image.size) == 1024
    assert loaded.original_size == (5000, 3000)
