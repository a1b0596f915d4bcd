import os
import tempfile

# One compilation cache per test session, shared by the test process, the CLI subprocesses and the Dask
# workers the tests start (they inherit the variable): a program is compiled once per session, never read
# from a cache left by an earlier session or written to the user's own cache directory.
os.environ["ATTNSVM_CACHE_DIR"] = tempfile.mkdtemp(prefix="attnsvm-test-cache-")

import attnsvm  # noqa: E402, F401  (enables float64 in JAX before any test builds arrays)
from attnsvm.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
