"""Grids of training configs on a Dask cluster: ``attnsvm sweep SWEEP.toml --out DIR``.

A sweep file is a training config (the sections of ``attnsvm train``) plus a ``[sweep]`` table of axes::

    [sweep]
    grid = { "problem.d" = [4, 8, 16], "optimizer.lr" = [0.1, 0.5] }   # every combination
    zip = { "problem.n" = [4, 8], "problem.seed" = [0, 1] }            # move together (equal lengths)

An axis is a dotted path into the config (``section.key``, or ``section.key.sub`` inside a table such as
``init.scale.K``). The points are the Cartesian product of the grid axes and of the zipped group (``zip``
may also be a list of tables: several groups, each one axis of the product); the last grid axis varies
fastest. Every point is a full training config, validated before anything runs.

Each point is one Dask task: the batched training of all its trials (one compiled program) and the verdicts,
exactly what ``attnsvm train`` computes for that config. The client writes, for point ``ID`` (the first 12
hex digits of the SHA-256 of the point's validated config, so the same config is the same point in any
sweep):

* ``DIR/trials/point=ID/part-0.parquet``  one row per trial: the axes, the per-trial verdict
  (:func:`attnsvm.metrics.verdicts`) and the metrics at the last record as ``final_<name>``;
* ``DIR/records/point=ID/part-0.parquet`` one row per (trial, record): the axes and every recorded metric;
* ``DIR/points/ID/``  ``config.toml``, ``final.npz``, ``summary.md`` and ``manifest.json`` (written last:
  the point's commit mark, with the SHA-256 of every file above);
* ``DIR/failed/ID.json`` the error of a point that failed all its attempts (removed once it succeeds);
* ``DIR/sweep.toml`` and ``DIR/sweep.json`` (the points: index, id, axis values).

The two Parquet trees are hive-partitioned datasets (``point=ID`` directories). Files are written under
temporary names and renamed, so a killed client leaves no half-written result. On a rerun, a point counts
as done only if its manifest verifies (config hash, every file's size and SHA-256, one row per trial);
anything else is recomputed. A point whose task raises is retried, then recorded as failed without stopping
the others; a worker that dies mid-task has its task rerun elsewhere by Dask.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, parse_config, read_toml, to_toml

POINT_FILES = ("config.toml", "final.npz", "summary.md")


class SweepError(ConfigError):
    """A sweep file that cannot be run; the message names the axis or the point."""


# ---- the sweep file ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its position, content id, axis values and validated training config."""

    index: int
    id: str
    axes: dict[str, Any]
    config: Any  # attnsvm.config.TrainConfig

    def label(self) -> str:
        vals = ", ".join(f"{k}={_short(v)}" for k, v in self.axes.items())
        return f"point {self.index} [{self.id}] ({vals})" if vals else f"point {self.index} [{self.id}]"


@dataclass(frozen=True)
class Sweep:
    """The expanded grid: axis names (in column order) and the points."""

    axes: tuple[str, ...]
    points: tuple[SweepPoint, ...]
    text: str = ""

    def point(self, pid: str) -> SweepPoint:
        return next(p for p in self.points if p.id == pid)


def _short(v: Any) -> str:
    return json.dumps(v) if isinstance(v, dict | list) else repr(v) if isinstance(v, str) else str(v)


def _set_path(cfg: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) < 2 or any(not p for p in parts):
        raise SweepError(f"sweep axis {key!r}: write it as 'section.key' (e.g. 'problem.d', 'optimizer.lr')")
    node = cfg
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise SweepError(f"sweep axis {key!r}: {p!r} is a value in the base config, not a table")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _axis_values(group: str, key: str, values: Any) -> list:
    if not isinstance(values, list) or not values:
        raise SweepError(f"sweep.{group}.{key!r}: give a non-empty list of values, e.g. \"{key}\" = [1, 2]")
    return values


