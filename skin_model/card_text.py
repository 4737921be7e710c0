"""The model card's sentences about how a model was trained and on what, written from
its manifest (so the card of every shipped model says what is true of that model)."""

from __future__ import annotations

from typing import Any

from .sources import COLLECTION_TITLES

LICENCES = (
    "Licences: ISIC archive images are CC-BY-NC (some CC-0), © the International Skin Imaging Collaboration. "
    "HAM10000: Tschandl P., Rosendahl C., Kittler H., *The HAM10000 dataset, a large collection of multi-source "
    "dermatoscopic images of common pigmented skin lesions*, Sci. Data 5, 180161 (2018), CC-BY-NC 4.0 (pictures "
    "and lesion masks). ISIC 2017: Codella N. et al., *Skin lesion analysis toward melanoma detection*, ISBI 2018. "
    "Images are not redistributed."
)
HAM_MAPPING = (
    "HAM10000's codes map to the nine classes as follows: akiec → actinic keratosis (HAM's akiec also covers "
    "intraepithelial carcinoma; where ISIC 2019 files such a picture as squamous cell carcinoma, that finer answer "
    "wins), bkl → pigmented benign keratosis (HAM does not tell seborrheic keratosis, solar lentigo and "
    "lichen-planus-like keratosis apart, so seborrheic keratosis is learnt from ISIC 2017 and the seed set "
    "only), bcc, df, mel, nv, vasc → their classes. A seed picture whose folder disagrees takes the official label."
)


def training_recipe(config: dict[str, Any]) -> str:
    """The loss and augmentation of a run, in words, from its ``training_config``."""
    if config.get("logit_adjustment"):
        loss = f"logit-adjusted loss (τ = {config['logit_adjustment']})"
    elif not config.get("class_balanced", True):
        loss = "unweighted loss"
    else:
        power = config.get("class_weight_power", 1.0)
        loss = "class-balanced loss" if power == 1.0 else f"class weights ∝ 1 / count^{power:g}"
        if config.get("source_balanced"):
            loss += ", shared equally between collections"
    parts = [loss, "label smoothing", "flips, rotations, zoom and colour jitter"]
    if config.get("aspect"):
        parts.append(f"crops stretched by up to {1 + config['aspect']:.2f}× either way")
    if config.get("camera"):
        parts.append(
            f"camera changes on {config['camera']:.0%} of pictures (exposure, white balance, 50-100 % resolution, "
            "JPEG quality 30-95)"
        )
    if config.get("field"):
        parts.append(f"another dermoscope's round field of view on {config['field']:.0%}")
    if config.get("jpeg"):
        parts.append(f"JPEG re-compression on {config['jpeg']:.0%}")
    if config.get("low_res"):
        parts.append(f"lower-resolution passes on {config['low_res']:.0%}")
    if config.get("lesion_focus"):
        parts.append(
            f"a penalty ({config['lesion_focus']:g}×) on the share of the class activation map outside the expert "
            "lesion mask (HAM10000's pictures), so the evidence comes from the lesion"
            + (f", except for {config['lesion_focus_exempt']}" if config.get("lesion_focus_exempt") else "")
        )
    if config.get("nevus_recall_floor"):
        parts.append(f"weighting and epoch chosen to keep validation nevus recall ≥ {config['nevus_recall_floor']:g}")
    schedule = "cosine learning-rate schedule"
    if config.get("init_from"):
        start = str(config["init_from"]).rstrip("/").split("/")[-1]
        rates = (
            f", each block {config['layer_decay']:g}× the rate of the one above" if config.get("layer_decay") else ""
        )
        schedule = f"a further cosine schedule, fine-tuned from {start} (from {config.get('unfreeze_from')} up{rates})"
    return "; ".join(parts) + "; " + schedule


TTA_VIEW_WORDS = {
    "dihedral": "the 8 flips and quarter turns of the picture",
    "turns_and_centre": "the 4 quarter turns of the picture and of its central 80 % (which leaves out the rim: a "
    "dermoscope's dark round field, rulers, vignetting)",
}


def training_time_text(manifest: dict[str, Any], earlier: list[dict[str, Any]]) -> str:
    """How long the model took to train on 2 CPU cores. A model fine-tuned from another
    (``earlier``: the manifests of the runs it continued, nearest first) cost its own
    run and every run before it, so the sentence gives both."""
    own = manifest.get("training_wall_time_s", 0) / 60
    text = (
        f"Trained in {own:.1f} min on 2 CPU cores, {manifest.get('epochs_run')} epochs "
        f"(best {manifest.get('best_epoch')} by validation balanced accuracy)"
    )
    if not earlier:
        return text
    total = own + sum(m.get("training_wall_time_s", 0) for m in earlier) / 60
    names = ", ".join(str(m.get("name")) for m in earlier)
    runs = "run" if len(earlier) == 1 else "runs"
    return f"{text}, continuing {len(earlier)} earlier {runs} ({names}): {total:.1f} min of training in all"


