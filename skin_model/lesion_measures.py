"""What a lesion mask says about the lesion: the measurements a dermatologist reads off a
dermoscopic picture (the A, B, C and D of the ABCD rule), from a boolean mask and the
picture it outlines. Each comes with a one-line meaning (:data:`MEANINGS`).

- area share: the lesion's share of the picture;
- maximum diameter: the largest distance between two lesion pixels (centre to centre), in
  pixels, and in millimetres when the picture's field of view is known;
- asymmetry about the two principal axes: the share of the lesion that does not overlap
  its mirror image about each axis through its centre of mass (0: symmetric);
- border irregularity: one minus the solidity, the share of the lesion's convex hull that
  the lesion does not fill (0 for a convex outline, more for notches and lobes);
- colours: how many of the six colours of the ABCD rule cover at least
  :data:`COLOUR_MIN_SHARE` of the lesion, each pixel counted for its nearest reference
  colour (Kasmi and Mokrani 2016's RGB references).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# The ABCD rule's six colours, RGB 0-255 (Kasmi & Mokrani, IET Image Processing 2016)
ABCD_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "red": (204, 51, 51),
    "light brown": (153, 102, 0),
    "dark brown": (51, 0, 0),
    "blue-grey": (51, 153, 153),
    "black": (0, 0, 0),
}
COLOUR_MIN_SHARE = 0.05  # a colour counts when at least this share of the lesion's pixels is nearest to it

MEANINGS = {
    "area_share": "the lesion's share of the picture",
    "max_diameter_px": "the longest distance across the lesion, in pixels of the picture",
    "max_diameter_mm": "the same in millimetres (from the field of view given); above 6 mm is one of the ABCD signs",
    "asymmetry_major": "the share of the lesion not matched by its mirror image about its long axis (0 = symmetric)",
    "asymmetry_minor": "the same about its short axis",
    "border_irregularity": "the share of the lesion's convex outline it does not fill (0 = smooth, convex border)",
    "colours": "how many of the ABCD rule's six colours cover at least 5 % of the lesion",
}


@dataclass(frozen=True)
class LesionMeasures:
    area_share: float
    max_diameter_px: float
    max_diameter_mm: float | None
    asymmetry_major: float
    asymmetry_minor: float
    border_irregularity: float
    colours: int
    colour_names: tuple[str, ...]

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        row["colour_names"] = "; ".join(self.colour_names)
        return row


def _pixels(mask: np.ndarray) -> np.ndarray:
    """(n, 2) float (row, column) coordinates of the lesion's pixels."""
    return np.argwhere(np.asarray(mask, bool)).astype(np.float64)


def _hull(points: np.ndarray) -> np.ndarray | None:
    """The convex hull's vertices, or None when the points are collinear (or too few)."""
    from scipy.spatial import ConvexHull, QhullError

    if len(points) < 3:
        return None
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:
        return None


def max_diameter(mask: np.ndarray) -> float:
    """The largest distance between the centres of two lesion pixels."""
    points = _pixels(mask)
    if len(points) < 2:
        return 0.0
    hull = _hull(points)
    candidates = points if hull is None else hull
    if hull is None:  # collinear: the two extreme points along the line
        span = candidates.max(axis=0) - candidates.min(axis=0)
        return float(np.hypot(*span))
    differences = candidates[:, None, :] - candidates[None, :, :]
    return float(np.sqrt((differences**2).sum(axis=-1)).max())


def principal_axes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre of mass and the unit principal axes (rows: long axis first)."""
    points = _pixels(mask)
    centre = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    return centre, vectors[:, ::-1].T


def mirror_asymmetry(mask: np.ndarray, axis: np.ndarray, centre: np.ndarray) -> float:
    """The share of lesion pixels whose mirror image about the line through ``centre``
    along ``axis`` falls outside the lesion."""
    mask = np.asarray(mask, bool)
    points = _pixels(mask)
    offsets = points - centre
    along = offsets @ axis
    mirrored = centre + 2 * along[:, None] * axis[None, :] - offsets
    rows, cols = np.rint(mirrored).astype(int).T
    inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    matched = np.zeros(len(points), bool)
    matched[inside] = mask[rows[inside], cols[inside]]
    return float(1.0 - matched.mean())


def border_irregularity(mask: np.ndarray) -> float:
    """One minus the solidity: the share of the convex hull of the lesion's pixel
    squares that the lesion does not cover."""
    from scipy.spatial import ConvexHull, QhullError

    points = _pixels(mask)
    if len(points) == 0:
        return 0.0
    corners = (points[:, None, :] + np.array([[0, 0], [0, 1], [1, 0], [1, 1]])[None]).reshape(-1, 2)
    try:
        hull_area = ConvexHull(corners).volume  # in 2-D, "volume" is the area
    except QhullError:
        return 0.0
    return float(max(0.0, 1.0 - len(points) / hull_area))


def colour_counts(picture: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Each ABCD colour's share of the lesion's pixels (nearest reference in RGB)."""
    pixels = np.asarray(picture, np.float64)[np.asarray(mask, bool)]
    references = np.array(list(ABCD_COLOURS.values()), np.float64)
    nearest = np.argmin(((pixels[:, None, :] - references[None]) ** 2).sum(axis=-1), axis=1)
    shares = np.bincount(nearest, minlength=len(references)) / max(len(pixels), 1)
    return dict(zip(ABCD_COLOURS, shares.tolist(), strict=True))


def measure_lesion(
    mask: np.ndarray, picture: np.ndarray | None = None, field_of_view_mm: float | None = None
) -> LesionMeasures | None:
    """The measurements of a lesion mask (boolean, at the picture's size); None when the
    mask holds no lesion. ``picture`` (RGB, same size) gives the colours;
    ``field_of_view_mm``, the picture's width in millimetres, the diameter in mm."""
    mask = np.asarray(mask, bool)
    if mask.sum() < 3:
        return None
    centre, axes = principal_axes(mask)
    diameter = max_diameter(mask)
    shares = colour_counts(picture, mask) if picture is not None else {}
    present = tuple(name for name, share in shares.items() if share >= COLOUR_MIN_SHARE)
    return LesionMeasures(
        area_share=round(float(mask.mean()), 4),
        max_diameter_px=round(diameter, 2),
        max_diameter_mm=None if field_of_view_mm is None else round(diameter * field_of_view_mm / mask.shape[1], 2),
        asymmetry_major=round(mirror_asymmetry(mask, axes[0], centre), 4),
        asymmetry_minor=round(mirror_asymmetry(mask, axes[1], centre), 4),
        border_irregularity=round(border_irregularity(mask), 4),
        colours=len(present),
        colour_names=present,
    )
