"""Would a slightly different photo of the same lesion get the same answer?

Small, realistic changes a second photo or another camera brings (JPEG re-compression,
a little blur, a darker or brighter exposure, a warmer white balance, half the
resolution, a slightly tighter framing, sensor noise, sharpening) are applied to the picture as the model sees it,
and the model's answer is read again. Measured over held-out lesions per change (how
often the top class flips, how much the malignant risk moves, how often the referral
decision flips), and per picture in the app: an answer that flips under such changes
deserves less trust than one that holds.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .classes import CLASS_NAMES, malignant_score
from .model_files import COMPRESSION_REPORT_FILE  # noqa: F401  (the registry's name)
from .model_files import ROBUSTNESS_FILE as REPORT_FILE  # noqa: F401


def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.asarray(x), 0, 255).astype(np.uint8), "RGB")


def resave_jpeg(image: Image.Image, quality: int = 50) -> Image.Image:
    """The picture as it reads back after being saved as a JPEG at ``quality``."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _half_resolution(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.resize((w // 2, h // 2), Image.Resampling.BILINEAR).resize((w, h), Image.Resampling.BILINEAR)


def _warmer(image: Image.Image) -> Image.Image:
    x = np.asarray(image, np.float32) * np.array([1.08, 1.0, 0.92], np.float32)
    return _pil(x)


def _noisy(image: Image.Image, sigma: float = 5.0) -> Image.Image:
    noise = np.random.default_rng(0).normal(0.0, sigma, (image.size[1], image.size[0], 3))
    return _pil(np.asarray(image, np.float32) + noise)


def _tighter(image: Image.Image, keep: float = 0.9) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return image.crop((dx, dy, w - dx, h - dy)).resize((w, h), Image.Resampling.BILINEAR)


# name -> change of a model-size picture; each is mild enough that a dermatologist would
# call the result the same photo of the same lesion. Noise and sharpening are kinds no
# training augmentation makes (see :func:`trained_on` for the others).
PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "JPEG quality 50": resave_jpeg,
    "slight blur (Gaussian, 1 px)": lambda im: im.filter(ImageFilter.GaussianBlur(1.0)),
    "20 % darker": lambda im: ImageEnhance.Brightness(im).enhance(0.8),
    "20 % brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "warmer white balance": _warmer,
    "half resolution": _half_resolution,
    "tighter framing (90 % of each side)": _tighter,
    "sensor noise (sigma 5)": _noisy,
    "sharpened (unsharp mask)": lambda im: im.filter(ImageFilter.UnsharpMask(radius=2, percent=80, threshold=2)),
}
# what ``train --camera`` changes (exposure, white balance, resolution, JPEG) and what the
# random crop of every training run does
CAMERA_KINDS = (
    "JPEG quality 50",
    "slight blur (Gaussian, 1 px)",
    "20 % darker",
    "20 % brighter",
    "warmer white balance",
    "half resolution",
)
CROP_KINDS = ("tighter framing (90 % of each side)",)


def trained_on(training_config: dict) -> list[str]:
    """The changes of kinds the model's training augmentation made (from its manifest's
    training config): a model trained on them is expected to resist them better."""
    jpeg = ("JPEG quality 50",) if training_config.get("jpeg") and not training_config.get("camera") else ()
    return [*(CAMERA_KINDS if training_config.get("camera") else ()), *jpeg, *CROP_KINDS]


def perturbed(x: np.ndarray) -> np.ndarray:
    """(len(PERTURBATIONS), h, w, 3) uint8: each change applied to one model-size picture."""
    image = _pil(x)
    return np.stack([np.asarray(change(image), np.uint8) for change in PERTURBATIONS.values()])


@dataclass
class StabilityCheck:
    """How one picture's answer fares under the changes of :data:`PERTURBATIONS`."""

    predicted: str  # the answer on the picture itself
    kept: int  # changes under which the top class stays the same
    changes: int
    flipped_to: dict[str, str]  # change -> the class it gives instead
    risk_range: tuple[float, float]  # lowest and highest malignant risk over the changes

    @property
    def stable(self) -> bool:
        return self.kept == self.changes

    def describe(self, plain_name: Callable[[str], str] = str) -> str:
        low, high = self.risk_range
        risk = f"malignant risk {low:.0%}-{high:.0%} across them"
        if self.stable:
            return f"Stability: the answer held under all {self.changes} small changes of the photo ({risk})."
        flips = "; ".join(f"{change}: {plain_name(name)}" for change, name in self.flipped_to.items())
        return (
            f"Stability: the answer changed under {self.changes - self.kept} of {self.changes} small changes of "
            f"the photo ({flips}; {risk})."
        )


