"""Speed benchmark of a model artifact: load time, single-image latency, folder
throughput (decoding included), Grad-CAM latency and peak memory. Medians of
several runs, because shared CPU machines are noisy."""

from __future__ import annotations

import functools
import io
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def machine_gflops(n: int = 512, repeats: int = 20) -> float:
    """This machine's speed right now: GFLOP/s of TensorFlow multiplying two n x n
    float32 matrices (median of ``repeats``). A shared CPU machine can run the same
    model several times slower on some days than on others; quoting this beside the
    latencies says which kind of day they come from."""
    import tensorflow as tf

    a = tf.random.stateless_uniform((n, n), seed=(1, 2))
    b = tf.random.stateless_uniform((n, n), seed=(3, 4))
    tf.linalg.matmul(a, b).numpy()  # warm-up
    seconds = statistics.median(_timed(lambda: tf.linalg.matmul(a, b).numpy(), repeats))
    return round(2 * n**3 / seconds / 1e9, 1)


def _synthetic_jpegs(folder: Path, n: int, size: int = 180) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC).save(buf, format="JPEG")
        (folder / f"img_{i:04d}.jpg").write_bytes(buf.getvalue())


def _tflite_figures(artifact, tflite, tmp: Path, x: np.ndarray, files, repeats: int) -> dict[str, Any]:
    from .export import export_model, load_exported
    from .file_predictions import predict_files

    path = Path(tflite) if tflite else export_model(artifact, tmp / "model.tflite", "tflite", tta=False)
    load_s = statistics.median(_timed(lambda: load_exported(path), 3))
    exported = load_exported(path)
    exported.warm_up()
    ms = np.array(_timed(lambda: exported.predict_arrays(x), repeats)) * 1000
    seconds = statistics.median(_timed(lambda: predict_files(exported, files, progress=False), 3))
    return {
        "tflite_file": path.name if tflite else "float32 export of the model, single view",
        "tflite_quantization": exported.manifest["quantization"],
        "tflite_tta": exported.tta,
        "tflite_load_s": round(load_s, 4),
        "tflite_latency_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "tflite_latency_ms_p95": round(float(np.percentile(ms, 95)), 2),
        "tflite_throughput_images_per_s": round(len(files) / seconds, 1),
    }


def _diagnose_with_heat(predictor, check, x: np.ndarray) -> np.ndarray:
    """Probabilities, the reliability verdict (when the model has a check) and the
    upsampled Grad-CAM map of one image, from the predictor's explaining pass."""
    from .explain import heat_from_cam
    from .inference import check_from_outputs

    _, single, cams, features = predictor.predict_explained(x)
    if check is not None:
        check_from_outputs(predictor, check, x, single, features)
    return heat_from_cam(cams[0], predictor.input_size)


def _part_figures(bundle, x: np.ndarray, repeats: int) -> dict[str, Any]:
    """The similar-case lookup and the explainer's Grad-CAM and fast SmoothGrad (the
    page's first map), each on its own."""
    out: dict[str, Any] = {}
    cases = bundle.cases
    if cases is not None:  # the similar training lesions of one picture, from its pooled features
        pooled = np.random.default_rng(2).random((1, cases.features.shape[1])).astype(np.float32)
        cases.nearest(pooled)
        out["similar_cases_ms_p50"] = round(statistics.median(_timed(lambda: cases.nearest(pooled), repeats)) * 1000, 2)
    explainer = bundle.explainer
    explainer.explain(x[0], "gradcam", target=0)
    out["gradcam_ms_p50"] = round(
        statistics.median(_timed(lambda: explainer.explain(x[0], "gradcam", 0), repeats)) * 1000, 2
    )
    explainer.explain(x[0], "smoothgrad", target=0)
    out["smoothgrad_ms_p50"] = round(
        statistics.median(_timed(lambda: explainer.explain(x[0], "smoothgrad", 0), repeats)) * 1000, 2
    )
    return out


