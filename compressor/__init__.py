"""compressor: take a trained PyTorch model through compression to validated,
benchmarked deployment artifacts.

This package imports nothing heavy at import time (no torch, no runtimes, never
TensorFlow): the command line answers fast and a target's runtime loads only when used.
"""

__version__ = "0.1.0"

