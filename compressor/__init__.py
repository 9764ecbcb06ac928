"""compressor: take a trained PyTorch model through compression to validated,
benchmarked deployment artifacts.

This package imports nothing heavy at import time (no torch, no runtimes, never
TensorFlow): the command line answers fast and a target's runtime loads only when used.
"""

__version__ = "0.1.0"


def run_recipe(path, out=None, overwrite: bool = False, show_progress: bool = False) -> dict:
    """Run the recipe at `path` and return its report (the Python API of `compressor run`)."""
    import targets
    from compressor.pipeline import run
    from compressor.config.recipe import load_recipe

    return run(load_recipe(path, target_options=targets.option_models()), out, overwrite, show_progress)
