"""The documentation site builds with `mkdocs build --strict` (no broken link, no missing page, no
docstring the API pages cannot render), and its generated pages hold what they promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "mkdocs.yml").exists(), reason="not a source checkout")
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(site)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    cli = (site / "cli" / "index.html").read_text()
    for command in ("problem", "solve", "tokens", "train", "reproduce", "list"):
        assert re.search(rf"attnsvm {command}\b", cli), f"CLI page lacks `attnsvm {command}`"
    # help texts with <...> (e.g. "runs/<config name>") are shown, not swallowed as HTML tags
    import html

    import typer

    from attnsvm.cli import app

    text = html.unescape(re.sub(r"<[^>]+>", "", cli))
    for cmd in typer.main.get_command(app).commands.values():
        for param in cmd.params:
            for tag in re.findall(r"<[^>]+>", getattr(param, "help", None) or ""):
                assert tag in text, f"CLI page lost {tag!r}"
    api = (site / "api" / "index.html").read_text()
    for name in ("attnsvm.problem", "AttentionProblem", "solve_svm", "attnsvm.plots.common"):
        assert name in api, f"API page lacks {name}"
    # the maths is typeset from the Concepts pages (arithmatex spans), not left as raw dollars
    assert 'class="arithmatex"' in (site / "concepts" / "att-svm" / "index.html").read_text()
    # no page refers to a specification outside the repository
    for page in (ROOT / "docs").rglob("*.md"):
        assert "SPEC" not in page.read_text(), page