def _axis_groups(spec: dict) -> tuple[list[tuple[str, ...]], list[list[tuple]]]:
    """(axis names per product factor, values per factor): grid axes one factor each, each zip group one."""
    unknown = set(spec) - {"grid", "zip"}
    if unknown:
        raise SweepError(f"sweep: unknown key(s) {sorted(unknown)} (the [sweep] table has 'grid' and 'zip')")
    names: list[tuple[str, ...]] = []
    values: list[list[tuple]] = []
    grid = spec.get("grid", {})
    if not isinstance(grid, dict):
        raise SweepError("sweep.grid: give a table of axes, e.g. grid = { \"problem.d\" = [4, 8] }")
    for key, vals in grid.items():
        names.append((key,))
        values.append([(v,) for v in _axis_values("grid", key, vals)])
    zips = spec.get("zip", [])
    zips = [zips] if isinstance(zips, dict) else zips
    if not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        raise SweepError("sweep.zip: give a table of axes of equal length (or a list of such tables)")
    for z in zips:
        if not z:
            continue
        cols = {k: _axis_values("zip", k, v) for k, v in z.items()}
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise SweepError(f"sweep.zip: zipped axes must have equal lengths, got {lengths}")
        names.append(tuple(cols))
        values.append(list(zip(*cols.values(), strict=True)))
    flat = [k for group in names for k in group]
    dup = sorted({k for k in flat if flat.count(k) > 1})
    if dup:
        raise SweepError(f"sweep: axis {dup} given more than once (in grid and zip, or in two zip groups)")
    return names, values


def _problem_file_digest(cfg_dict: dict, base_dir: Path) -> str:
    f = cfg_dict.get("problem", {}).get("file")
    if not f:
        return ""
    path = Path(f)
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        return ""  # reported by the validation below
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _resolve_files(data: dict, base_dir: Path) -> None:
    """Make a problem file path absolute (relative to the sweep file), so that any worker can open it."""
    prob = data.get("problem")
    if isinstance(prob, dict) and isinstance(prob.get("file"), str):
        path = Path(prob["file"])
        if not path.is_absolute():
            prob["file"] = str((base_dir / path).resolve())


def point_digest(cfg) -> str:
    """SHA-256 of a validated config (canonical JSON of every field, defaults included)."""
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _column_values(axes: list[str], rows: list[dict[str, Any]]) -> None:
    """Make each axis one Parquet-friendly type across the sweep: numbers (ints widened to float when an axis
    mixes them), strings, booleans; a table or list value is written as its JSON text."""
    for key in axes:
        vals = [r[key] for r in rows]
        if any(isinstance(v, dict | list) for v in vals):
            for r in rows:
                r[key] = json.dumps(r[key], sort_keys=True)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals) and \
                any(isinstance(v, float) for v in vals):
            for r in rows:
                r[key] = float(r[key])
        elif len({type(v) for v in vals}) > 1:
            for r in rows:
                r[key] = str(r[key])


def parse_sweep(data: dict, base_dir: Path | str = ".", text: str = "") -> Sweep:
    """Expand a sweep (a config dict with a ``[sweep]`` table) into validated points.

    Raises :class:`SweepError` naming the axis, or the first invalid point with its axis values and the
    config error that ``attnsvm train`` would give for it.
    """
    base_dir = Path(base_dir)
    data = copy.deepcopy(data)
    spec = data.pop("sweep", None)
    if not isinstance(spec, dict):
        raise SweepError("missing [sweep] table: add e.g. [sweep] grid = { \"problem.d\" = [4, 8] }")
    names, values = _axis_groups(spec)
    axes = [k for group in names for k in group]
    points: list[SweepPoint] = []
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, combo in enumerate(itertools.product(*values)):
        cfg_dict = copy.deepcopy(data)
        ax: dict[str, Any] = {}
        for group, vals in zip(names, combo, strict=True):
            for key, v in zip(group, vals, strict=True):
                _set_path(cfg_dict, key, v)
                ax[key] = v
        label = ", ".join(f"{k}={_short(v)}" for k, v in ax.items())
        where = f"point {index} ({label})" if label else f"point {index}"
        digest_file = _problem_file_digest(cfg_dict, base_dir)
        _resolve_files(cfg_dict, base_dir)
        try:
            cfg = parse_config(cfg_dict)
        except ConfigError as exc:
            raise SweepError(f"{where}: {exc}") from None
        _preflight(cfg, where)
        digest = hashlib.sha256((point_digest(cfg) + digest_file).encode()).hexdigest()
        pid = digest[:12]
        if pid in seen:
            raise SweepError(f"{where} is the same config as point {seen[pid]}: remove the duplicate values")
        seen[pid] = index
        points.append(SweepPoint(index=index, id=pid, axes=ax, config=cfg))
        rows.append(dict(ax))
    _column_values(axes, rows)
    points = [SweepPoint(p.index, p.id, r, p.config) for p, r in zip(points, rows, strict=True)]
    return Sweep(axes=tuple(axes), points=tuple(points), text=text)


