"""Generated pictures that are not lesions, the negative class of the lesion detector
(outlier exposure, Hendrycks et al. 2019): fractal colour fields, scattered shapes, lines
of random letters, stripes, colour mosaics, and sparse drawings on a light background
(documents, diagrams and plots are the commonest wrong upload). Drawn from a seed, so a
fit is repeatable on any machine, and none of them is a photograph: the benchmark of
real non-lesion photos (``benchmarks/non_lesion.py``) measures what the detector does
with pictures of kinds it never saw."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in rng.integers(0, 256, 3))
    return red, green, blue


def fractal_field(rng: np.random.Generator, size: int) -> Image.Image:
    """Coloured noise summed over five octaves: clouds, stains, textures."""
    total = np.zeros((size, size, 3))
    for octave in range(1, 6):
        cells = 2**octave
        grid = (rng.uniform(0, 1, (cells + 1, cells + 1, 3)) * 255).astype(np.uint8)
        layer = np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC), float)
        total += layer / 2**octave
    total = (total - total.min()) / (np.ptp(total) + 1e-6)
    return Image.fromarray((total * 255).astype(np.uint8))


def scattered_shapes(rng: np.random.Generator, size: int) -> Image.Image:
    """Rectangles, ellipses, lines and triangles of random colours on a random colour."""
    picture = Image.new("RGB", (size, size), _colour(rng))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(3, 25))):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(5, size // 2, 2))
        box = (x0, y0, x0 + w, y0 + h)
        kind = int(rng.integers(0, 4))
        if kind == 0:
            draw.rectangle(box, fill=_colour(rng))
        elif kind == 1:
            draw.ellipse(box, fill=_colour(rng))
        elif kind == 2:
            draw.line(box, fill=_colour(rng), width=int(rng.integers(1, 8)))
        else:
            draw.polygon([tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(3)], fill=_colour(rng))
    return picture


def letters(rng: np.random.Generator, size: int) -> Image.Image:
    """Lines of random letters in one ink on one paper colour."""
    picture = Image.new("RGB", (size, size), _colour(rng))
    draw = ImageDraw.Draw(picture)
    ink = _colour(rng)
    for row in range(int(rng.integers(3, 20))):
        word = "".join(chr(int(c)) for c in rng.integers(65, 123, int(rng.integers(10, 40))))
        draw.text((int(rng.integers(0, 30)), int(row * size / 20)), word, fill=ink)
    return picture


def stripes(rng: np.random.Generator, size: int) -> Image.Image:
    """A sine grating between two colours, at a random frequency and angle."""
    frequency, angle = rng.uniform(0.02, 0.3), rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:size, :size]
    wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * frequency * 2 * np.pi)
    low, high = np.array(_colour(rng)), np.array(_colour(rng))
    return Image.fromarray((low + (high - low) * (wave[..., None] + 1) / 2).astype(np.uint8))


def mosaic(rng: np.random.Generator, size: int) -> Image.Image:
    """Flat colour cells around random points (a Voronoi mosaic)."""
    cells = int(rng.integers(3, 30))
    points, colours = rng.integers(0, size, (cells, 2)), rng.integers(0, 256, (cells, 3))
    yy, xx = np.mgrid[:size, :size]
    nearest = np.argmin((xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2, axis=-1)
    return Image.fromarray(colours[nearest].astype(np.uint8))


def sparse_drawing(rng: np.random.Generator, size: int) -> Image.Image:
    """Thin lines, dots and a few words on a near-white background."""
    paper = tuple(int(v) for v in rng.integers(225, 256, 3))
    picture = Image.new("RGB", (size, size), paper)
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(1, 5))):
        xs = np.sort(rng.integers(10, size - 10, 12))
        ys = np.clip(np.cumsum(rng.normal(0, size / 15, 12)) + size / 2, 5, size - 5)
        draw.line([(int(x), int(y)) for x, y in zip(xs, ys, strict=True)], fill=_colour(rng), width=2)
    for _ in range(int(rng.integers(0, 60))):
        x, y = (int(v) for v in rng.integers(5, size - 5, 2))
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=_colour(rng))
    for row in range(int(rng.integers(0, 4))):
        draw.text((10, 8 + 14 * row), "".join(chr(int(c)) for c in rng.integers(48, 123, 20)), fill=(20, 20, 20))
    return picture


KINDS = (fractal_field, scattered_shapes, letters, stripes, mosaic, sparse_drawing)


def outlier_pictures(count: int, size: int, seed: int = 12345) -> list[Image.Image]:
    """``count`` generated non-lesion pictures, the kinds in turn; about a third blurred."""
    rng = np.random.default_rng(seed)
    pictures = []
    for k in range(count):
        picture = KINDS[k % len(KINDS)](rng, size)
        if rng.uniform() < 0.3:
            picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(1, 6))))
        pictures.append(picture)
    return pictures