# The stability check reads each change through the first STABILITY_VIEWS of the model's
# test-time views (1: the changed picture itself), against the answer the page shows (all
# 8 views of the unchanged picture). Re-reading the nine changes through all 8 views cost
# more model work than the rest of a picture's analysis, and on validation
# (benchmarks/stability_views.py) the count of changes the answer held under separated
# right from wrong answers no worse with one view than with eight.
STABILITY_VIEWS = 1


def stability_check(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, probs: np.ndarray) -> StabilityCheck:
    """Read ``predict`` (model-size uint8 batch -> probabilities) again on each change of
    picture ``x``, whose own (shown) probabilities are ``probs``; ``predict`` may read
    fewer views than ``probs`` did (:data:`STABILITY_VIEWS`)."""
    changed = predict(perturbed(x))
    top = int(np.argmax(probs))
    answers = changed.argmax(axis=1)
    risks = malignant_score(changed)
    return StabilityCheck(
        predicted=CLASS_NAMES[top],
        kept=int((answers == top).sum()),
        changes=len(PERTURBATIONS),
        flipped_to={name: CLASS_NAMES[int(a)] for name, a in zip(PERTURBATIONS, answers, strict=True) if int(a) != top},
        risk_range=(round(float(risks.min()), 4), round(float(risks.max()), 4)),
    )


def robustness_report(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    threshold: float,
    trained: Sequence[str] = (),
    chunk: int = 16,
    predict_check: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, object]:
    """Per change of :data:`PERTURBATIONS`, over model-size pictures ``x`` with labels
    ``y``: balanced accuracy, how often the top class flips, the mean absolute change of
    the malignant risk and how often the referral decision (risk >= ``threshold``)
    flips, each as ``predict`` (the model as it answers) reads the changed picture; and
    what the per-picture stability check was worth: how often the answer is right on the
    pictures whose answer it finds held under every change and on the others, with the
    changed copies read by ``predict_check`` as the page's check reads them (default:
    ``predict``). ``trained``: the changes of kinds the model was trained on
    (:func:`trained_on`), recorded with the figures."""
    from sklearn.metrics import balanced_accuracy_score

    base, changed, checked = [], [], []
    for start in range(0, len(x), chunk):
        batch = x[start : start + chunk]
        base.append(predict(batch))
        stacked = np.concatenate([perturbed(image) for image in batch])
        changed.append(predict(stacked).reshape(len(batch), len(PERTURBATIONS), -1))
        if predict_check is not None:
            checked.append(predict_check(stacked).reshape(len(batch), len(PERTURBATIONS), -1))
    probs, variants = np.concatenate(base), np.concatenate(changed)
    top, risk = probs.argmax(axis=1), malignant_score(probs)
    report: dict[str, object] = {
        "images": len(y),
        "balanced_accuracy": round(float(balanced_accuracy_score(y, top)), 4),
        "threshold": threshold,
        "trained_on": list(trained),
        "changes": {},
    }
    for k, name in enumerate(PERTURBATIONS):
        p = variants[:, k]
        r = malignant_score(p)
        report["changes"][name] = {
            "balanced_accuracy": round(float(balanced_accuracy_score(y, p.argmax(axis=1))), 4),
            "top_class_flips": round(float((p.argmax(axis=1) != top).mean()), 4),
            "mean_risk_change": round(float(np.abs(r - risk).mean()), 4),
            "referral_flips": round(float(((r >= threshold) != (risk >= threshold)).mean()), 4),
        }
    check_reads = np.concatenate(checked) if checked else variants
    stable = (check_reads.argmax(axis=2) == top[:, None]).all(axis=1)
    correct = top == y
    report["stable_share"] = round(float(stable.mean()), 4)
    report["accuracy_when_stable"] = round(float(correct[stable].mean()), 4) if stable.any() else None
    report["accuracy_when_unstable"] = round(float(correct[~stable].mean()), 4) if (~stable).any() else None
    return report


# the image collections were saved at different JPEG qualities (seed set 95, ISIC 2017
# 75, as images.estimate_jpeg_quality reads them); ``compression_shortcut_report``
# re-saves pictures at these
SHORTCUT_QUALITIES = (None, 95, 90, 75, 60)  # None: the picture as stored
# Besides the JPEG qualities: the picture saved losslessly, and at half its side (as a
# phone's smaller export or a downscaled archive would hand it over)
SHORTCUT_SAVES = ("PNG", "half size")
# a JPEG saved below this quality gets a note (the seed set's pictures were saved at 95)
COMPRESSION_NOTE_BELOW = 90