def _preflight(cfg, where: str) -> None:
    """The run-time checks of ``attnsvm train`` that do not need a training: the problem builds (trial 0)
    and the model fits it."""
    try:
        problem = cfg.problem.build(0, None)
    except (ValueError, FileNotFoundError) as exc:
        raise SweepError(f"{where}: problem: {exc}") from None
    if cfg.model.parameterization != "prompt" and problem.kind == "prompt":
        raise SweepError(f"{where}: model.parameterization: {cfg.model.parameterization!r} needs queries, but "
                         "the problem has none (give Z or query_index, or use parameterization = 'prompt')")


def load_sweep_file(path: str | Path) -> Sweep:
    """Read and expand a sweep file (see the module docstring)."""
    path = Path(path)
    data = read_toml(path, "sweep file")
    return parse_sweep(data, path.parent, path.read_text())


# ---- one point (runs on a worker) -------------------------------------------------------------------------
def _final_records(metrics):
    """The last recorded row of every trial (rows are in time order within a trial), metric columns renamed
    ``final_<name>``."""
    last = metrics.sort_values("trial", kind="stable").groupby("trial", sort=True).tail(1).reset_index(drop=True)
    return last.rename(columns={c: f"final_{c}" for c in last.columns if c != "trial"})


def run_point(cfg) -> dict[str, Any]:
    """Train one point exactly as ``attnsvm train`` does, in a scratch directory of this worker, and return
    its files as bytes and its two tables (a Dask task: the client writes the results)."""
    import pandas as pd

    from .runs import train_from_config

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attnsvm-point-") as tmp:
        out = Path(tmp)
        train_from_config(cfg, out, progress=False)
        metrics = pd.read_parquet(out / "metrics.parquet")
        trials = _final_records(metrics)
        if (out / "verdict.parquet").exists():
            trials = pd.read_parquet(out / "verdict.parquet").merge(trials, on="trial", how="left")
        files = {name: (out / name).read_bytes() for name in POINT_FILES if (out / name).exists()}
    return {"files": files, "trials": trials, "records": metrics, "seconds": time.perf_counter() - t0,
            "worker": f"{os.uname().nodename}:{os.getpid()}"}


# ---- the output directory ---------------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parquet_bytes(df) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _with_axes(df, point: SweepPoint):
    df = df.copy()
    for i, (k, v) in enumerate(point.axes.items()):
        df.insert(i, k, v)
    return df


def _paths(out: Path, pid: str) -> dict[str, Path]:
    return {"trials": out / "trials" / f"point={pid}" / "part-0.parquet",
            "records": out / "records" / f"point={pid}" / "part-0.parquet",
            "dir": out / "points" / pid, "failed": out / "failed" / f"{pid}.json"}


