"""App latency in a real browser: server start to healthy, first page render, and
upload-to-result time (probabilities and heat map shown), median of a few uploads.

    python benchmarks/app_latency.py [--uploads 5]

Needs Debian's chromium and playwright (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright

from tests.streamlit_server import CHROME_FLAGS, CHROMIUM, running_app
from tests.synthetic import jpeg_bytes, lesion_like


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=5)
    args = parser.parse_args()
    with running_app() as (url, healthy_s), sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        start = time.perf_counter()
        page.goto(url, wait_until="domcontentloaded")
        page.locator('[data-testid="stFileUploader"] input[type="file"]').wait_for(state="attached", timeout=120_000)
        first_render_s = time.perf_counter() - start
        page.get_by_text("Upload one or more").first.wait_for(timeout=120_000)
        model_ready_s = time.perf_counter() - start
        times = []
        for k in range(args.uploads + 1):  # the first upload warms the explainer up
            image = Path(tmp) / f"lesion {k}.jpg"
            image.write_bytes(jpeg_bytes(lesion_like(seed=100 + k)))
            page.goto(url, wait_until="domcontentloaded")  # a fresh session holds just this upload
            page.get_by_text("Upload one or more").first.wait_for(timeout=120_000)
            start = time.perf_counter()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(image))
            page.get_by_text(f"1. {image.name}").first.wait_for(timeout=120_000)
            page.get_by_text("Top 3").first.wait_for(timeout=120_000)
            page.locator('[data-testid="stImage"] img').nth(1).wait_for(timeout=120_000)
            if k:
                times.append(time.perf_counter() - start)
        browser.close()
    print(f"server start to healthy:          {healthy_s:6.2f} s")
    print(f"first render (uploader visible):  {first_render_s:6.2f} s")
    print(f"model loaded (first visit):       {model_ready_s:6.2f} s")
    print(
        f"upload to result with Grad-CAM:   {statistics.median(times):6.2f} s median of {len(times)} "
        f"(min {min(times):.2f}, max {max(times):.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
