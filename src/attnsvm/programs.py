"""Compiled programs kept across processes: the traced program beside JAX's compiled one.

JAX's persistent compilation cache (:mod:`attnsvm.cache`) stores the XLA executable, but every new process
still *traces* the Python function and lowers it to StableHLO before it can even look the executable up.
For attnsvm's engines that is most of a first run: tracing the gradient flow (diffrax, an event located by
bisection, three save sets) takes seconds, the descent program about a second.

:func:`compile_program` therefore also keeps the lowered program, serialized with :mod:`jax.export`
(StableHLO with its argument and result types), in ``<cache dir>/programs/``. A later process with the same
key deserializes it and compiles it (an XLA-cache hit) without tracing anything. The key is the SHA-256 of
everything that determines the program:

* the function's module and name and the ``repr`` of its static arguments (model, optimizer, stops, ...);
* the tree structure, shapes and dtypes of its array arguments;
* the source text of every module of the attnsvm package, and of any module outside it that defines a
  type found in the static arguments or registered in attnsvm's registries (a parameterization or an
  optimizer of the user's own), plus the versions of jax, jaxlib, equinox, diffrax, optimistix and optax.

Any change of code or library therefore gives a new key: a stale program is never loaded. A program is not
kept when its static arguments cannot be keyed reliably (a ``repr`` that shows a memory address, such as a
function or a lambda, or a type whose source file cannot be read): it is then traced as usual. Results come
back in the same structure as from the function itself; the structure (tuples, lists, dicts, ``None`` and
named tuples) is kept as JSON beside the program, never pickled.

Only when the persistent cache is on (the ``attnsvm`` command by default; a library user calls
:func:`attnsvm.cache.enable_compilation_cache`). Otherwise :func:`compile_program` is ``fn.lower().compile()``.

Every program is compiled with :data:`XLA_OPTIONS` (XLA:CPU's older, non-MLIR code generation of fusions):
measured on attnsvm's programs (docs/benchmarks.md, benchmarks/flow_compile.py), it compiles in 0.6–0.75 of
the time and runs as fast (within ±7 % at P3-local size, equal at 1000+ trials) with bit-identical descent
results; a JAX whose XLA does not know an option compiles without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from functools import cache
from pathlib import Path
from typing import Any

import jax
import numpy as np

#: bump when the file format of a kept program changes
FORMAT = 1
_LIBRARIES = ("jax", "jaxlib", "equinox", "diffrax", "optimistix", "optax", "numpy")
_KNOWN = ("attnsvm", *_LIBRARIES, "pydantic", "typing")  # packages whose types are keyed by version or source
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+|<function |<lambda>")
_MEMORY: dict[tuple, Callable] = {}
#: XLA options of every program (module docstring); a program's own ``compiler_options`` are added to them
XLA_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}
#: added for a program that runs once per engine call on a few hundred or thousand states (the flow's start
#: check, the records of a descent or a flow): without LLVM's optimizations it compiles in about half the time
#: (records at P3-local size 0.34 s instead of 0.64 s with XLA_OPTIONS, 1.2 s fully optimized; ≈1.5 s less per
#: flow, benchmarks/flow_compile.py) and runs a few µs per state slower (0.03–0.06 s for 2100 records either
#: way). Values can differ from optimized code in the last bits (no fused multiply-adds), ≈1e−16 relative.
RUN_ONCE_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0}
_UNKNOWN_OPTIONS: set[str] = set()  # options this JAX's XLA rejected: left out of later compilations


def _compile(lowered: Any, options: dict[str, Any]) -> Any:
    """``lowered.compile`` with ``options``, leaving out the ones this version of XLA does not have."""
    opts = {k: v for k, v in options.items() if k not in _UNKNOWN_OPTIONS}
    while True:
        try:
            return lowered.compile(compiler_options=opts or None)
        except jax.errors.JaxRuntimeError as err:
            unknown = {k for k in opts if f"No such compile option: '{k}'" in str(err)}
            if not unknown:
                raise
            _UNKNOWN_OPTIONS.update(unknown)
            opts = {k: v for k, v in opts.items() if k not in unknown}


def programs_dir() -> Path | None:
    """``<persistent cache dir>/programs`` when the persistent cache is on in this process, else None."""
    base = jax.config.jax_compilation_cache_dir
    return Path(base) / "programs" if base else None


def compile_program(fn: Callable, args: tuple, static: dict[str, Any], *,
                    trace_context: Callable[[], Any] | None = None,
                    compiler_options: dict[str, Any] | None = None) -> Callable:
    """The compiled form of the jitted ``fn`` at ``args`` (arrays) and ``static`` (its static arguments).

    Returns a callable taking arrays of the same structure, shapes and dtypes as ``args``, compiled once per
    process; with the persistent cache on, the program is loaded from / written to :func:`programs_dir`
    (module docstring). ``trace_context``: a context manager factory entered while tracing (e.g. to trace
    runtime checks as NaN so the program has no host callback and can be exported). ``compiler_options``:
    XLA options of the compilation, added to :data:`XLA_OPTIONS` (e.g. ``{"xla_backend_optimization_level": 0}``
    for a program that runs once on small arrays, where code generation costs more than it saves); part of
    every cache key."""
    leaves, in_tree = jax.tree.flatten(args)
    spec = tuple((tuple(np.shape(x)), str(x.dtype)) for x in leaves)
    options = {**XLA_OPTIONS, **(compiler_options or {})}
    mem_key = (fn, repr(sorted(static.items())), str(in_tree), spec, repr(sorted(options.items())))
    if mem_key in _MEMORY:
        return _MEMORY[mem_key]
    trace = trace_context or nullcontext

    def traced_here():  # compiled as without the program cache
        with trace():
            compiled = _compile(fn.lower(*args, **static), options)
        _MEMORY[mem_key] = compiled
        return compiled

    folder = programs_dir()
    key = _key(fn, static, in_tree, spec) if folder is not None else None
    if key is None:
        return traced_here()
    loaded = _load(folder, key)
    if loaded is None:
        with trace():
            loaded = _export(fn, args, static, leaves, in_tree)
        if loaded is None:  # not exportable (e.g. a host callback)
            return traced_here()
        _store(folder, key, *loaded)
    exported, out_spec = loaded[:2]
    executable = _compile(jax.jit(exported.call).lower(*leaves), options)

    def call(*a):
        return _decode(out_spec, iter(executable(*jax.tree.leaves(a))))

    _MEMORY[mem_key] = call
    return call


# ---- the key -----------------------------------------------------------------------------------------------


@cache
def _package_fingerprint() -> str:
    """SHA-256 of the source of every module of the attnsvm package and of the libraries' versions."""
    h = hashlib.sha256(f"format {FORMAT}".encode())
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    for name in _LIBRARIES:
        mod = sys.modules.get(name)
        h.update(f"{name}={getattr(mod, '__version__', None) if mod else _version(name)}".encode())
    return h.hexdigest()


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 (a library that is not installed has no version: part of the key)
        return None