def test_time_views_text(manifest: dict[str, Any]) -> str | None:
    """How the model reads a picture at test time, in words (None for a single view)."""
    if not manifest.get("tta"):
        return None
    views = manifest.get("tta_views", "dihedral")
    return (
        f"Each answer averages 8 views, {TTA_VIEW_WORDS.get(views, views)}; the heat map, the reliability check "
        "and the similar cases read the picture itself."
    )


def training_data_text(manifest: dict[str, Any], sizes_sentence: str) -> str:
    """The card's "Training data" paragraph: the collections the model learnt from
    (with their training pictures when recorded), the cleaning, the label mapping."""
    collections = manifest.get("training_collections")
    if collections:
        named = ", ".join(
            f"**{COLLECTION_TITLES.get(c, c)}** ({n:,} training pictures)" for c, n in sorted(collections.items())
        )
        source = f"- {named}, cleaned by the project's audit"
    else:
        source = (
            "- *Skin cancer ISIC The International Skin Imaging Collaboration* (Kaggle copy of ISIC archive images, "
            "180×180) and the official **ISIC 2017** challenge training set, cleaned by the project's audit"
        )
    lines = [
        source + ": byte-identical and near-duplicate copies removed, label conflicts resolved with the official "
        "ground truth or dropped, leaked Test images removed.",
        "- Labels cross-checked with ISIC 2019, ISIC 2017, HAM10000 and ISBI 2016 ground truth.",
        *([f"- {HAM_MAPPING}"] if collections and "ham10000" in collections else []),
        f"- {sizes_sentence} Train, validation and test never share a picture or a lesion, across collections.",
        f"- {LICENCES}",
    ]
    return "\n".join(lines)


FIGURES_START = "<!-- figures:start (written by tools/readme_figures.py from the shipped files; do not edit) -->"
FIGURES_END = "<!-- figures:end -->"