def _lesion_picture_bytes(width: int = 600, height: int = 450) -> bytes:
    """A JPEG of a brown blob on skin tone at a camera's 4:3 size: what a clinician uploads."""
    yy, xx = np.mgrid[:height, :width]
    blob = ((xx - width / 2) / (width / 5)) ** 2 + ((yy - height / 2) / (height / 4)) ** 2 < 1
    picture = np.where(blob[..., None], np.array([110, 70, 50]), np.array([225, 180, 160])).astype(np.uint8)
    noise = np.random.default_rng(3).integers(-12, 13, picture.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(picture + noise, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def full_analysis_figures(model_dir, repeats: int) -> dict[str, Any]:
    """What the Diagnose page computes for one new picture, warm, in the order it
    computes it: the diagnosis with its Grad-CAM map, the map's evidence check, the
    differential and similar cases (the analysis), the lesion outline, and the
    stability check (run whether or not the drawn picture passes as a lesion).
    ``full_analysis_ms_p50`` is the median of their sum per picture, the figure the
    page's 300 ms budget is about."""
    from .analysis import analyse_picture, stability_reader
    from .bundle import load_bundle
    from .images import load_image
    from .robustness import stability_check

    bundle = load_bundle(model_dir, explain=True, warm_up=True, segment=True)
    loaded = load_image(_lesion_picture_bytes())
    parts: dict[str, list[float]] = {"analysis": [], "outline": [], "stability": [], "full_analysis": []}
    for k in range(repeats + 1):  # the first round traces what warm-up did not
        start = time.perf_counter()
        analysis = analyse_picture(bundle, loaded)
        analysed = time.perf_counter()
        if bundle.segmenter is not None:
            bundle.segmenter.segment(loaded.image)
        outlined = time.perf_counter()
        # what check_stability runs for a lesion (a drawn blob may be refused as one, which skips it)
        stability_check(stability_reader(bundle.predictor), analysis.result.model_input, analysis.result.probs)
        done = time.perf_counter()
        if k:
            for name, seconds in zip(
                parts, (analysed - start, outlined - analysed, done - outlined, done - start), strict=True
            ):
                parts[name].append(seconds)
    out = {f"{name}_ms_p50": round(statistics.median(times) * 1000, 2) for name, times in parts.items()}
    out["full_analysis_note"] = "one 600x450 JPEG as the Diagnose page analyses it" + (
        "" if bundle.segmenter is not None else " (no segmenter installed: no outline)"
    )
    return out


def _folder_figures(artifact, x: np.ndarray, folder_images: int, tflite, repeats: int) -> dict[str, Any]:
    """``predict``'s throughput on a folder of synthetic JPEGs (decoding included), and
    the TFLite export's figures on the same files."""
    from .file_predictions import iter_input_files, predict_files
    from .inference import Predictor

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "images").mkdir()
        _synthetic_jpegs(Path(tmp) / "images", folder_images)
        files = iter_input_files([Path(tmp) / "images"])
        plain = Predictor.from_artifact(artifact, tta=False)
        plain.predict_arrays(x)
        seconds = statistics.median(_timed(lambda: predict_files(plain, files, progress=False), 3))
        out["throughput_images_per_s"] = round(folder_images / seconds, 1)
        out["throughput_note"] = f"{folder_images} synthetic 180x180 JPEGs from disk, decoding included, no TTA"
        # the same folder through the 8 test-time views (what `predict` runs for a model
        # evaluated with them, as the shipped one is, or with --tta)
        with_views = Predictor.from_artifact(artifact, tta=True)
        with_views.predict_arrays(x)
        seconds = _timed(lambda: predict_files(with_views, files, progress=False), 1)[0]
        out["throughput_tta_images_per_s"] = round(folder_images / seconds, 1)
        out.update(_tflite_figures(artifact, tflite, Path(tmp), x, files, repeats))
    return out


def run_benchmark(
    model_dir: str | Path | None = None,
    repeats: int = 30,
    folder_images: int = 300,
    tflite: str | Path | None = None,
) -> dict[str, Any]:
    """All figures for one model, as a JSON-ready dict; the ``tflite_*`` figures are for
    ``tflite`` (an export), or for a float32 single-view TFLite export made on the fly."""
    from .analysis import stability_reader
    from .bundle import load_bundle
    from .explain import evidence_check
    from .inference import Predictor, predict_and_check
    from .robustness import stability_check

    machine_before = machine_gflops()
    # the model as the app and the commands load it (checksums verified, reliability
    # check, case index, explainer); the passes timed below are variants built from it
    load_times = _timed(lambda: load_bundle(model_dir, explain=True), 3)
    bundle = load_bundle(model_dir, explain=True)
    artifact = bundle.artifact
    size = artifact.input_size
    x = np.random.default_rng(1).integers(0, 256, (1, size, size, 3)).astype(np.uint8)
    results: dict[str, Any] = {
        "model": artifact.name,
        "input_size": size,
        "load_s": round(statistics.median(load_times), 3),
        "machine_gflops_start": machine_before,
    }
    check = bundle.reliability
    for label, tta in (("", False), ("_tta", True)):
        if tta and not artifact.manifest.get("tta"):
            continue
        predictor = Predictor.from_artifact(artifact, tta=tta)
        predictor.predict_arrays(x)  # trace the plain pass (warm_up traces the one with features)
        ms = np.array(_timed(lambda p=predictor: p.predict_arrays(x), repeats)) * 1000
        results[f"latency_ms_p50{label}"] = round(float(np.percentile(ms, 50)), 2)
        results[f"latency_ms_p95{label}"] = round(float(np.percentile(ms, 95)), 2)
        if not tta:  # the same pass with its weights frozen into constants (not what the app runs)
            frozen = Predictor.from_artifact(artifact, tta=False, freeze=True)
            results["freeze_s"] = round(_timed(lambda p=frozen: p.predict_arrays(x), 1)[0], 3)
            ms = np.array(_timed(lambda p=frozen: p.predict_arrays(x), repeats)) * 1000
            results["latency_ms_p50_frozen"] = round(float(np.percentile(ms, 50)), 2)
            del frozen
        if check is not None:  # what the app and `predict` run: probabilities plus the reliability check
            predictor.warm_up()
            ms = np.array(_timed(lambda p=predictor, c=check: predict_and_check(p, x, c), repeats)) * 1000
            results[f"checked_latency_ms_p50{label}"] = round(float(np.percentile(ms, 50)), 2)
        # what the app runs per upload: prediction, reliability check and the Grad-CAM
        # heat map from one model call
        explaining = Predictor.from_artifact(artifact, tta=tta, explain=True)
        explaining.warm_up()
        ms = np.array(_timed(lambda p=explaining, c=check: _diagnose_with_heat(p, c, x), repeats)) * 1000
        results[f"diagnosis_with_gradcam_ms_p50{label}"] = round(float(np.percentile(ms, 50)), 2)
        # the app's check of that map on its own picture (two blurred pictures, one call)
        check_map = functools.partial(
            evidence_check,
            explaining.predict_arrays,
            x[0],
            _diagnose_with_heat(explaining, check, x),
            0,
            probs=explaining.predict_arrays(x)[0],
        )
        ms = np.array(_timed(check_map, repeats)) * 1000
        results[f"evidence_check_ms_p50{label}"] = round(float(np.percentile(ms, 50)), 2)
        # the app's stability check: the picture under 9 small changes, one call (with
        # TTA through the check's own views, as the page reads them)
        probs = explaining.predict_arrays(x)[0]
        steady = functools.partial(stability_check, stability_reader(explaining), x[0], probs)
        ms = np.array(_timed(steady, repeats)) * 1000
        results[f"stability_check_ms_p50{label}"] = round(float(np.percentile(ms, 50)), 2)
    results.update(_part_figures(bundle, x, repeats))
    results.update(full_analysis_figures(model_dir, max(3, repeats // 3)))
    results.update(_folder_figures(artifact, x, folder_images, tflite, repeats))
    results["machine_gflops_end"] = machine_gflops()
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results
