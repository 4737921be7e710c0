"""Pictures that are not dermoscopic lesions, for measuring what the reliability check
refuses. Everything comes from installed packages or is drawn here: no download, no
picture of the data set.

- photographs shipped inside scikit-image, scikit-learn and matplotlib (people, animals,
  objects, text, microscopy, astronomy, a retina), whole and as crops (a user who uploads
  part of a photo);
- faces from scikit-image's Labeled Faces in the Wild subset (small greyscale crops);
- charts and maps drawn with matplotlib; pages of text, application screenshots and
  skin-toned cartoon faces drawn with Pillow; blank, gradient, stripe, checkerboard and
  noise frames, including skin-coloured blank frames (the hardest blank case).

``near_lesion_pictures`` makes the harder, dermatology-adjacent cases from real lesion
pictures (heavily blurred, zoomed far out onto skin): reported beside the benchmark, not
counted in it, because whether they should be refused is a policy choice (see docs).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 300
SKIN_TONES = ((241, 194, 167), (224, 172, 138), (198, 134, 103), (141, 85, 54), (92, 56, 38))


def _package_folder(module: str) -> Path | None:
    try:
        imported = __import__(module)
    except ImportError:
        return None
    return Path(imported.__file__).parent


def _open(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            image.seek(0)
            return image.convert("RGB")
    except (OSError, ValueError, EOFError):
        return None


def package_photos() -> dict[str, Image.Image]:
    """Every raster sample picture the installed scikit-image, scikit-learn and
    matplotlib ship, once each (scikit-image's greyscale and colour chessboards are one
    picture)."""
    photos: dict[str, Image.Image] = {}
    seen: set[bytes] = set()
    folders = {
        "scikit-image": (_package_folder("skimage"), "data"),
        "matplotlib": (_package_folder("matplotlib"), "mpl-data/sample_data"),
        "scikit-learn": (_package_folder("sklearn"), "datasets/images"),
    }
    for package, (root, sub) in folders.items():
        if root is None or not (root / sub).is_dir():
            continue
        for path in sorted((root / sub).iterdir()):
            if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".tif"}:
                image = _open(path)
                key = None if image is None else np.asarray(image.resize((32, 32))).tobytes()
                if key is not None and key not in seen:
                    seen.add(key)
                    photos[f"{package}: {path.name}"] = image
    return photos


def photo_crops(photos: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """A centre crop (half the side) and a corner crop (a third) of every colour photo."""
    crops = {}
    for name, image in photos.items():
        w, h = image.size
        if min(w, h) < 120 or _is_grey(image):
            continue
        crops[f"{name} (centre crop)"] = image.crop((w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2))
        crops[f"{name} (corner crop)"] = image.crop((0, 0, w // 3, h // 3))
    return crops


def _is_grey(image: Image.Image) -> bool:
    rgb = np.asarray(image.convert("RGB"), np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() < 3 and np.abs(rgb[..., 1] - rgb[..., 2]).max() < 3)


def faces(count: int = 12) -> dict[str, Image.Image]:
    """Faces from scikit-image's bundled Labeled Faces in the Wild subset."""
    root = _package_folder("skimage")
    path = None if root is None else root / "data" / "lfw_subset.npy"
    if path is None or not path.is_file():
        return {}
    stack = np.load(path)
    return {
        f"face {k}": Image.fromarray((stack[k] * 255).astype(np.uint8)).convert("RGB")
        for k in range(0, min(len(stack), 100), max(1, min(len(stack), 100) // count))
    }


def _figure_image(draw: Callable, seed: int) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=75)
    draw(ax, np.random.default_rng(seed))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


CHARTS: dict[str, Callable] = {
    "line chart": lambda ax, r: ax.plot(np.cumsum(r.normal(size=(100, 3)), axis=0)),
    "bar chart": lambda ax, r: ax.bar(range(8), r.uniform(1, 10, 8), color="tab:orange"),
    "scatter plot": lambda ax, r: ax.scatter(*r.normal(size=(2, 200)), c=r.uniform(size=200)),
    "histogram": lambda ax, r: ax.hist(r.normal(size=500), bins=30, color="tab:red"),
    "pie chart": lambda ax, r: ax.pie(r.uniform(1, 5, 5)),
    "heat-map image": lambda ax, r: ax.imshow(r.normal(size=(20, 20)).cumsum(axis=0), cmap="magma"),
    "contour map": lambda ax, r: ax.contourf(np.add.outer(np.sin(np.linspace(0, 6, 50)), r.normal(size=50).cumsum())),
    "box plot": lambda ax, r: ax.boxplot(r.normal(size=(50, 4))),
}


def charts() -> dict[str, Image.Image]:
    """Charts drawn with matplotlib (empty without it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {}
    return {name: _figure_image(draw, seed) for seed, (name, draw) in enumerate(CHARTS.items())}


def _text_page(background: tuple[int, int, int], ink: tuple[int, int, int], lines: int) -> Image.Image:
    page = Image.new("RGB", (SIZE, SIZE), background)
    draw = ImageDraw.Draw(page)
    for row in range(lines):
        draw.text((10, 10 + (SIZE - 20) * row // lines), "Patient letter: please find enclosed the report", fill=ink)
    return page


def _screenshot(bar: tuple[int, int, int], items: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    shot = Image.new("RGB", (SIZE, SIZE), (240, 240, 245))
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, SIZE, 30), fill=bar)
    for k in range(items):
        top = 40 + k * (SIZE - 50) // items
        draw.rectangle((20, top, 280, top + 22), outline=(150, 150, 160), fill="white")
        draw.text((30, top + 5), f"Menu item {k}", fill="black")
        if rng.uniform() < 0.5:
            draw.ellipse((250, top + 4, 264, top + 18), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return shot


def _cartoon_face(skin: tuple[int, int, int]) -> Image.Image:
    face = Image.new("RGB", (SIZE, SIZE), (200, 220, 240))
    draw = ImageDraw.Draw(face)
    draw.ellipse((60, 30, 240, 270), fill=skin)
    for x in (110, 190):
        draw.ellipse((x - 12, 110, x + 12, 130), fill=(60, 40, 30))
    draw.arc((110, 170, 190, 220), 20, 160, fill=(150, 50, 50), width=5)
    return face


def drawn_pictures() -> dict[str, Image.Image]:
    """Documents, screenshots, cartoon faces and featureless or patterned frames."""
    rng = np.random.default_rng(0)
    frames: dict[str, Image.Image] = {}
    papers = [((255, 255, 255), (0, 0, 0)), ((250, 245, 230), (30, 30, 90)), ((30, 30, 30), (230, 230, 230))]
    for k, (paper, ink) in enumerate(papers):
        for lines in (6, 14):
            frames[f"text page {k}-{lines}"] = _text_page(paper, ink, lines)
    for k, bar in enumerate([(30, 60, 120), (120, 30, 60), (40, 120, 60), (90, 90, 90)]):
        frames[f"screenshot {k}"] = _screenshot(bar, 4 + k, k)
    for k, skin in enumerate(SKIN_TONES):
        frames[f"cartoon face {k}"] = _cartoon_face(skin)
        frames[f"blank skin-coloured frame {k}"] = Image.new("RGB", (SIZE, SIZE), skin)
    for name in ("white", "black", "grey", "red", "blue", "green"):
        frames[f"blank {name} frame"] = Image.new("RGB", (SIZE, SIZE), name)
    ramp = np.linspace(0, 255, SIZE, dtype=np.uint8)
    frames["grey gradient"] = Image.fromarray(np.tile(ramp[None, :, None], (SIZE, 1, 3)))
    across, down = np.meshgrid(ramp, ramp[::-1])
    frames["colour gradient"] = Image.fromarray(np.stack([across, down, np.full_like(across, 128)], -1))
    stripes = ((np.arange(SIZE) // 15) % 2 * 255).astype(np.uint8)
    frames["stripes"] = Image.fromarray(np.tile(stripes[None, :, None], (SIZE, 1, 3)))
    board = ((np.add.outer(np.arange(SIZE) // 30, np.arange(SIZE) // 30) % 2) * 255).astype(np.uint8)
    frames["checkerboard"] = Image.fromarray(np.stack([board, board // 2, 255 - board], -1))
    frames["uniform noise"] = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    frames["gaussian noise"] = Image.fromarray(np.clip(rng.normal(128, 40, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8))
    frames["blurred noise"] = frames["uniform noise"].filter(ImageFilter.GaussianBlur(8))
    frames["skin-toned noise"] = Image.fromarray(
        np.clip(np.array(SKIN_TONES[1])[None, None] + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    )
    return frames


def non_lesion_pictures() -> dict[str, dict[str, Image.Image]]:
    """The benchmark, by group: name -> picture."""
    photos = package_photos()
    return {
        "package photos": photos,
        "photo crops": photo_crops(photos),
        "faces": faces(),
        "charts": charts(),
        "drawn": drawn_pictures(),
    }


def near_lesion_pictures(lesions: list[Image.Image]) -> dict[str, dict[str, Image.Image]]:
    """Clinical-style non-dermoscopic versions of real lesion pictures: heavily blurred
    (Gaussian radius of 6 % of the side) and zoomed out (the picture at a fifth of its
    side, on plain skin of its own border colour)."""
    blurred, zoomed = {}, {}
    for k, image in enumerate(lesions):
        rgb = image.convert("RGB")
        blurred[f"blurred lesion {k}"] = rgb.filter(ImageFilter.GaussianBlur(0.06 * max(rgb.size)))
        border = np.concatenate([np.asarray(rgb)[0], np.asarray(rgb)[-1]]).mean(axis=0).astype(int)
        canvas = Image.new("RGB", rgb.size, tuple(int(v) for v in border))
        small = rgb.resize((max(1, rgb.width // 5), max(1, rgb.height // 5)))
        canvas.paste(small, ((rgb.width - small.width) // 2, (rgb.height - small.height) // 2))
        zoomed[f"zoomed-out lesion {k}"] = canvas
    return {"heavily blurred lesions": blurred, "zoomed-out lesions": zoomed}
