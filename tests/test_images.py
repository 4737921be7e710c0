"""The shared image loader: bad files get reasons, odd modes become upright RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image

from skin_model.images import MAX_PIXELS, MIN_SIDE, ImageLoadError, load_image
from skin_model.pipeline import to_model_input

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


def test_paths_that_cannot_be_read_have_reasons(tmp_path) -> None:
    """A folder, a vanished file and a broken link: the file system's reason, never an
    OSError (a folder passes the size check and used to fail only when read)."""
    (tmp_path / "link.jpg").symlink_to(tmp_path / "gone.jpg")
    for path in (tmp_path, tmp_path / "gone.jpg", tmp_path / "link.jpg"):
        with pytest.raises(ImageLoadError, match="cannot read file"):
            load_image(path)


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


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.txt", "hello")
    return buf.getvalue()


BAD_INPUTS = {
    "zero-byte": (b"", "empty"),
    "text renamed .jpg": (b"just some text\n" * 10, "not an image"),
    "html renamed .jpg": (b"<!DOCTYPE html><html></html>", "web page"),
    "pdf renamed .jpg": (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "PDF"),
    "zip renamed .jpg": (_zip_bytes(), "zip"),
    "truncated jpeg": (jpeg_bytes(smooth_picture(4, 200))[:2000], "truncated"),
    "truncated png": (_png(smooth_picture(5, 200))[:500], "truncated|corrupt|cannot read"),
    "corrupt jpeg header": (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not an image|corrupt|cannot read"),
    "broken heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "damaged .*HEIC"),
    "tiny 8x8": (_png(Image.new("RGB", (8, 8))), "at least"),
    "extreme aspect 4000x16": (_png(Image.new("RGB", (4000, 16))), "at least"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_catalogue_of_bad_inputs(name: str) -> None:
    data, reason = BAD_INPUTS[name]
    with pytest.raises(ImageLoadError, match=f"(?i){reason}"):
        load_image(data)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(data)
    assert loaded.image.getpixel((5, 5))[0] > 200 and any("frames" in n for n in loaded.notes)


def test_multipage_tiff_uses_first_page() -> None:
    pages = [Image.new("RGB", (40, 40), c) for c in ((0, 0, 255), (255, 255, 0))]
    loaded = load_image(_save(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert loaded.image.getpixel((5, 5))[2] > 200


def test_palette_with_transparency_and_la_flatten_onto_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    assert load_image(_png(rgba)).image.getpixel((1, 1)) == (255, 255, 255)
    p = Image.new("P", (40, 40), 0)
    p.info["transparency"] = 0
    assert load_image(_save(p, "PNG", transparency=0)).image.getpixel((1, 1)) == (255, 255, 255)


def test_extreme_but_usable_aspect_ratio_loads() -> None:
    loaded = load_image(_png(Image.new("RGB", (3000, 40), (10, 20, 30))))
    assert loaded.image.size == (2048, 27)  # downscaled to the longest-side limit, not rejected


def test_webp_and_bmp_load() -> None:
    base = smooth_picture(6, 64)
    for fmt in ("WEBP", "BMP"):
        assert load_image(_save(base, fmt)).image.size == (64, 64)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_load_upright_once(fmt: str) -> None:
    """HEIC (the iPhone default) and AVIF load, turned upright exactly once: a green
    corner at the top left of a landscape picture stored with EXIF orientation 6 (turn
    90° clockwise to view) ends up at the top right of a portrait one, as for a JPEG."""
    picture = Image.new("RGB", (200, 120), (200, 30, 40))
    picture.paste((10, 200, 10), (0, 0, 50, 40))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    for data in (_save(picture, fmt, exif=exif.tobytes(), quality=95), _save(picture, "JPEG", exif=exif.tobytes())):
        loaded = load_image(data)
        assert loaded.image.size == (120, 200)
        assert loaded.image.getpixel((115, 5))[1] > 180 and loaded.image.getpixel((5, 5))[0] > 180
    assert load_image(_save(picture, fmt, quality=95)).original_format == fmt


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    try:
        loaded = load_image(data)
    except ImageLoadError:
        return
    assert to_model_input(loaded.image, 48).shape == (48, 48, 3)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 400),
    st.integers(1, 400),
    st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "CMYK", "1", "I;16", "I", "F"]),
    st.sampled_from(["PNG", "TIFF", "JPEG", "BMP", "WEBP"]),
)
def test_random_sizes_and_modes_give_model_input_or_our_error(w: int, h: int, mode: str, fmt: str) -> None:
    img = Image.new(mode, (w, h))
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode: nothing to load
    try:
        loaded = load_image(buf.getvalue())
    except ImageLoadError as exc:
        assert min(w, h) < MIN_SIDE, exc
        return
    assert loaded.image.mode == "RGB"
    assert to_model_input(loaded.image, 64).shape == (64, 64, 3)


def test_zip_batch_is_unpacked_safely_in_memory(tmp_path) -> None:
    import zipfile

    from skin_model.images import zip_members

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.jpg", jpeg_bytes(smooth_picture(1)))
        z.writestr("sub dir/b é.png", _png(smooth_picture(2)))
        z.writestr("../evil.jpg", b"x")
        z.writestr("/etc/passwd.jpg", b"x")
        z.writestr("sub/../../also-evil.jpg", b"x")
        z.writestr("__MACOSX/._a.jpg", b"x")
        z.writestr("folder/", b"")
    accepted, refused = zip_members(buf.getvalue())
    assert [name for name, _ in accepted] == ["a.jpg", "sub dir/b é.png"]
    assert {name for name, _ in refused} == {"../evil.jpg", "/etc/passwd.jpg", "sub/../../also-evil.jpg"}
    assert all(load_image(data).image.mode == "RGB" for _, data in accepted)
    assert not list(tmp_path.iterdir())  # nothing written anywhere
    with pytest.raises(ImageLoadError, match="zip"):
        zip_members(b"PK\x03\x04 broken")


@pytest.mark.parametrize("quality", [30, 60, 75, 90, 95])
def test_jpeg_quality_is_read_from_the_file(quality: int) -> None:
    loaded = load_image(jpeg_bytes(smooth_picture(3, 64), quality=quality))
    assert loaded.jpeg_quality == quality
    assert load_image(_png(smooth_picture(3, 64))).jpeg_quality is None  # no compression to read


def test_jpeg_quality_of_another_encoders_table_is_the_nearest_standard_one() -> None:
    """A table the standard encoder never writes (each entry of the quality-80 one plus 1)
    still gets a quality, the nearest."""
    from skin_model.images import estimate_jpeg_quality

    img = Image.open(io.BytesIO(jpeg_bytes(smooth_picture(3, 64), quality=80)))
    table = [v + 1 for v in img.quantization[0]]
    buf = io.BytesIO()
    smooth_picture(3, 64).save(buf, format="JPEG", qtables=[table, img.quantization[1]])
    assert abs(estimate_jpeg_quality(Image.open(buf)) - 80) <= 3
