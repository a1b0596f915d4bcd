import os
import tempfile

# One compilation cache per test session, shared by the test process, the CLI subprocesses and the Dask
# workers the tests start (they inherit the variable): a program is compiled once per session, never read
# from a cache left by an earlier session or written to the user's own cache directory.
os.environ["ATTNSVM_CACHE_DIR"] = tempfile.mkdtemp(prefix="attnsvm-test-cache-")

import attnsvm  # noqa: E402
from attnsvm.cache import enable_compilation_cache  # noqa: E402

# the tests call the low-level JAX functions (attnsvm.models) directly: float64 for the whole test process
# (importing attnsvm alone changes no global setting; tests/test_training.py checks that in a fresh process)
attnsvm.enable_x64()
enable_compilation_cache()
