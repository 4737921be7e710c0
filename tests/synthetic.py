"""Synthetic stand-ins for the data sets, made on the fly (no real images in the repo)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from skin_model.classes import CLASS_NAMES
from skin_model.sources import SEED_CHILD_FOLDER


def smooth_picture(seed: int, size: int = 64) -> Image.Image:
    """A distinct, smooth random RGB picture: resizing keeps it recognisable, and two
    seeds give unrelated pictures (far apart in perceptual hash)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    return img


def jpeg_bytes(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def isic(n: int) -> str:
    return f"ISIC_{n:07d}"


def make_dataset(root: Path, per_class: int = 6, test_per_class: int = 2) -> dict[str, object]:
    """A miniature copy of the shared layout with every kind of dirt planted once.

    Returns what was planted so tests can assert each finding exactly.
    """
    seed_root = root / "skin-cancer-isic" / SEED_CHILD_FOLDER
    counter = iter(range(1, 100_000))
    planted: dict[str, object] = {}

    def write(subset: str, label: str, name: str, data: bytes) -> Path:
        path = seed_root / subset / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    train_files: dict[str, list[tuple[str, bytes]]] = {}
    for label in CLASS_NAMES:
        train_files[label] = []
        for _ in range(per_class):
            n = next(counter)
            data = jpeg_bytes(smooth_picture(n))
            write("Train", label, f"{isic(n)}.jpg", data)
            train_files[label].append((isic(n), data))
        for _ in range(test_per_class):
            n = next(counter)
            write("Test", label, f"{isic(n)}.jpg", jpeg_bytes(smooth_picture(n)))

    # 1. byte-identical copy within one class (the "(1)" download artefact)
    dup_id, dup_data = train_files["nevus"][0]
    write("Train", "nevus", f"{dup_id}(1).jpg", dup_data)
    planted["within_class_duplicate"] = dup_id
    # 2. the same bytes filed under two classes, no official label: a conflict to drop
    conf_id, conf_data = train_files["melanoma"][1]
    write("Train", "dermatofibroma", f"{conf_id}.jpg", conf_data)
    planted["cross_class_conflict"] = conf_id
    # 3. a Train image also in Test (leak)
    leak_id, leak_data = train_files["basal cell carcinoma"][2]
    write("Test", "basal cell carcinoma", f"{leak_id}.jpg", leak_data)
    planted["leaked_test_image"] = leak_id
    # 4. the same picture resized, under another id and class in ISIC 2017 style
    near_seed = CLASS_NAMES.index("nevus") * 1000 + 777
    near_id = isic(near_seed)
    big = smooth_picture(near_seed, size=96)
    write("Train", "nevus", f"{near_id}.jpg", jpeg_bytes(big.resize((64, 64), Image.Resampling.LANCZOS)))
    planted["near_duplicate_id"] = near_id
    # 5. a corrupt (truncated) file
    broken = jpeg_bytes(smooth_picture(99_999))
    write("Train", "vascular lesion", f"{isic(99_999)}.jpg", broken[: len(broken) // 3])
    planted["unreadable_id"] = isic(99_999)

    # ISIC 2017 style: CSV-labelled folder, with the resized near duplicate and new SKs
    img_dir = root / "isic-2017" / "ISIC-2017_Training_Data"
    img_dir.mkdir(parents=True)
    rows = ["image_id,melanoma,seborrheic_keratosis"]
    near_copy_id = isic(90_001)
    (img_dir / f"{near_copy_id}.jpg").write_bytes(jpeg_bytes(big))
    rows.append(f"{near_copy_id},0.0,0.0")
    planted["near_duplicate_copy_id"] = near_copy_id
    for k in range(4):
        n = 91_000 + k
        (img_dir / f"{isic(n)}.jpg").write_bytes(jpeg_bytes(smooth_picture(n)))
        rows.append(f"{isic(n)},0.0,1.0")
    (root / "isic-2017" / "ISIC-2017_Training_Part3_GroundTruth.csv").write_text("\n".join(rows) + "\n")

    # Official labels: one folder label contradicted, two images of one lesion.
    labels = root / "labels"
    labels.mkdir()
    wrong_id = train_files["nevus"][3][0]
    lesion_a, lesion_b = train_files["vascular lesion"][0][0], train_files["vascular lesion"][1][0]
    (labels / "HAM10000_metadata.csv").write_text(
        "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
        f"HAM_0000001,{wrong_id},mel,histo,50,male,back\n"
        f"HAM_0000002,{lesion_a},vasc,histo,40,female,trunk\n"
        f"HAM_0000002,{lesion_b},vasc,histo,40,female,trunk\n"
    )
    planted["official_disagreement_id"] = wrong_id
    planted["lesion_pair"] = (lesion_a, lesion_b)
    header = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"
    (labels / "ISIC_2019_Training_GroundTruth.csv").write_text(header + "\n" + f"{lesion_a},0,0,0,0,0,0,1,0,0\n")
    return planted


def lesion_like(size: int = 300, seed: int = 0) -> Image.Image:
    """A dermoscopy-like picture: a dark irregular blotch on skin-coloured texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    skin = np.stack([np.full_like(xx, 215), np.full_like(xx, 160), np.full_like(xx, 140)], -1)
    skin += rng.normal(0, 6, skin.shape)
    radius = 0.25 + 0.03 * np.sin(np.arctan2(yy - 0.5, xx - 0.5) * 5)
    inside = (xx - 0.5) ** 2 + (yy - 0.5) ** 2 < radius**2
    skin[inside] = np.array([110, 60, 40]) + rng.normal(0, 10, (inside.sum(), 3))
    return Image.fromarray(np.clip(skin, 0, 255).astype(np.uint8), "RGB")