def compression_note(quality: int | None, report: dict | None) -> str | None:
    """What a user should know about a picture saved as a JPEG at ``quality``, with the
    model's measured figures from its :data:`COMPRESSION_REPORT_FILE` when it has one;
    None for a picture compressed no more than the seed set's (or not a JPEG)."""
    if quality is None or quality >= COMPRESSION_NOTE_BELOW:
        return None
    text = (
        f"This JPEG was saved at quality about {quality}: more compressed than the seed set's pictures (95). "
        "Compression blurs the fine structure a model reads, and a model can learn a collection's compression "
        "along with its classes."
    )
    if not report:
        text += " How this model's answer changes with compression has not been measured."
    else:
        results = report["report"]
        measured = [int(key.rsplit(" ", 1)[1]) for key in results if key.startswith("JPEG quality")]
        nearest = min(measured, key=lambda m: abs(m - quality))
        stored, resaved = results["as stored"]["all"], results[f"JPEG quality {nearest}"]["all"]
        text += (
            f" On {report['split']} pictures saved again at quality {nearest}, this model called "
            f"{resaved['called_narrow']:.0%} of the lesions of the other six classes one of those three "
            f"({stored['called_narrow']:.0%} as stored), and its balanced accuracy went from "
            f"{stored['balanced_accuracy']:.2f} to {resaved['balanced_accuracy']:.2f}."
        )
    return text + " Weigh the class with care."


def resave_png(image: Image.Image) -> Image.Image:
    """The picture as it reads back after being saved losslessly as a PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def half_size(image: Image.Image) -> Image.Image:
    """The picture at half its side (antialiased), saved losslessly: a smaller export."""
    w, h = image.size
    return resave_png(image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BILINEAR))


def _saved_again(image: Image.Image, save: int | str | None) -> Image.Image:
    if save is None:
        return image
    if save == "PNG":
        return resave_png(image)
    if save == "half size":
        return half_size(image)
    return resave_jpeg(image, int(save))


def _save_name(save: int | str | None) -> str:
    return "as stored" if save is None else f"JPEG quality {save}" if isinstance(save, int) else str(save)


def _shortcut_row(y, probs, top, stored_top, referred, stored_referred, k, narrow, narrow_classes) -> dict:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from .classes import MALIGNANT_MASK

    malignant = MALIGNANT_MASK[y[k]]
    others = k & ~narrow
    row: dict[str, float | int | None] = {
        "images": int(k.sum()),
        "balanced_accuracy": round(float(balanced_accuracy_score(y[k], top[k])), 4),
        "accuracy": round(float((y[k] == top[k]).mean()), 4),
        "malignant_auc": (
            round(float(roc_auc_score(malignant, malignant_score(probs[k]))), 4)
            if 0 < malignant.sum() < k.sum()
            else None
        ),
        "called_narrow": round(float(np.isin(top[others], list(narrow_classes)).mean()), 4) if others.any() else None,
        "answer_changed": round(float((top[k] != stored_top[k]).mean()), 4),
    }
    if referred is not None:
        row["referral_changed"] = round(float((referred[k] != stored_referred[k]).mean()), 4)
    return row


def compression_shortcut_report(
    predict: Callable[[np.ndarray], np.ndarray],
    images: Sequence[Image.Image],
    y: np.ndarray,
    collections: np.ndarray,
    narrow_classes: Sequence[int],
    size: int,
    qualities: Sequence[int | None] = SHORTCUT_QUALITIES,
    saves: Sequence[str] = SHORTCUT_SAVES,
    malignant_threshold: float | None = None,
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Does the model read the class off how the picture was saved? Every picture (as
    stored, before the resize to ``size``) is saved again at each JPEG quality of
    ``qualities`` and in each of ``saves`` (PNG, half size), and per save and image
    collection this gives balanced accuracy, accuracy, malignant AUC, ``answer_changed``
    (the share whose top class differs from the stored picture's), ``referral_changed``
    (the share whose referral at ``malignant_threshold`` differs; only with a threshold)
    and ``called_narrow``: the share of pictures of classes outside ``narrow_classes``
    (the few classes of the collection saved at a lower quality) that the model calls one
    of them; "all" pools the collections. A model that learnt the collection's
    compression along with its classes moves pictures into those classes as their
    quality falls; one that learnt the lesions does not."""
    from .pipeline import to_model_input

    narrow = np.isin(y, list(narrow_classes))
    report: dict[str, dict[str, dict[str, float | int | None]]] = {}
    stored_top = stored_referred = None
    for save in [None, *[q for q in qualities if q is not None], *saves]:
        probs = predict(np.stack([to_model_input(_saved_again(im, save), size) for im in images]))
        top = probs.argmax(axis=1)
        referred = None if malignant_threshold is None else malignant_score(probs) >= malignant_threshold
        if save is None:
            stored_top, stored_referred = top, referred
        report[_save_name(save)] = {
            collection: _shortcut_row(
                y,
                probs,
                top,
                stored_top,
                referred,
                stored_referred,
                collections == collection if collection != "all" else np.ones(len(y), bool),
                narrow,
                narrow_classes,
            )
            for collection in [*sorted(set(collections)), "all"]
        }
    return report