def _types_in(obj: Any, seen: set[int], out: set[type]) -> None:
    """Every type reachable from a static argument through dataclass / pydantic fields and containers."""
    if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool, complex)):
        return
    seen.add(id(obj))
    out.add(type(obj))
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (tuple, list, frozenset, set)):
        children = list(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    else:
        children = []
    if hasattr(obj, "param") and not isinstance(obj, type):  # a Model's parameterization object
        try:
            children.append(obj.param)
        except Exception:  # noqa: BLE001 (an object whose ``param`` cannot be built is keyed by its repr)
            pass
    for c in children:
        _types_in(c, seen, out)


def _foreign_sources(static: dict[str, Any]) -> str | None:
    """Hash of the source files of the types outside attnsvm that the program depends on, or None when one of
    them has no readable source (the program is then not kept)."""
    from .attention.base import PARAMETERIZATIONS
    from .training.optim import OPTIMIZERS

    types: set[type] = set()
    _types_in(static, set(), types)
    types |= set(PARAMETERIZATIONS.values()) | set(OPTIMIZERS.values())
    h = hashlib.sha256()
    for t in sorted(types, key=lambda t: (t.__module__, t.__qualname__)):
        mod = t.__module__ or ""
        if mod == "builtins" or mod.split(".")[0] in _KNOWN:
            continue
        try:
            path = inspect.getfile(t)
            h.update(f"{mod}.{t.__qualname__}".encode())
            h.update(Path(path).read_bytes())
        except (TypeError, OSError):
            return None
    return h.hexdigest()


def _key(fn: Callable, static: dict[str, Any], in_tree: Any, spec: tuple) -> str | None:
    text = repr(sorted(static.items()))
    if _ADDRESS.search(text) or _ADDRESS.search(str(in_tree)):
        return None
    foreign = _foreign_sources(static)
    if foreign is None:
        return None
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"
    h = hashlib.sha256()
    for part in (_package_fingerprint(), foreign, name, text, str(in_tree), repr(spec),
                 str(jax.config.jax_enable_x64)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


# ---- export, store, load ---------------------------------------------------------------------------------


def _export(fn: Callable, args: tuple, static: dict[str, Any], leaves: list, in_tree: Any):
    box: dict[str, Any] = {}

    def flat(*xs):
        out = fn(*jax.tree.unflatten(in_tree, xs), **static)
        box["out"] = jax.tree.structure(out)
        return jax.tree.leaves(out)

    shapes = [jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves]
    try:
        exported = jax.export.export(jax.jit(flat))(*shapes)
        out_spec = _encode(box["out"])
        blob = bytes(exported.serialize())
    except _NotEncodable:
        return None
    except Exception as e:  # noqa: BLE001
        # jax.export refuses programs it cannot serialize (host callbacks, custom calls without a
        # compatibility guarantee); such a program is compiled as usual instead of kept
        if "serializ" in str(e).lower() or "custom call" in str(e).lower() or "callback" in str(e).lower():
            return None
        raise
    return exported, out_spec, blob


def _store(folder: Path, key: str, exported, out_spec, blob: bytes) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"format": FORMAT, "out": out_spec, "sha256": hashlib.sha256(blob).hexdigest()})
        for suffix, data in ((".bin", blob), (".json", meta.encode())):
            tmp = folder / f"{key}{suffix}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, folder / f"{key}{suffix}")  # atomic: concurrent processes may share the folder
    except OSError:
        pass  # an unwritable cache must not stop a run: the program was compiled and is used in this process


