"""Write the golden numbers of ``attnsvm reproduce --all --quick`` (kept to check that a refactor changes
no number).

Usage: ``attnsvm reproduce --all --quick --out RUN && python tests/golden/make_golden.py RUN``.
Stores, per experiment, every numeric array of ``results.npz`` and every numeric column of its tables as
``<id>/<array>`` and ``<id>/<table>/<column>`` in ``reproduce_quick.npz``, and the claims tables of the
reports (the measured strings) in ``reproduce_quick_claims.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def collect(run: Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    arrays: dict[str, np.ndarray] = {}
    claims: dict[str, list[str]] = {}
    for exp in sorted(p for p in run.iterdir() if p.is_dir()):
        res = exp / "results.npz"
        if res.exists():
            with np.load(res, allow_pickle=False) as f:
                for k in f.files:
                    a = f[k]
                    if a.dtype.kind in "biuf":
                        arrays[f"{exp.name}/{k}"] = a
        for table in sorted(exp.glob("*.parquet")):
            df = pd.read_parquet(table)
            for col in df.columns:
                if df[col].dtype.kind in "biuf":
                    arrays[f"{exp.name}/{table.stem}/{col}"] = df[col].to_numpy()
        rows = [line for line in (exp / "report.md").read_text().splitlines() if line.startswith("|")]
        claims[exp.name] = rows
    return arrays, claims


if __name__ == "__main__":
    run = Path(sys.argv[1])
    arrays, claims = collect(run)
    here = Path(__file__).parent
    np.savez_compressed(here / "reproduce_quick.npz", **arrays)
    (here / "reproduce_quick_claims.json").write_text(json.dumps(claims, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(arrays)} arrays, {sum(len(v) for v in claims.values())} claim rows")