def write_point(out: Path, point: SweepPoint, result: dict[str, Any]) -> None:
    """Write a finished point: the two Parquet partitions, the point's files, and last its manifest."""
    p = _paths(out, point.id)
    trials = _with_axes(result["trials"], point)
    blobs = {"trials": _parquet_bytes(trials), "records": _parquet_bytes(_with_axes(result["records"], point))}
    files: dict[str, dict[str, Any]] = {}
    for key in ("trials", "records"):
        _write_atomic(p[key], blobs[key])
        files[str(p[key].relative_to(out))] = {"bytes": len(blobs[key]), "sha256": _sha(blobs[key])}
    staging = out / "points" / f".{point.id}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, data in result["files"].items():
        (staging / name).write_bytes(data)
        files[f"points/{point.id}/{name}"] = {"bytes": len(data), "sha256": _sha(data)}
    manifest = {"id": point.id, "index": point.index, "axes": point.axes,
                "config_sha256": point_digest(point.config), "trials": int(point.config.run.trials),
                "rows": {"trials": len(trials), "records": len(result["records"])}, "files": files,
                "seconds": result["seconds"], "worker": result["worker"],
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    shutil.rmtree(p["dir"], ignore_errors=True)
    os.replace(staging, p["dir"])
    p["failed"].unlink(missing_ok=True)


def verify_point(out: Path, point: SweepPoint) -> str | None:
    """None if the stored result of ``point`` is complete and intact, else the reason it is not."""
    p = _paths(out, point.id)
    mpath = p["dir"] / "manifest.json"
    if not mpath.exists():
        return "not computed"
    try:
        m = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"manifest unreadable ({exc})"
    if m.get("config_sha256") != point_digest(point.config):
        return "manifest belongs to another config"
    if m.get("rows", {}).get("trials") != point.config.run.trials:
        return "wrong number of trial rows"
    for rel, info in m.get("files", {}).items():
        f = out / rel
        if not f.exists():
            return f"{rel} missing"
        if f.stat().st_size != info["bytes"] or _sha(f.read_bytes()) != info["sha256"]:
            return f"{rel} does not match its checksum"
    for key in ("trials", "records"):
        if str(p[key].relative_to(out)) not in m.get("files", {}):
            return f"{key} partition not in the manifest"
    return None


def _discard(out: Path, point: SweepPoint) -> None:
    """Remove whatever is stored for a point that does not verify, including a killed writer's leftovers."""
    p = _paths(out, point.id)
    shutil.rmtree(p["dir"], ignore_errors=True)
    for staging in (out / "points").glob(f".{point.id}.*.tmp"):
        shutil.rmtree(staging, ignore_errors=True)
    for key in ("trials", "records"):
        shutil.rmtree(p[key].parent, ignore_errors=True)


def write_failure(out: Path, point: SweepPoint, exc: BaseException, tb: str, attempts: int) -> dict[str, Any]:
    info = {"id": point.id, "index": point.index, "axes": point.axes, "error": type(exc).__name__,
            "message": str(exc), "traceback": tb, "attempts": attempts,
            "failed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_atomic(_paths(out, point.id)["failed"], json.dumps(info, indent=1, default=str).encode())
    return info


def _write_sweep_files(out: Path, sweep: Sweep) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if sweep.text:
        _write_atomic(out / "sweep.toml", sweep.text.encode())
    doc = {"axes": list(sweep.axes),
           "points": [{"index": p.index, "id": p.id, "axes": p.axes} for p in sweep.points]}
    _write_atomic(out / "sweep.json", json.dumps(doc, indent=1, default=str).encode())
    # the config of every point, so that --status needs no sweep file and a point can be rerun by hand
    for p in sweep.points:
        path = out / "configs" / f"{p.id}.toml"
        text = to_toml(p.config.model_dump(mode="json")).encode()
        if not path.exists() or path.read_bytes() != text:
            _write_atomic(path, text)


def stored_sweep(out: str | Path) -> Sweep:
    """The sweep written in ``out`` (its points re-validated from ``configs/ID.toml``)."""
    out = Path(out)
    if not (out / "sweep.json").exists():
        raise SweepError(f"{out} holds no sweep (no sweep.json): run `attnsvm sweep SWEEP.toml --out {out}`")
    doc = json.loads((out / "sweep.json").read_text())
    points = []
    for p in doc["points"]:
        cfg = parse_config(read_toml(out / "configs" / f"{p['id']}.toml", f"config of point {p['index']}"))
        points.append(SweepPoint(index=p["index"], id=p["id"], axes=p["axes"], config=cfg))
    return Sweep(axes=tuple(doc["axes"]), points=tuple(points))


# ---- running ----------------------------------------------------------------------------------------------
@dataclass
class SweepReport:
    """What a run of a sweep did: point ids skipped (verified on disk), computed, failed (id → error)."""

    skipped: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    recomputed: dict[str, str] = field(default_factory=dict)  # stored but failed verification: id → reason
    seconds: float = 0.0


def run_sweep(sweep: Sweep, out: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              retries: int = 2, client=None, on_event: Callable[[str, SweepPoint, dict], None] | None = None
              ) -> SweepReport:
    """Run every point of ``sweep`` not already verified in ``out`` as one Dask task each.

    ``client``: an existing :class:`distributed.Client`; else the cluster at ``scheduler``; else a
    ``LocalCluster`` of ``workers`` processes (default: the cores). ``retries``: extra attempts of a point
    whose task raised (a worker that dies is handled by Dask, which reruns its task). ``on_event(kind, point,
    info)`` is called with kind ``skip`` / ``start`` (once, info = {"todo": n, "total": N}) / ``done`` /
    ``fail``, for progress.
    """
    from .cluster import dask_client

    out = Path(out)
    t0 = time.perf_counter()
    _write_sweep_files(out, sweep)
    report = SweepReport()
    emit = on_event or (lambda *a: None)
    todo: list[SweepPoint] = []
    for pt in sweep.points:
        reason = verify_point(out, pt)
        if reason is None:
            report.skipped.append(pt.id)
            emit("skip", pt, {})
            continue
        if reason != "not computed":
            report.recomputed[pt.id] = reason
        _discard(out, pt)
        todo.append(pt)
    emit("start", None, {"todo": len(todo), "total": len(sweep.points)})
    if todo:
        if client is not None:
            _run_points(client, todo, out, retries, report, emit)
        else:
            with dask_client(workers, scheduler) as c:
                _run_points(c, todo, out, retries, report, emit)
    report.seconds = time.perf_counter() - t0
    return report


def _run_points(client, todo: list[SweepPoint], out: Path, retries: int, report: SweepReport, emit) -> None:
    from distributed import as_completed

    by_key = {}
    for pt in todo:
        fut = client.submit(run_point, pt.config, key=f"attnsvm-point-{pt.id}-{os.getpid()}-{time.time_ns()}",
                            retries=retries, pure=False)
        by_key[fut.key] = (fut, pt)
    for fut in as_completed([f for f, _ in by_key.values()], loop=client.loop):
        _, pt = by_key[fut.key]
        if fut.status == "finished":
            result = fut.result()
            fut.release()
            write_point(out, pt, result)
            report.computed.append(pt.id)
            emit("done", pt, {"seconds": result["seconds"], "worker": result["worker"]})
        else:
            exc = fut.exception()
            tb = "".join(traceback.format_tb(fut.traceback())) if fut.traceback() is not None else ""
            fut.release()
            info = write_failure(out, pt, exc, tb, retries + 1)
            report.failed[pt.id] = f"{info['error']}: {info['message']}"
            emit("fail", pt, info)


# ---- reading ----------------------------------------------------------------------------------------------
def sweep_status(out: str | Path) -> dict[str, Any]:
    """Done (verified) / failed / pending points of the sweep in ``out``: lists of (point, detail)."""
    out = Path(out)
    sweep = stored_sweep(out)
    status: dict[str, Any] = {"done": [], "failed": [], "pending": [], "axes": sweep.axes}
    for pt in sweep.points:
        reason = verify_point(out, pt)
        failed = _paths(out, pt.id)["failed"]
        if reason is None:
            status["done"].append((pt, ""))
        elif failed.exists():
            info = json.loads(failed.read_text())
            status["failed"].append((pt, f"{info['error']}: {info['message']}"))
        else:
            status["pending"].append((pt, "" if reason == "not computed" else reason))
    return status


def load_sweep(out: str | Path, table: str = "trials"):
    """The results of the sweep in ``out`` as one pandas DataFrame.

    ``table="trials"``: one row per (point, trial) — the columns ``point`` (id), ``point_index``, one column
    per axis (named by its dotted path), ``trial``, the verdict columns and ``final_<metric>`` at the last
    record. ``table="records"``: one row per (point, trial, record) with every recorded metric. Only
    verified points of the current sweep appear; points are in sweep order.
    """
    import pandas as pd

    if table not in ("trials", "records"):
        raise ValueError(f"table must be 'trials' or 'records', got {table!r}")
    out = Path(out)
    sweep = stored_sweep(out)
    frames = []
    for pt in sweep.points:
        if verify_point(out, pt) is not None:
            continue
        df = pd.read_parquet(_paths(out, pt.id)[table])
        df.insert(0, "point_index", pt.index)
        df.insert(0, "point", pt.id)
        frames.append(df)
    if not frames:
        cols = ["point", "point_index", *sweep.axes, "trial"]
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)


def load_point_arrays(out: str | Path, point_id: str) -> dict[str, np.ndarray]:
    """The ``final.npz`` arrays of one point."""
    with np.load(Path(out) / "points" / point_id / "final.npz") as f:
        return {k: f[k] for k in f.files}
