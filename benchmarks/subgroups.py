"""Does the model do as well for every patient? Its held-out figures by sex, age band,
body site and how the diagnosis was confirmed, for the pictures HAM10000's metadata
describes (``skin_model.subgroups``).

No model run: the probabilities come from the model's own ``evaluation.json``, aligned
with the rebuilt split after checking that the data fingerprint and the labels match.
Writes ``subgroups.json`` beside the model (shown on the Model card).

    SKIN_DATA_DIR=... python benchmarks/subgroups.py [--model DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_model.artifact import default_model_dir, read_evaluation, read_manifest, write_json
from skin_model.evaluation import stored_split_scores
from skin_model.manifest import build_manifest
from skin_model.sources import find_official_label_files, resolve_data_dir
from skin_model.subgroups import ATTRIBUTES, SUBGROUPS_FILE, patient_groups, read_patient_metadata, subgroup_report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: the default model)")
    parser.add_argument("--data", help="data root (default: $SKIN_DATA_DIR)")
    parser.add_argument(
        "--json", type=Path, help=f"where to write the report (default: {SUBGROUPS_FILE} beside the model)"
    )
    args = parser.parse_args()

    model_dir = args.model or default_model_dir()
    model_manifest, evaluation = read_manifest(model_dir), read_evaluation(model_dir)
    data_dir = resolve_data_dir(args.data)
    metadata_file = find_official_label_files(data_dir).ham10000
    if evaluation is None or metadata_file is None:
        print("needs the model's evaluation.json and HAM10000_metadata.csv under the data root", file=sys.stderr)
        return 2
    table = build_manifest(data_dir, progress=False).table
    metadata = read_patient_metadata(metadata_file)
    threshold = float(model_manifest["malignant_threshold"])
    report = {"model": model_dir.name, "malignant_threshold": threshold, "metadata": metadata_file.name, "splits": {}}
    for split in ("val", "test"):
        try:
            rows, y, probs = stored_split_scores(table, evaluation, split, model_manifest.get("data_fingerprint"))
        except ValueError as exc:
            print(f"{split}: {exc}; refusing", file=sys.stderr)
            return 2
        groups = patient_groups(rows["isic_id"].tolist(), metadata)
        result = subgroup_report(y, probs, groups, threshold)
        report["splits"][split] = result
        print(
            f"\n{model_dir.name}, {split}: {result['described']} of {result['images']} pictures described "
            f"(classes {', '.join(result['classes_described'])}; none of {', '.join(result['classes_not_described'])})"
        )
        print(f"{'group':34s} {'images':>6s} {'mal.':>5s} {'bal.acc':>7s} {'mal.AUC':>7s} {'sens.':>6s} {'spec.':>6s}")
        for attribute, title in ATTRIBUTES.items():
            for name, r in result["attributes"].get(attribute, {}).items():
                auc = "-" if r["malignant_auc"] is None else f"{r['malignant_auc']:.3f}"
                sens = "-" if r["malignant_sensitivity"] is None else f"{r['malignant_sensitivity']:.0%}"
                spec = "-" if r["malignant_specificity"] is None else f"{r['malignant_specificity']:.0%}"
                label = f"{title}: {name}" + (" (few)" if r["small"] else "")
                print(
                    f"{label:34s} {r['n_images']:6d} {r['malignant_images']:5d} {r['balanced_accuracy']:7.3f} "
                    f"{auc:>7s} {sens:>6s} {spec:>6s}"
                )
    out = args.json or model_dir / SUBGROUPS_FILE
    write_json(out, report)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
