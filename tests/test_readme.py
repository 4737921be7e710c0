"""The README is for users: short, its figures those of the shipped files, its links alive."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_at_most_2500_words() -> None:
    assert len(README.split()) <= 2500


def test_readme_figures_are_those_of_the_shipped_files() -> None:
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "tools" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    block = module.current_block()
    assert block in README, "run `python tools/readme_figures.py` to write the current figures"
    assert "| test |" in block and "| validation |" in block


def test_readme_links_point_at_files_that_exist() -> None:
    links = re.findall(r"\]\(((?:docs|assets)/[^)#]+)\)", README)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
