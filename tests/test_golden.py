"""Every number of ``attnsvm reproduce --all --quick`` equals the golden numbers saved before the engine
redesign (tests/golden/), to 1e−9 relative (slow: the whole quick reproduction, ≈1 min on 2 idle cores with
the default --jobs, experiments in two worker processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnsvm.cli import app

sys.path.insert(0, str(Path(__file__).parent / "golden"))


@pytest.mark.slow
def test_reproduce_quick_equals_golden(tmp_path):
    from compare_golden import compare

    res = CliRunner().invoke(app, ["reproduce", "--all", "--quick", "--no-progress", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    diffs = compare(tmp_path, rtol=1e-9)
    assert not diffs, "\n".join(diffs)
