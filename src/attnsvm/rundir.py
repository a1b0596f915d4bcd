"""Small helpers shared by ``attnsvm train`` and ``attnsvm reproduce``: output folders checked before any
work, and "did you mean" suggestions for misspelled keys."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path


def check_writable_dir(out: str | Path, what: str = "--out") -> None:
    """Refuse (ValueError) an output path that is a file, or lies in a folder we cannot write, before any
    work is done (the folder itself is created later if missing)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{what} {out} is a file; give a folder (it is created if missing)")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {out}: {probe} is not writable; give a folder you can write to")


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest known key, or '' when none is close."""
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
