"""The nine diagnostic classes, their official codes and the benign/malignant split.

Class names are exactly the seed data set's folder names; every other module uses
these constants so names and order never drift.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "actinic keratosis",
    "basal cell carcinoma",
    "dermatofibroma",
    "melanoma",
    "nevus",
    "pigmented benign keratosis",
    "seborrheic keratosis",
    "squamous cell carcinoma",
    "vascular lesion",
)

# Malignant or pre-malignant (actinic keratosis) classes: "refer" territory.
MALIGNANT_CLASSES: frozenset[str] = frozenset(
    {"melanoma", "basal cell carcinoma", "squamous cell carcinoma", "actinic keratosis"}
)

MALIGNANT_MASK = np.array([name in MALIGNANT_CLASSES for name in CLASS_NAMES])


def malignant_score(probs: np.ndarray) -> np.ndarray:
    """Benign/malignant score: the summed probability of the malignant classes."""
    return np.asarray(probs)[:, MALIGNANT_MASK].sum(axis=1)


# Official ISIC 2019 one-hot columns -> class name (UNK has no class here).
ISIC2019_CODES: dict[str, str] = {
    "AK": "actinic keratosis",
    "BCC": "basal cell carcinoma",
    "DF": "dermatofibroma",
    "MEL": "melanoma",
    "NV": "nevus",
    "BKL": "pigmented benign keratosis",
    "SCC": "squamous cell carcinoma",
    "VASC": "vascular lesion",
}

# HAM10000 `dx` codes -> class name: the label of a HAM picture unless an official
# ISIC 2019 (or ISIC 2017) answer for the same ISIC id is finer, which then wins (see
# manifest.official_answer):
# - akiec covers actinic keratosis and intraepithelial carcinoma (Bowen's disease, a
#   squamous cell carcinoma in situ). It maps to actinic keratosis; ISIC 2019 files 177
#   of the HAM akiec pictures here as SCC, and those become squamous cell carcinoma (the
#   seed set had filed them under SCC too). Both are "refer" classes, so the referral
#   verdict does not depend on the choice.
# - bkl mixes seborrheic keratosis, solar lentigo and lichen-planus-like keratosis,
#   which HAM does not tell apart; it maps to pigmented benign keratosis, the class that
#   holds all three in ISIC 2019. "Seborrheic keratosis" keeps ISIC 2017 (and the seed
#   set) as its only source, so the model's seborrheic/pigmented benign keratosis line
#   is learnt from fewer pictures than the rest and the two are often confused.
# - A seed picture whose folder disagrees with HAM's code takes the official answer
#   (the seed had filed HAM akiec pictures under actinic keratosis, SCC and nevus).
HAM10000_CODES: dict[str, str] = {
    "akiec": "actinic keratosis",
    "bcc": "basal cell carcinoma",
    "bkl": "pigmented benign keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "nevus",
    "vasc": "vascular lesion",
}

# Official labels that cannot tell a more specific folder label apart: ISIC 2019 and
# HAM10000 file seborrheic keratosis under BKL, so a BKL answer does not contradict
# a "seborrheic keratosis" folder.
COMPATIBLE_REFINEMENTS: dict[str, frozenset[str]] = {
    "pigmented benign keratosis": frozenset({"seborrheic keratosis"}),
}


def is_malignant(class_name: str) -> bool:
    """True for the malignant or pre-malignant classes."""
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown class name: {class_name!r}")
    return class_name in MALIGNANT_CLASSES


def class_index(class_name: str) -> int:
    """Position of a class in the model's output vector."""
    return CLASS_NAMES.index(class_name)


def labels_agree(folder_label: str, official_label: str) -> bool:
    """Whether a folder label is consistent with an official one."""
    if folder_label == official_label:
        return True
    return folder_label in COMPATIBLE_REFINEMENTS.get(official_label, frozenset())


# Plain-language name and one-line description of each class, for people who are not
# dermatologists (patients, students) reading the app.
CLASS_INFO: dict[str, tuple[str, str]] = {
    "actinic keratosis": (
        "Actinic keratosis (sun damage)",
        "Rough, scaly patch from long sun exposure; pre-cancerous, can turn into squamous cell carcinoma.",
    ),
    "basal cell carcinoma": (
        "Basal cell carcinoma",
        "The most common skin cancer; grows slowly and rarely spreads, but needs treatment.",
    ),
    "dermatofibroma": (
        "Dermatofibroma",
        "Harmless firm bump, often on the legs; dimples when pinched.",
    ),
    "melanoma": (
        "Melanoma",
        "Cancer of pigment cells; can spread early, so suspicious moles need prompt review.",
    ),
    "nevus": ("Mole (melanocytic nevus)", "A common benign mole."),
    "pigmented benign keratosis": (
        "Benign keratosis (pigmented)",
        "Harmless growth such as solar lentigo or lichen-planus-like keratosis.",
    ),
    "seborrheic keratosis": (
        "Seborrheic keratosis",
        "Harmless 'stuck-on' warty growth, very common with age.",
    ),
    "squamous cell carcinoma": (
        "Squamous cell carcinoma",
        "Skin cancer of the outer layer; can spread if not treated.",
    ),
    "vascular lesion": (
        "Vascular lesion",
        "Benign blood-vessel growth such as a cherry angioma or angiokeratoma.",
    ),
}


def plain_name(class_name: str) -> str:
    """The class's name for readers who are not dermatologists."""
    return CLASS_INFO[class_name][0]
