"""The README and docs/ stay true to the repository: links lead somewhere, and .ci/run runs
the README's set-up and test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(md: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for h in re.findall(r"^#+ (.+)$", md, flags=re.M):
        h = re.sub(r"[`*]", "", h).strip().lower()
        out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h)))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_lead_to_files_and_headings(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in _anchors(dest.read_text()), f"{page.name}: {target}"


def _block_after(md: str, heading: str) -> list[str]:
    section = md.split(heading, 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_set_up_and_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    setup = _block_after(readme, "## Set up")
    installs = [line for line in setup if line.startswith("pip install")]
    assert installs, setup
    for line in installs:
        assert line.replace("pip install", "pip install -q", 1) in ci, line
    test_cmd = [line for line in _block_after(readme, "## The two commands")
                if "pytest" in line]
    assert test_cmd and ci[-1] == test_cmd[0]
