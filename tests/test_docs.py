"""The README and docs/ stay true: the annotated study file is the default study, every relative link
and anchor resolves, and the README stays short (issue 19: a user reads it in five minutes)."""

import dataclasses
import re
from pathlib import Path

import pytest

from harness import config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {_anchor(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_the_readme_annotated_study_file_is_the_default_study(tmp_path):
    block = re.search(r"## Writing a study file.*?```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    path = tmp_path / "readme.yaml"
    path.write_text(block.group(1))
    shown, real = (dataclasses.asdict(config.load(p)) for p in (path, ROOT / "studies" / "fashion_mnist.yaml"))
    shown.pop("source"), real.pop("source")
    assert shown == real


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: {broken}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
