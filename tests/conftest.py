import attnsvm  # noqa: F401  (enables float64 in JAX before any test builds arrays)
