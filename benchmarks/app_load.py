"""Ten clinicians at once: the app under concurrent sessions in a real browser.

    python benchmarks/app_load.py [--sessions 1 5 10] [--timeout 180] [--pictures DIR] [--first-after S]
                                  [--json results/app_load.json]

Starts ``streamlit run app.py`` on a free loopback port (nothing leaves the machine), then
for each N opens N headless Chromium pages at the same moment (Playwright, Debian's
chromium); each opens the app, uploads its own picture and waits for the verdict and the
heat map. Printed per N: page-ready latency (the uploader is on the page) and result
latency (upload to verdict and heat map), median and 95th percentile, the time until the
stability check that follows the answer is on the page too, sessions that got
no answer in ``--timeout`` seconds, and exceptions shown by the app or thrown in the
page. The first round starts right after the server is healthy (or ``--first-after``
seconds later, as a first user who comes once the server has been up a while), so its
first result also says how long the first picture after a server start takes. A
matrix-product reference from the same run says what kind of day the machine had. Needs
Debian's chromium and playwright (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.streamlit_server import CHROME_FLAGS, CHROMIUM, running_app  # noqa: E402
from tests.synthetic import jpeg_bytes, lesion_like  # noqa: E402

UPLOADER = '[data-testid="stFileUploader"] input[type="file"]'
CHECKED = re.compile("small changes of the photo|not a dermoscopic lesion")


async def one_session(browser, url: str, picture: Path, timeout_s: float) -> dict:
    """Open the app, upload ``picture``, wait for the verdict and the heat map."""
    context = await browser.new_context(viewport={"width": 1400, "height": 2000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    result: dict = {"page_ready_s": None, "result_s": None, "checks_s": None, "errors": errors}
    timeout_ms = timeout_s * 1000
    try:
        start = time.perf_counter()
        await page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
        await page.locator(UPLOADER).wait_for(state="attached", timeout=timeout_ms)
        result["page_ready_s"] = time.perf_counter() - start
        start = time.perf_counter()
        await page.locator(UPLOADER).set_input_files(str(picture))
        await page.get_by_text("Top 3").first.wait_for(timeout=timeout_ms)
        await page.locator('[data-testid="stImage"] img').nth(1).wait_for(timeout=timeout_ms)
        result["result_s"] = time.perf_counter() - start
        # the stability check follows the answer on the page (queued behind other answers)
        # (a picture refused as not a lesion gets no stability check: its refusal stands for it)
        await page.get_by_text(CHECKED).first.wait_for(timeout=timeout_ms)
        result["checks_s"] = time.perf_counter() - start
        shown = await page.locator('[data-testid="stException"]').count()
        if shown:
            errors.append(f"{shown} exception(s) shown by the app")
    except Exception as exc:  # a session that times out or fails is counted, not fatal
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        await context.close()
    return result


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile, as one of the measured values (nearest rank)."""
    return float(np.percentile(values, q, method="nearest")) if values else None


def summary(results: list[dict]) -> dict:
    ready = [r["page_ready_s"] for r in results if r["page_ready_s"] is not None]
    answered = [r["result_s"] for r in results if r["result_s"] is not None]
    checked = [r["checks_s"] for r in results if r["checks_s"] is not None]
    return {
        "sessions": len(results),
        "answered": len(answered),
        "page_ready_s_median": round(statistics.median(ready), 2) if ready else None,
        "page_ready_s_p95": round(percentile(ready, 95), 2) if ready else None,
        "result_s_median": round(statistics.median(answered), 2) if answered else None,
        "result_s_p95": round(percentile(answered, 95), 2) if answered else None,
        "checks_s_median": round(statistics.median(checked), 2) if checked else None,
        "checks_s_p95": round(percentile(checked, 95), 2) if checked else None,
        "errors": [e for r in results for e in r["errors"]],
    }


def round_pictures(folder: Path, round_index: int, n: int, real: list[Path]) -> list[Path]:
    """The round's pictures, one per session: the next of ``real`` (dermoscopic pictures,
    which get the whole analysis with its stability check), else drawn lesion-like
    pictures (which the lesion detector refuses, so the page skips that check)."""
    if real:  # each round its own pictures, so no round reads another's cached analyses
        return [real[(20 * round_index + k) % len(real)] for k in range(n)]
    pictures = []
    for k in range(n):
        pictures.append(folder / f"round{round_index}-lesion{k}.jpg")
        pictures[-1].write_bytes(jpeg_bytes(lesion_like(seed=1000 * round_index + k)))
    return pictures


async def run_rounds(url: str, counts: list[int], timeout_s: float, folder: Path, real: list[Path]) -> dict:
    from playwright.async_api import async_playwright

    rounds = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROME_FLAGS)
        for n in counts:
            pictures = round_pictures(folder, len(rounds), n, real)
            results = await asyncio.gather(*(one_session(browser, url, p, timeout_s) for p in pictures))
            key = f"{n} sessions, round {len(rounds) + 1}"
            rounds[key] = summary(list(results))
            s = rounds[key]
            print(
                f"N={n:2d}: answered {s['answered']}/{n}; page ready median {s['page_ready_s_median']} s, "
                f"p95 {s['page_ready_s_p95']} s; result median {s['result_s_median']} s, p95 {s['result_s_p95']} s; "
                f"stability check shown median {s['checks_s_median']} s, p95 {s['checks_s_p95']} s; "
                f"errors {len(s['errors'])}",
                flush=True,
            )
            for error in s["errors"]:
                print(f"  {error}")
        await browser.close()
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--timeout", type=float, default=180, help="seconds a session may wait for each step")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--pictures",
        type=Path,
        help="a folder of dermoscopic JPEGs to upload (e.g. a collection's images): they get the whole analysis, "
        "stability check included; default: drawn lesion-like pictures, which the lesion detector refuses",
    )
    parser.add_argument(
        "--first-after",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between the server being healthy and the first round (default: none)",
    )
    args = parser.parse_args()
    if any(n < 1 or n > 20 for n in args.sessions):
        parser.error("sessions must be between 1 and 20 (a 2-core machine)")
    from skin_model.bench import machine_gflops

    real = sorted(args.pictures.glob("*.jpg"))[:100] if args.pictures else []
    if args.pictures and not real:
        parser.error(f"no .jpg pictures in {args.pictures}")
    figures: dict = {
        "machine_gflops_start": machine_gflops(),
        "pictures": f"dermoscopic JPEGs from a folder named {args.pictures.name}" if real else "drawn lesion-like",
    }
    with running_app() as (url, healthy_s), tempfile.TemporaryDirectory() as tmp:
        print(f"server healthy after {healthy_s:.2f} s")
        time.sleep(args.first_after)
        started = time.perf_counter()
        figures["server_healthy_s"] = round(healthy_s, 2)
        figures["first_round_after_healthy_s"] = args.first_after
        figures["rounds"] = asyncio.run(run_rounds(url, args.sessions, args.timeout, Path(tmp), real))
        first = next(iter(figures["rounds"].values()))
        if first["answered"]:
            # the first round starts when the server is healthy (+ --first-after): its slowest session bounds it
            figures["first_result_after_server_start_s"] = round(
                healthy_s + args.first_after + first["page_ready_s_p95"] + first["result_s_p95"], 2
            )
            print(f"first result after server start: at most {figures['first_result_after_server_start_s']} s")
        figures["wall_s"] = round(time.perf_counter() - started, 1)
    figures["machine_gflops_end"] = machine_gflops()
    print(f"machine: {figures['machine_gflops_start']} GFLOP/s before, {figures['machine_gflops_end']} after")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
