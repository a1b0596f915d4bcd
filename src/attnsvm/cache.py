"""JAX's persistent compilation cache for attnsvm's command line: compiled programs kept on disk per user.

Compiling, not arithmetic, is most of what a short run waits for: a training program of attnsvm compiles in
seconds and runs in a fraction of that. With the cache on, a program compiled once (same shapes, same static
settings, same JAX/XLA version and machine) is loaded from disk by every later process.

* Where: ``$ATTNSVM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/attnsvm/jax`` (``~/.cache/attnsvm/jax``).
* When: on by default for the ``attnsvm`` command (every subcommand); off with ``attnsvm --no-cache ...``
  or the environment variable ``ATTNSVM_NO_CACHE=1``. Importing attnsvm never turns it on: a library user
  calls :func:`enable_compilation_cache` if they want it in their own process.
* Dask workers started by attnsvm (``attnsvm sweep``, the parallel parts of ``reproduce``) use the same
  setting as the process that started them.
* ``attnsvm cache info`` / ``attnsvm cache clear``.

JAX writes each entry atomically, so concurrent processes may share the directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV_DIR = "ATTNSVM_CACHE_DIR"
ENV_OFF = "ATTNSVM_NO_CACHE"
#: programs that compile faster than this are not written (loading one takes ~10 ms; below this the disk
#: entry would cost about what it saves)
MIN_COMPILE_SECONDS = 0.05


def cache_dir() -> Path:
    """The per-user directory of attnsvm's compiled programs."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attnsvm" / "jax"


def disabled_by_env() -> bool:
    """True when ``ATTNSVM_NO_CACHE`` is set to anything but '' / '0' / 'false' / 'no'."""
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no")


def enable_compilation_cache(path: str | Path | None = None) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`cache_dir`) for this process."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    path = Path(path) if path is not None else cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    cc.reset_cache()  # a cache object made before this call (even a disabled one) is rebuilt on first use
    return path


def disable_compilation_cache() -> None:
    """Turn the persistent cache off for this process (programs are still cached in memory)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    jax.config.update("jax_compilation_cache_dir", None)
    cc.reset_cache()


def active_cache_dir() -> str | None:
    """The persistent cache directory in force in this process, or None (off)."""
    import jax

    return jax.config.jax_compilation_cache_dir


def configure_from_cli(no_cache: bool) -> Path | None:
    """What the ``attnsvm`` command does before any subcommand: cache on unless ``--no-cache`` or
    ``ATTNSVM_NO_CACHE``. Returns the directory in use, or None."""
    if no_cache or disabled_by_env():
        disable_compilation_cache()
        return None
    try:
        return enable_compilation_cache()
    except OSError:
        return None  # an unwritable cache directory must not stop a run: compile as without the cache


def cache_info(path: str | Path | None = None) -> dict[str, object]:
    """Directory, number of entries and total bytes of the cache."""
    path = Path(path) if path is not None else cache_dir()
    files = [f for f in path.rglob("*") if f.is_file()] if path.exists() else []
    return {"dir": str(path), "entries": len(files), "bytes": sum(f.stat().st_size for f in files),
            "enabled_by_default": not disabled_by_env()}


def clear_cache(path: str | Path | None = None) -> int:
    """Delete every entry of the cache; returns how many files were removed."""
    path = Path(path) if path is not None else cache_dir()
    if not path.exists():
        return 0
    n = sum(1 for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path)
    return n