def _load(folder: Path, key: str):
    """The kept program and its output structure, or None (absent, or damaged: then it is rebuilt)."""
    bin_path, meta_path = folder / f"{key}.bin", folder / f"{key}.json"
    try:
        blob = bin_path.read_bytes()
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or meta.get("sha256") != hashlib.sha256(blob).hexdigest():
        return None
    try:
        return jax.export.deserialize(bytearray(blob)), meta["out"]
    except Exception:  # noqa: BLE001 (a file that verifies but does not deserialize is rebuilt, not trusted)
        return None


# ---- output structure as JSON --------------------------------------------------------------------------


class _NotEncodable(Exception):
    pass


def _encode(td) -> Any:
    """A PyTreeDef of tuples, lists, dicts with str keys, None and named tuples as JSON."""
    if td.num_nodes == 1 and td.num_leaves == 1:
        return "*"
    kind, aux = td.node_data()
    kids = [_encode(c) for c in td.children()]
    if kind is type(None):
        return {"none": True}
    if kind is tuple:
        return {"tuple": kids}
    if kind is list:
        return {"list": kids}
    if kind is dict:
        if not all(isinstance(k, str) for k in aux):
            raise _NotEncodable("dict keys")
        return {"dict": [list(aux), kids]}
    if isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields"):
        return {"namedtuple": [kind.__module__, kind.__qualname__, kids]}
    raise _NotEncodable(repr(kind))


def _decode(spec: Any, leaves: Iterator) -> Any:
    if spec == "*":
        return next(leaves)
    if "none" in spec:
        return None
    if "tuple" in spec:
        return tuple(_decode(s, leaves) for s in spec["tuple"])
    if "list" in spec:
        return [_decode(s, leaves) for s in spec["list"]]
    if "dict" in spec:
        keys, kids = spec["dict"]
        return {k: _decode(s, leaves) for k, s in zip(keys, kids, strict=True)}
    module, qualname, kids = spec["namedtuple"]
    if module not in sys.modules and module.split(".")[0] not in ("attnsvm", *_LIBRARIES):
        raise RuntimeError(f"programs: a kept program returns {module}.{qualname}, which is not imported")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls(*(_decode(s, leaves) for s in kids))

