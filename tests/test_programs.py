"""Programs kept across processes (attnsvm.programs): loaded without tracing, never stale, never trusted blindly."""

import json
import subprocess
import sys
import textwrap
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnsvm import programs
from attnsvm.cache import disable_compilation_cache, enable_compilation_cache

SCRIPT = textwrap.dedent("""
    import json, sys
    from functools import partial
    import jax, jax.numpy as jnp, numpy as np
    from attnsvm.cache import enable_compilation_cache
    from attnsvm.programs import compile_program
    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache(sys.argv[1])
    traced = []

    @partial(jax.jit, static_argnames=("k",))
    def f(x, y, *, k):
        traced.append(1)  # runs only while tracing
        return {"a": x * k + jnp.sum(y), "b": (jnp.sin(x), None)}, [y.T]

    x, y = np.linspace(0.0, 1.0, 3), np.arange(6.0).reshape(2, 3)
    out = compile_program(f, (x, y), {"k": float(sys.argv[2])})(x, y)
    print(json.dumps({"traced": len(traced), "a": out[0]["a"].tolist(), "b0": out[0]["b"][0].tolist(),
                      "none": out[0]["b"][1] is None, "yT": out[1][0].tolist()}))
""")


def _run(tmp_path, k: float) -> dict:
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), str(k)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_kept_program_is_loaded_without_tracing_and_gives_the_same_numbers(tmp_path):
    x, y = np.linspace(0.0, 1.0, 3), np.arange(6.0).reshape(2, 3)
    first = _run(tmp_path, 2.0)
    assert first["traced"] == 1
    second = _run(tmp_path, 2.0)
    assert second["traced"] == 0  # deserialized, not traced
    assert second == {**first, "traced": 0}
    np.testing.assert_array_equal(second["a"], x * 2.0 + y.sum())
    np.testing.assert_array_equal(second["b0"], np.sin(x))
    assert second["none"] and second["yT"] == y.T.tolist()
    # a damaged program is rebuilt, not trusted: its checksum fails, it is traced and written again
    (blob,) = (tmp_path / "cache" / "programs").glob("*.bin")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert _run(tmp_path, 2.0) == first
    # another static value is another program
    assert _run(tmp_path, 3.0)["traced"] == 1


def test_the_key_follows_the_source_of_foreign_types(tmp_path):
    mod = tmp_path / "mymod.py"
    mod.write_text("from dataclasses import dataclass\n@dataclass(frozen=True)\nclass S:\n    a: int = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import mymod

        spec = ((3,), "float64"),
        tree = jax.tree.structure((np.zeros(3),))
        k1 = programs._key(programs.compile_program, {"s": mymod.S()}, tree, spec)
        mod.write_text(mod.read_text() + "# changed\n")
        k2 = programs._key(programs.compile_program, {"s": mymod.S()}, tree, spec)
        assert k1 is not None and k2 is not None and k1 != k2
        # a function as a static argument has no reliable key: not kept
        assert programs._key(programs.compile_program, {"f": lambda z: z}, tree, spec) is None
        assert programs._key(programs.compile_program, {"s": mymod.S(2)}, tree, spec) not in (k1, k2)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mymod", None)


def test_without_the_persistent_cache_nothing_is_written(tmp_path, monkeypatch):
    @partial(jax.jit, static_argnames=("k",))
    def g(x, *, k):
        return x + k

    before = jax.config.jax_compilation_cache_dir
    disable_compilation_cache()
    try:
        assert programs.programs_dir() is None
        x = jnp.arange(4.0)
        np.testing.assert_array_equal(programs.compile_program(g, (x,), {"k": 1.0})(x), np.arange(4.0) + 1)
    finally:
        if before:
            enable_compilation_cache(before)


@pytest.mark.parametrize("method", ["flow", "descent", "path",
                                    pytest.param("flow-plain", marks=pytest.mark.slow)])
def test_engines_give_the_same_numbers_from_a_kept_program(method):
    """Plain compile, exported (written) and exported (read back from disk): bit for bit the same run."""
    from attnsvm import Flow, Model, Radius, train
    from attnsvm.problem import unit_gaussian
    from attnsvm.training import NGD, Descent, Init, RegularizationPath

    probs = [unit_gaussian(3, 4, 5, seed=s) for s in range(3)]

    def run():
        programs._MEMORY.clear()
        if method.startswith("flow"):
            return train(probs, Model("factored"), Flow(), stop=Radius(5.0)).W
        if method == "descent":
            return train(probs, Model("combined"), Descent(NGD(lr=0.1), steps=50), init=Init(scheme="zero")).W
        return train(probs, Model("combined"), RegularizationPath(radii=[1.0, 2.0])).W

    folder = jax.config.jax_compilation_cache_dir  # the test session's cache (conftest)
    assert folder
    written, loaded = run(), run()
    assert list(programs.programs_dir().glob("*.bin"))
    np.testing.assert_array_equal(written, loaded)
    if method != "flow":  # the flow's plain compile takes ~15 s more: compared in the slow "flow-plain" case
        disable_compilation_cache()
        try:
            plain = run()
        finally:
            enable_compilation_cache(folder)
        np.testing.assert_array_equal(plain, written)


def test_an_option_this_xla_does_not_know_is_left_out(monkeypatch):
    """A JAX whose XLA lacks one of ``XLA_OPTIONS`` still compiles every program (without that option)."""
    @partial(jax.jit, static_argnames=("k",))
    def h(x, *, k):
        return x * k

    bogus = "xla_cpu_option_that_does_not_exist_for_attnsvm"
    monkeypatch.setattr(programs, "XLA_OPTIONS", {**programs.XLA_OPTIONS, bogus: True})
    monkeypatch.setattr(programs, "_UNKNOWN_OPTIONS", set())
    programs._MEMORY.clear()
    x = jnp.arange(3.0)
    np.testing.assert_array_equal(programs.compile_program(h, (x,), {"k": 3.0})(x), 3.0 * np.arange(3.0))
    assert programs._UNKNOWN_OPTIONS == {bogus}  # the known options were kept
    with pytest.raises(jax.errors.JaxRuntimeError, match="No such compile option"):
        jax.jit(lambda v: v + 1).lower(x).compile(compiler_options={bogus: True})


@pytest.mark.parametrize("param", ["combined", "factored"])
def test_descent_is_bit_identical_with_and_without_the_xla_options(monkeypatch, param):
    """The code generation chosen by ``XLA_OPTIONS`` changes compile time only: the same descent, records
    included, to the last bit (the claim of attnsvm.programs' docstring)."""
    from attnsvm import Model, train
    from attnsvm.problem import unit_gaussian
    from attnsvm.training import NGD, Descent, Init, Save

    probs = [unit_gaussian(4, 5, 6, seed=s) for s in range(4)]

    def run():
        programs._MEMORY.clear()
        return train(probs, Model(param), Descent(NGD(lr=0.2), steps=60), save=Save(every=20),
                     init=Init(scheme="gaussian", scale=0.1, seed=1))

    with_options = run()
    monkeypatch.setattr(programs, "XLA_OPTIONS", {})
    without = run()
    np.testing.assert_array_equal(with_options.W, without.W)
    for k, v in with_options.metrics.items():
        np.testing.assert_array_equal(v, without.metrics[k], err_msg=k)
