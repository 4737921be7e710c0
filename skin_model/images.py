"""The one image loader used by the audit, training, the CLI and the app.

Every input goes through :func:`load_image`, so every caller refuses the same bad
files with the same plain-language reason and receives the same upright 8-bit RGB
picture, whatever the file's mode, orientation or size.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

# Phones save HEIC by default (Pillow itself reads AVIF, not HEIF); the opener applies
# the container's rotation itself and clears the EXIF orientation, so nothing turns twice.
register_heif_opener()

# Refuse anything over this many pixels *before* decoding it: a 30000x30000 PNG
# compresses to a few KB but would need 2.7 GB of RAM once decoded.
MAX_PIXELS = 80_000_000
# Anything smaller than this on its shorter side carries no usable lesion detail.
MIN_SIDE = 32
# Huge but legitimate photos are downscaled to this longer side on load.
MAX_SIDE = 2048
# Files larger than this are refused unread (the app's upload limit is lower).
MAX_FILE_BYTES = 200 * 1024 * 1024


class ImageLoadError(ValueError):
    """A file that cannot be used as an image, with a reason a user can act on."""


@dataclass
class LoadedImage:
    """An upright RGB picture plus what was done to get it."""

    image: Image.Image
    original_size: tuple[int, int]
    original_mode: str
    original_format: str | None
    notes: list[str] = field(default_factory=list)
    # for a JPEG, the quality it was last saved at (estimated from its quantization table)
    jpeg_quality: int | None = None

    def to_array(self) -> np.ndarray:
        """uint8 array of shape (height, width, 3)."""
        return np.asarray(self.image, dtype=np.uint8)


def read_file_bytes(source: str | Path | bytes) -> bytes:
    """A file's bytes (bytes pass through), or :class:`ImageLoadError` saying why not:
    gone, a broken link, no permission, or over the size limit."""
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageLoadError(f"file is {size / 1e6:.0f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB limit")
        return path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"cannot read file: {exc.strerror or exc}") from exc


_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif")


def _unreadable_reason(data: bytes) -> str:
    """Why Pillow could not identify ``data``, naming common look-alikes."""
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "a damaged or unsupported HEIC/HEIF/AVIF file: export the picture as JPEG or PNG"
    for magic, kind in (
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a zip archive"),
        (b"<!DOCTYPE", "a web page"),
        (b"<html", "a web page"),
        (b"GIF8", "a damaged GIF"),
    ):
        if data[:16].lstrip().lower().startswith(magic.lower()):
            return f"not an image file this app can read (it looks like {kind})"
    return "not an image file this app can read"


def _to_8bit_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without losing the picture."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        notes.append(f"{mode} high bit-depth image rescaled to 8 bits")
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        notes.append(f"transparency ({img.mode}) flattened onto white")
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in {"CMYK", "YCbCr", "LAB", "HSV"}:
        notes.append(f"{img.mode} colour converted to RGB")
    return img.convert("RGB")


@functools.lru_cache(maxsize=1)
def _standard_luminance_tables() -> np.ndarray:
    """(100, 64): the luminance quantization table of the standard (IJG) encoder at
    quality 1-100, as Pillow writes and reads it."""
    tables = []
    for quality in range(1, 101):
        buffer = io.BytesIO()
        Image.new("L", (8, 8)).save(buffer, format="JPEG", quality=quality)
        tables.append(Image.open(buffer).quantization[0])
    return np.array(tables, dtype=np.float32)


def estimate_jpeg_quality(img: Image.Image) -> int | None:
    """The standard-encoder quality (1-100) whose luminance table is nearest to this
    JPEG's, or None for another format. The image collections here were saved at
    different qualities, which the model can pick up (``benchmarks/jpeg_shortcut.py``)."""
    tables = getattr(img, "quantization", None)
    if img.format != "JPEG" or not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    distance = np.abs(_standard_luminance_tables() - np.asarray(tables[0], np.float32)).sum(axis=1)
    return int(np.argmin(distance)) + 1


def load_image(source: str | Path | bytes, *, max_side: int | None = MAX_SIDE) -> LoadedImage:
    """Decode ``source`` (path or bytes) into an upright 8-bit RGB image.

    Raises :class:`ImageLoadError` with a user-facing reason for empty, non-image,
    truncated, corrupt, too small or decompression-bomb files. Animated and
    multi-page files use their first frame; EXIF orientation is applied; images
    larger than ``max_side`` are downscaled (never rejected).
    """
    data = read_file_bytes(source)
    if not data:
        raise ImageLoadError("the file is empty (0 bytes)")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageLoadError(_unreadable_reason(data)) from exc
        raise ImageLoadError(f"image is too large to decode safely ({exc})") from exc
    except Exception as exc:
        if "truncat" in str(exc).lower():
            raise ImageLoadError(f"the image data is truncated or corrupt ({exc})") from exc
        raise ImageLoadError(f"cannot read the image header: {exc}") from exc

    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageLoadError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"{MAX_PIXELS / 1e6:.0f} megapixel safety limit (possible decompression bomb)"
        )
    original_mode, original_format = img.mode, img.format
    jpeg_quality = estimate_jpeg_quality(img)
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"{img.n_frames} frames/pages: the first one was used")
        img.seek(0)
    try:
        if max_side and img.format == "JPEG" and max(width, height) > 2 * max_side:
            img.draft("RGB", (max_side, max_side))  # fast DCT-domain downscale
        img.load()
    except Exception as exc:
        raise ImageLoadError(f"the image data is truncated or corrupt ({exc})") from exc

    upright = img
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        orientation = 1
        notes.append("unreadable EXIF block ignored")
    if orientation not in (1, None):
        upright = ImageOps.exif_transpose(img)
        notes.append(f"rotated upright using its EXIF orientation ({orientation})")
    rgb = _to_8bit_rgb(upright, notes)

    if min(rgb.size) < MIN_SIDE:
        raise ImageLoadError(
            f"image is {rgb.size[0]}x{rgb.size[1]} pixels; at least {MIN_SIDE} pixels on the shorter side are needed"
        )
    if max_side and max(rgb.size) > max_side:
        rgb = rgb.copy()
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        notes.append(f"downscaled from {width}x{height} to {rgb.size[0]}x{rgb.size[1]}")
    return LoadedImage(rgb, (width, height), original_mode, original_format, notes, jpeg_quality)


# A zip of images is unpacked in memory, never to disk, with these limits.
MAX_ZIP_MEMBERS = 500
MAX_ZIP_TOTAL_BYTES = 500 * 1024 * 1024


def zip_members(data: bytes) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """The files inside a zip archive as (name, bytes), and the entries refused with
    a reason: absolute paths and ``..`` traversal, links, folders, hidden files, and
    anything past the member-count or total-size limits. Nothing touches the disk."""
    import posixpath
    import stat
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ImageLoadError(f"not a readable zip archive ({exc})") from exc
    accepted: list[tuple[str, bytes]] = []
    refused: list[tuple[str, str]] = []
    total = 0
    for info in archive.infolist():
        name = info.filename
        normalised = posixpath.normpath(name.replace("\\", "/"))
        if info.is_dir():
            continue
        if name.startswith(("/", "\\")) or normalised.startswith("..") or ":" in normalised.split("/")[0]:
            refused.append((name, "unsafe path (absolute or outside the archive)"))
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            refused.append((name, "symbolic link"))
            continue
        if any(part.startswith(".") or part == "__MACOSX" for part in normalised.split("/")):
            continue
        if len(accepted) >= MAX_ZIP_MEMBERS:
            refused.append((name, f"more than {MAX_ZIP_MEMBERS} files in the archive"))
            continue
        total += info.file_size
        if total > MAX_ZIP_TOTAL_BYTES:
            refused.append((name, f"archive unpacks to more than {MAX_ZIP_TOTAL_BYTES / 1e6:.0f} MB"))
            continue
        accepted.append((normalised, archive.read(info)))
    return accepted, refused
