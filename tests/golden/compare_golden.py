"""Compare a run of ``attnsvm reproduce --all --quick`` with the golden numbers of ``make_golden.py``.

Usage: ``python tests/golden/compare_golden.py RUN [--rtol 1e-9]``: prints every array that differs by
more than ``rtol`` relative (|a − b| ≤ rtol·max(|a|, |b|), elementwise; NaN equal to NaN), every claim row
whose numbers differ, and exits 1 if any differs. Timing numbers ("seconds", "s on") are skipped.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_golden import collect  # noqa: E402

#: arrays/columns that hold wall-clock or CPU times, not results
TIMING = re.compile(r"(seconds|_s$|time_s|wall|cpu)", re.IGNORECASE)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _timing_row(row: str) -> bool:
    return bool(re.search(r"\bs\b|seconds|minutes|time", row))


def compare(run: Path, rtol: float = 1e-9) -> list[str]:
    here = Path(__file__).parent
    arrays, claims = collect(run)
    gold = dict(np.load(here / "reproduce_quick.npz"))
    gold_claims = json.loads((here / "reproduce_quick_claims.json").read_text())
    out: list[str] = []
    gold_exps = {k.split("/")[0] for k in gold} | set(gold_claims)
    for k in sorted(set(gold) | set(arrays)):
        if TIMING.search(k.split("/")[-1]) or k.split("/")[0] not in gold_exps:
            continue  # timings, and experiments added after the golden run
        if k not in arrays or k not in gold:
            out.append(f"{k}: {'missing in run' if k not in arrays else 'not in golden'}")
            continue
        a, b = np.asarray(arrays[k], float), np.asarray(gold[k], float)
        if a.shape != b.shape:
            out.append(f"{k}: shape {a.shape} vs golden {b.shape}")
            continue
        same_nan = np.isnan(a) & np.isnan(b)
        with np.errstate(invalid="ignore"):
            diff = np.where(same_nan | (a == b), 0.0, np.abs(a - b))
            scale = np.maximum(np.abs(a), np.abs(b))
            rel = np.where(diff == 0, 0.0, diff / np.where(scale > 0, scale, 1.0))
        worst = float(np.nanmax(np.where(np.isnan(rel), np.inf, rel))) if rel.size else 0.0
        if worst > rtol:
            out.append(f"{k}: max relative difference {worst:.3e}")
    for exp in sorted(gold_claims):
        rows, grows = claims.get(exp, []), gold_claims.get(exp, [])
        if len(rows) != len(grows):
            out.append(f"{exp} claims: {len(rows)} rows vs golden {len(grows)}")
            continue
        for r, g in zip(rows, grows, strict=True):
            if r == g or _timing_row(g):
                continue
            nr, ng = NUMBER.findall(r), NUMBER.findall(g)
            if NUMBER.sub("#", r) != NUMBER.sub("#", g) or len(nr) != len(ng) or any(
                    abs(float(x) - float(y)) > rtol * max(abs(float(x)), abs(float(y)))
                    for x, y in zip(nr, ng, strict=True)):
                out.append(f"{exp} claim differs:\n    run:    {r}\n    golden: {g}")
    return out


if __name__ == "__main__":
    rtol = float(sys.argv[sys.argv.index("--rtol") + 1]) if "--rtol" in sys.argv else 1e-9
    diffs = compare(Path(sys.argv[1]), rtol)
    print("\n".join(diffs) if diffs else f"all numbers equal the golden ones to {rtol:g} relative")
    sys.exit(1 if diffs else 0)
