"""docs/gen_reproductions.py on a single experiment's run folder: its page and its rows of index.md only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))


def _report(claims: list[tuple[str, str]], wall: float) -> str:
    rows = "\n".join(f"| {c} | paper | measured {c} | **{v}** | note |" for c, v in claims)
    return (f"# ex-a: title of a\n\nPaper: P. Wall time: {wall} s (1 trial chunks computed).\n\n"
            f"| claim | paper | measured | verdict | note |\n|---|---|---|---|---|\n{rows}\n\n## Notes\n\n- a note\n"
            "\n| other | table |\n|---|---|\n| x | y |\n")


def test_single_experiment_page_and_index_rows(tmp_path):
    import gen_reproductions as g

    docs = tmp_path / "docs"
    (docs / "figures").mkdir(parents=True)
    (docs / "figures" / "other.png").write_bytes(b"png of another page")
    (docs / "ex-b.md").write_text("# ex-b page, untouched\n")
    index = ["# Reproductions", "", "| experiment | title | time (s) | reproduced | differs | corrected | new |",
             "|---|---|---|---|---|---|---|", "| [ex-a](ex-a.md) | title of a | 10.0 | 1 | 0 | 0 | 0 |",
             "| [ex-b](ex-b.md) | title of b | 20.0 | 0 | 1 | 0 | 0 |", "", "## Every claim", "",
             "| experiment | claim | paper | measured | verdict | note |", "|---|---|---|---|---|---|",
             "| ex-a | old | paper | m | **reproduced** | n |", "| ex-b | kept | paper | m | **differs** | n |"]
    (docs / "index.md").write_text("\n".join(index) + "\n")
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "ex_a.png").write_bytes(b"png of a")
    (run / "run.json").write_text(json.dumps({"experiment": "ex-a", "status": "done"}))
    (run / "report.md").write_text(_report([("first", "new"), ("second", "reproduced"), ("third", "new")], 123.4))

    written = g.build_one(run, "attnsvm reproduce ex-a", "2–3", out=docs)
    assert written == [docs / "ex-a.md", docs / "index.md"]
    page = (docs / "ex-a.md").read_text()
    assert page.startswith("# ex-a: title of a\n\n!!! info") and "`attnsvm reproduce ex-a`" in page
    assert "load average 2–3" in page and "| first | paper | measured first | **new** | note |" in page
    assert (docs / "figures" / "ex_a.png").read_bytes() == b"png of a"
    assert (docs / "figures" / "other.png").exists() and (docs / "ex-b.md").read_text() == "# ex-b page, untouched\n"
    lines = (docs / "index.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| [ex-a]"))
    assert row.startswith("| [ex-a](ex-a.md) | title of a | 123.4 (separate run of `attnsvm reproduce ex-a`, commit `")
    assert row.endswith("| 1 | 0 | 0 | 2 |")
    assert next(line for line in lines if line.startswith("| [ex-b]")) == index[5]
    claims = [line for line in lines if line.startswith("| ex-")]
    assert claims == ["| ex-a | first | paper | measured first | **new** | note |",
                      "| ex-a | second | paper | measured second | **reproduced** | note |",
                      "| ex-a | third | paper | measured third | **new** | note |", index[-1]]
    # a second pass gives the same files; an unfinished run is refused
    before = (docs / "index.md").read_text()
    g.build_one(run, "attnsvm reproduce ex-a", "2–3", out=docs)
    assert (docs / "index.md").read_text() == before
    (run / "run.json").write_text(json.dumps({"experiment": "ex-a", "status": "running"}))
    with pytest.raises(SystemExit, match="not finished"):
        g.build_one(run, "attnsvm reproduce ex-a", "2–3", out=docs)
