"""Content and perceptual hashes, and near-duplicate pairs.

Exact duplicates share the SHA-256 of their file bytes. Near duplicates (the same
picture resized, re-encoded or slightly cropped) are found with a 64-bit DCT
perceptual hash (``imagehash.phash``) compared by Hamming distance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import imagehash
import numpy as np
from PIL import Image

# Near duplicates need both tests, measured on the shared data (README, "Audit"):
# - 64-bit pHashes within this many bits (copies of one ISIC image at 180 and
#   256 px differ by 0-4 bits; but dermoscopy pictures look alike, and 44% of the
#   pairs at distance 8 are different lesions),
# - and a Pearson correlation of their 32x32 grayscale thumbnails of at least
#   this much (same picture: >= 0.98; same lesion re-photographed: 0.94-0.98;
#   different lesions with close hashes: <= 0.93).
NEAR_DUPLICATE_MAX_DISTANCE = 8
NEAR_DUPLICATE_MIN_CORRELATION = 0.94
SIGNATURE_SIDE = 32
# Where HAM10000's lesion ids speak (either picture carries one), only this much
# thumbnail correlation links two pictures: every copy of one ISIC picture at another
# size reaches it, while dozens of HAM's pairs of different lesions (blurry, evenly
# brown nevi) correlate between 0.94 and 0.98 and would chain lesions into one group.
SAME_PICTURE_MIN_CORRELATION = 0.98


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a file's bytes: equal only for byte-identical files."""
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash as 16 hex characters."""
    return str(imagehash.phash(image, hash_size=8))


def thumbnail_signature(image: Image.Image) -> np.ndarray:
    """Zero-mean, unit-norm 32x32 grayscale thumbnail: the dot product of two
    signatures is the Pearson correlation of the thumbnails."""
    small = image.convert("L").resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.BOX)
    vec = np.asarray(small, dtype=np.float32).ravel()
    vec = vec - vec.mean()
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def hashes_as_uint64(hashes: Iterable[str]) -> np.ndarray:
    """Perceptual hashes (hex strings) as 64-bit integers, for XOR-and-count distances."""
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def near_duplicate_pairs(
    hashes: list[str],
    signatures: np.ndarray,
    max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE,
    min_correlation: float = NEAR_DUPLICATE_MIN_CORRELATION,
    chunk: int = 512,
) -> Iterator[tuple[int, int, int, float]]:
    """All index pairs ``(i, j, hash distance, thumbnail correlation)`` with
    ``i < j`` passing both near-duplicate tests; vectorised over chunks so
    thousands of images take about a second."""
    values = hashes_as_uint64(hashes)
    for start in range(0, len(values), chunk):
        block = values[start : start + chunk]
        dist = np.bitwise_count(block[:, None] ^ values[None, :])
        rows, cols = np.nonzero(dist <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i >= c:
                continue
            corr = float(signatures[i] @ signatures[c])
            if corr >= min_correlation:
                yield i, c, int(dist[r, c]), round(corr, 4)
