import attnsvm

# the tests call the low-level JAX functions (attnsvm.models) directly: float64 for the whole test process
# (importing attnsvm alone changes no global setting; tests/test_training.py checks that in a fresh process)
attnsvm.enable_x64()
