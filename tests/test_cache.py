"""The persistent compilation cache: off on import, on for the CLI (flag and variable to turn it off),
``attnsvm cache info`` / ``clear``, and a program compiled by one process is loaded by the next."""

import os
import subprocess
import sys

from typer.testing import CliRunner

from attnsvm.cache import active_cache_dir, cache_dir, cache_info, configure_from_cli, enable_compilation_cache
from attnsvm.cli import app

runner = CliRunner()

PROBE = """
import json, sys, time
import jax
import attnsvm
from attnsvm.cache import active_cache_dir, configure_from_cli
before = active_cache_dir()
if sys.argv[1] == "cli":
    configure_from_cli(no_cache=False)
    # the probe compiles in a few ms on an idle machine: cache it whatever its compile time
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
import jax.numpy as jnp
t = time.perf_counter()
f = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) @ x.T, axis=0) + {k})
f(jnp.ones((37, 41))).block_until_ready()
print(json.dumps({{"before": before, "after": active_cache_dir(), "seconds": time.perf_counter() - t}}))
"""


def _probe(mode: str, tmp_path, k: int = 0, **env) -> dict:
    import json

    e = {**os.environ, "ATTNSVM_CACHE_DIR": str(tmp_path / "cache"), **env}
    out = subprocess.run([sys.executable, "-c", PROBE.format(k=k), mode], env=e, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_leaves_the_cache_off_the_cli_turns_it_on_and_a_second_process_loads(tmp_path):
    r = _probe("cli", tmp_path, k=1)
    assert r["before"] is None  # importing attnsvm turns nothing on
    assert r["after"] == str(tmp_path / "cache")
    n = cache_info(tmp_path / "cache")["entries"]
    assert n >= 1  # the program was written
    _probe("cli", tmp_path, k=1)  # the same program in a new process: read, nothing new written
    assert cache_info(tmp_path / "cache")["entries"] == n
    r = _probe("cli", tmp_path, k=2, ATTNSVM_NO_CACHE="1")
    assert r["after"] is None and cache_info(tmp_path / "cache")["entries"] == n


def test_cli_flag_info_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSVM_CACHE_DIR", str(tmp_path / "c"))
    try:
        res = runner.invoke(app, ["--no-cache", "cache", "info"])
        assert res.exit_code == 0 and active_cache_dir() is None
        res = runner.invoke(app, ["cache", "info"])
        assert res.exit_code == 0 and str(tmp_path / "c") in res.output and "on" in res.output
        assert active_cache_dir() == str(tmp_path / "c")
        (tmp_path / "c" / "sub").mkdir(parents=True)
        (tmp_path / "c" / "sub" / "entry").write_bytes(b"x" * 10)
        res = runner.invoke(app, ["cache", "clear"])
        assert res.exit_code == 0 and "removed 1 files" in res.output
        assert cache_info(tmp_path / "c")["entries"] == 0
        monkeypatch.setenv("ATTNSVM_NO_CACHE", "1")
        res = runner.invoke(app, ["cache", "info"])
        assert "off (ATTNSVM_NO_CACHE is set)" in res.output and active_cache_dir() is None
        assert configure_from_cli(no_cache=False) is None
    finally:
        monkeypatch.undo()
        enable_compilation_cache()  # back to the session's cache (conftest)
    assert active_cache_dir() == str(cache_dir())