def _interval(values: list[float] | None) -> str:
    return f" ({values[0]:.2f}-{values[1]:.2f})" if values else ""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def figures_markdown(
    manifest: dict[str, Any],
    evaluation: dict[str, Any],
    audit: dict[str, Any] | None,
    loco: dict[str, Any] | None,
    trust: dict[str, Any] | None = None,
    heat: dict[str, Any] | None = None,
    collection_transfer: dict[str, Any] | None = None,
    segmentation: dict[str, Any] | None = None,
) -> str:
    """The README's "current figures" block, from the default model's manifest and
    evaluation, the audit's test split, the leave-one-collection-out benchmarks, and the
    model's trust-transfer and heat-map reports, so that the README cannot drift from
    what ships."""
    from .classes import CLASS_NAMES

    lines = [
        FIGURES_START,
        f"Model **{manifest['name']}** (`{manifest['architecture']}`, {manifest['input_size']} px, "
        f"{manifest.get('split_sizes', {}).get('train', 0):,} training pictures). Every figure is on pictures the "
        "model never trained on; 95 % bootstrap intervals in brackets. Validation chose the epoch, the class "
        "weighting and the thresholds; test is only reported.",
        "",
        "| split | pictures | accuracy | balanced accuracy | macro AUC | malignant AUC | referral sensitivity / "
        "specificity | nevus recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, title in (("val", "validation"), ("test", "test")):
        e = evaluation.get(split)
        if not e:
            continue
        ci = e.get("bootstrap_95ci") or {}
        lines.append(
            f"| {title} | {e['n_images']:,} | {e['accuracy']:.3f} | {e['balanced_accuracy']:.3f}"
            f"{_interval(ci.get('balanced_accuracy'))} | {e['macro_auc']:.3f} | {e['malignant']['roc_auc']:.3f} | "
            f"{_pct(e['malignant']['sensitivity'])} / {_pct(e['malignant']['specificity'])} | "
            f"{e['per_class']['nevus']['recall']:.2f} |"
        )
    test = evaluation.get("test", {})
    if test.get("by_collection"):
        rule = manifest.get("referral_rule", "pooled")
        lines += ["", f"Test split by collection (at the shipped referral threshold, the {rule} rule):", ""]
        lines += ["| collection | pictures | accuracy | balanced accuracy | malignant AUC | referral sens. / spec. |"]
        lines += ["|---|---|---|---|---|---|"]
        for name, g in test["by_collection"].items():
            auc = "–" if g.get("malignant_auc") is None else f"{g['malignant_auc']:.3f}"
            lines.append(
                f"| {COLLECTION_TITLES.get(name, name)} | {g['n_images']:,} | {g['accuracy']:.3f} | "
                f"{g['balanced_accuracy']:.3f} | {auc} | {_pct(g.get('malignant_sensitivity'))} / "
                f"{_pct(g.get('malignant_specificity'))} |"
            )
    if test.get("per_class"):
        lines += [
            "",
            "Test recall per class: "
            + ", ".join(
                f"{name} {test['per_class'][name]['recall']:.2f} ({test['per_class'][name]['support']})"
                for name in CLASS_NAMES
                if test["per_class"][name]["recall"] is not None
            )
            + ".",
        ]
    splits = ((audit or {}).get("collections") or {}).get("splits", {}).get("test")
    if splits:
        names = sorted(splits)
        lines += ["", "The test split, per class and collection:", ""]
        lines += ["| class | " + " | ".join(COLLECTION_TITLES.get(c, c) for c in names) + " | total |"]
        lines += ["|---|" + "---|" * (len(names) + 1)]
        for label in CLASS_NAMES:
            counts = [splits[c].get(label, 0) for c in names]
            lines.append(f"| {label} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")
    if collection_transfer:
        lines += ["", collection_transfer_sentence(collection_transfer)]
    if loco:
        lines += ["", _loco_sentence(loco)]
    lines += _trust_lines(manifest, trust, heat)
    if segmentation:
        lines += ["", segmentation_sentence(segmentation)]
    lines.append(FIGURES_END)
    return "\n".join(lines)


def _trust_lines(manifest: dict[str, Any], trust: dict[str, Any] | None, heat: dict[str, Any] | None) -> list[str]:
    """Referral threshold and refusals leaving one collection out, and the heat maps
    against the lesion masks, one paragraph each (empty without the reports)."""
    from .explain import METHOD_LABELS

    lines: list[str] = []
    if trust:
        rule = trust["referral"]["rules"].get(manifest.get("referral_rule", "pooled"))
        if rule:
            held = ", ".join(
                f"{COLLECTION_TITLES.get(c, c)} {_pct(f['sensitivity'])} / {_pct(f['specificity'])}"
                for c, f in rule["leave_one_collection_out"].items()
            )
            lines += ["", f"Referral threshold refitted without each collection, on its test pictures: {held}."]
        shipped = trust["ood"][0]
        within = ", ".join(
            f"{COLLECTION_TITLES.get(c, c)} {r['rate']:.1%}" for c, r in shipped["within_collection"].items()
        )
        held = ", ".join(
            f"{COLLECTION_TITLES.get(c, c)} {r['rate']:.1%}" for c, r in shipped["leave_one_collection_out"].items()
        )
        bench = next(iter(shipped["other"].values()))
        lines += [
            "",
            f"Refused as not a lesion: test lesions {within}; fitted without the collection, {held} of its lesions; "
            f"{bench['refused']} of {bench['n']} non-lesion pictures (`benchmarks/trust_transfer.py`).",
        ]
    if heat:
        maps = heat["maps"]
        parts = [
            f"{name} {maps[name]['pointing_game']:.0%} (heat inside {maps[name]['heat_inside_lesion']:.0%})"
            for name in (METHOD_LABELS["gradcam"], METHOD_LABELS["smoothgrad"])
            if name in maps
        ]
        randomised = [name for name in maps if "randomised" in name]
        check = "; with the top layers randomised: " + ", ".join(
            f"{name.split(',')[0]} {maps[name]['pointing_game']:.0%}" for name in randomised
        )
        share = next(iter(maps.values()))["lesion_share"]
        lines += [
            "",
            f"Heat maps, hottest point inside the expert lesion mask on the test split's HAM10000 pictures "
            f"(lesions cover {share:.0%} of a picture): {'; '.join(parts)}{check if randomised else ''}.",
        ]
    return lines


def segmentation_sentence(report: dict[str, Any]) -> str:
    """The shipped segmenter's overlap with the expert masks (``benchmarks/segmentation.py``)."""
    overlap = report["overlap"]
    stored = overlap["as stored"]
    others = "; ".join(
        f"{name}: Dice {f['dice']:.3f}, Jaccard {f['jaccard']:.3f}"
        for name, f in overlap.items()
        if name != "as stored"
    )
    timing = report.get("outline_time", {}).get("median_ms")
    return (
        f"Lesion outline (segmenter `{report['segmenter']}`, {stored['pictures']:,} test pictures of HAM10000 with "
        f"expert masks, at each picture's size): Dice {stored['dice']:.3f}{_interval(stored['dice_95ci'])}, Jaccard "
        f"{stored['jaccard']:.3f}{_interval(stored['jaccard_95ci'])}, thresholded Jaccard "
        f"{stored['thresholded_jaccard']:.3f}; saved again, {others}"
        + (f"; {timing:.0f} ms per picture." if timing is not None else ".")
    )


def collection_transfer_sentence(report: dict[str, Any]) -> str:
    """The fine-tuned recipe trained without a collection and measured on it
    (``benchmarks/transfer.py``), in one paragraph."""
    parts = []
    for collection, row in report["collections"].items():
        seen, held = row["in_collection"], row["held_out"]
        parts.append(
            f"{COLLECTION_TITLES.get(collection, collection)} ({seen['n_images']} test pictures): malignant AUC "
            f"{held['malignant_auc']:.2f} trained without it against {seen['malignant_auc']:.2f} with it, balanced "
            f"accuracy {held['balanced_accuracy']:.2f} against {seen['balanced_accuracy']:.2f}, referral "
            f"{_pct(held['malignant_sensitivity'])} / {_pct(held['malignant_specificity'])} against "
            f"{_pct(seen['malignant_sensitivity'])} / {_pct(seen['malignant_specificity'])}"
        )
    return (
        "A new clinic's camera, estimated by leaving a collection out (`benchmarks/transfer.py`: the training "
        "recipe on a shorter schedule, fine-tuned on the other two collections and given its threshold on their "
        "validation pictures, measured on the left-out collection's test pictures beside the shipped model): "
        + "; ".join(parts)
        + "."
    )


def _loco_sentence(loco: dict[str, Any]) -> str:
    """Leave-one-collection-out, in one paragraph (see benchmarks/leave_one_collection_out.py)."""
    parts = []
    for recipe, results in loco.get("recipes", {}).items():
        cells = ", ".join(
            f"{COLLECTION_TITLES.get(c, c)} {r['left out']['balanced_accuracy']:.2f} "
            f"(seen: {r['seen']['balanced_accuracy']:.2f})"
            for c, r in results.items()
        )
        parts.append(f"*{recipe}*: {cells}")
    return (
        "Leave one collection out (`benchmarks/leave_one_collection_out.py`: a head on the frozen ImageNet "
        "backbone's features, not the fine-tuned model, trained without the collection and measured on its "
        "held-out pictures; balanced accuracy, with the collection seen in brackets): " + "; ".join(parts) + "."
    )


def referral_caveat(manifest: dict[str, Any], transfer: dict[str, Any] | None) -> str | None:
    """What a clinician should know about the referral threshold on pictures from another
    camera, in words: how the threshold was chosen, where on the test pictures it held
    the sensitivity target and where not, and the lowest sensitivity it kept on a
    collection it was fitted without (``benchmarks/trust_transfer.py``). None without
    that measurement."""
    if not transfer:
        return None
    referral = transfer["referral"]
    rule = manifest.get("referral_rule", "pooled")
    figures = referral["rules"].get(rule)
    if figures is None:
        return None
    target = referral["target_sensitivity"]
    chosen = (
        f"every image collection's validation pictures reach {target:.0%} sensitivity at it"
        if rule == "weakest-collection"
        else f"the pooled validation pictures reach {target:.0%} sensitivity at it"
    )
    text = f"The referral threshold ({manifest['malignant_threshold']:.1%} malignant risk) was chosen so that {chosen}."
    within = figures["test_by_collection"]
    short = {c: f for c, f in within.items() if f["sensitivity"] is not None and f["sensitivity"] < target}
    if short:
        parts = [
            f"{round(f['sensitivity'] * f['malignant'])} of {f['malignant']} malignant lesions in pictures like "
            f"{COLLECTION_TITLES.get(c, c)}'s"
            for c, f in short.items()
        ]
        text += f" On test pictures it caught only {'; '.join(parts)}."
    else:
        text += f" On test pictures it caught at least {target:.0%} of malignant lesions in every collection."
    held_out = figures["leave_one_collection_out"]
    weakest = min(held_out, key=lambda c: held_out[c]["sensitivity"] if held_out[c]["sensitivity"] is not None else 1)
    text += (
        f" Fitted without one collection, it caught as few as {held_out[weakest]['sensitivity']:.0%} of the "
        f"malignant lesions of the collection left out ({COLLECTION_TITLES.get(weakest, weakest)}), so on a camera "
        "this model has never seen it may miss more than its figures say: refer a lesion that worries you "
        "whatever the risk reads."
    )
    return text
