"""The real upload flow in headless Chromium against a running `streamlit run app.py`."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from .streamlit_server import CHROME_FLAGS, CHROMIUM, running_app
from .synthetic import jpeg_bytes, lesion_like

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (.ci/run installs it)"
)


def wait_until_idle(page, timeout_s: float = 120, settle_s: float = 1.5) -> None:
    """Wait until the app's script run has ended (no running indicator for `settle_s`).

    Streamlit re-registers a deferred download at every run, so a click during a run can
    hold a registration that the run has just dropped; a person sees the page settle first.
    """
    running = page.locator('[data-testid="stStatusWidgetRunningIcon"]')
    deadline = time.monotonic() + timeout_s
    idle_since = None
    while time.monotonic() < deadline:
        if running.count():
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= settle_s:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the app was still running after {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def server_url():
    with running_app() as (url, _):
        yield url


def test_upload_flow_in_a_real_browser(server_url: str, tmp_path: Path) -> None:
    image = tmp_path / "my lesion é.jpg"
    image.write_bytes(jpeg_bytes(lesion_like(seed=5)))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.goto(server_url, wait_until="domcontentloaded")
        page.get_by_text("Diagnose a skin lesion").first.wait_for(timeout=120_000)
        uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
        uploader.wait_for(state="attached", timeout=120_000)
        uploader.set_input_files([str(image), str(broken)])
        page.get_by_text("Top 3").first.wait_for(timeout=180_000)
        page.get_by_text("the file is empty").first.wait_for(timeout=60_000)
        verdicts = ("Malignant risk", "model is unsure", "does not look like a dermoscopic lesion")
        assert sum(page.get_by_text(v).count() for v in verdicts) >= 1
        images = page.locator('[data-testid="stImage"] img')
        images.nth(1).wait_for(timeout=60_000)  # the photo and its heat map
        assert images.count() >= 2
        wait_until_idle(page)
        with page.expect_download(timeout=60_000) as download:  # encoded on click, on the server
            page.get_by_role("button", name="Overlay PNG").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == "my lesion é.jpg.overlay.png"
        with Image.open(saved) as overlay:
            assert overlay.format == "PNG" and overlay.size[0] >= 64
        page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60_000)
        # an optional patient detail brings the shipped figures for such patients
        page.get_by_role("combobox", name="Body site").click()
        page.get_by_role("option", name="trunk").click()
        page.get_by_text("How the model did for patients like this one").wait_for(timeout=60_000)
        assert page.get_by_text("body site: trunk (").count() == 1
        wait_until_idle(page)
        # the printable report carries the answer, both pictures and the patient detail given
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Printable report").click()
        report = tmp_path / download.value.suggested_filename
        download.value.save_as(report)
        assert report.name == "my lesion é.jpg.report.html"
        viewer = browser.new_page()
        viewer.goto(report.as_uri())
        assert viewer.get_by_role("heading", name="Skin lesion decision-support report").count() == 1
        assert viewer.get_by_text("body site: trunk (recorded here; the model does not see them)").count() == 1
        assert viewer.get_by_text(re.compile(r"^body site: trunk \(\d+ lesions")).count() == 1
        loaded = viewer.locator("img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
        assert len(loaded) == 2 and all(width >= 64 for width in loaded)  # both pictures decode
        viewer.close()
        page.screenshot(path=str(tmp_path / "diagnose.png"))

        page.get_by_role("link", name="Evaluation").first.click()
        page.get_by_text("Confusion matrix (counts)").first.wait_for(timeout=120_000)
        assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
        wait_until_idle(page)  # the metrics above the tabs are drawn, not placeholders
        page.screenshot(path=str(tmp_path / "evaluation.png"))
        if os.environ.get("SKIN_SCREENSHOT_DIR"):
            for name in ("diagnose.png", "evaluation.png"):
                shutil.copy(tmp_path / name, Path(os.environ["SKIN_SCREENSHOT_DIR"]) / name)
        browser.close()


def test_a_page_link_opened_first_on_a_fresh_server_gets_the_apps_navigation() -> None:
    """Streamlit starts in its old multipage mode when a `pages/` folder sits beside
    the app's script: a bookmark opened first after a restart then ran the page alone,
    centred, with every file of the folder listed as a page. The pages live in
    `app_pages/`, so `st.navigation` in app_navigation.py is the only navigation there is."""
    with running_app() as (url, _), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/model_card", wait_until="domcontentloaded")
        page.get_by_text("Intended use").first.wait_for(timeout=120_000)
        wait_until_idle(page)
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        links = page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
        titles = [text.strip().splitlines()[-1].strip() for text in links]  # after the icon's name
        assert titles == ["Diagnose", "Follow-up", "Evaluation", "Your pictures", "Dataset", "Model card"]
        assert "common" not in nav
        assert page.url.endswith("/model_card")
        # app_navigation.py's wide layout: the page's text runs wider than Streamlit's centred 736 px column
        block = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
        assert block["width"] > 900
        browser.close()
