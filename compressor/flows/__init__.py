"""The flows: the one room of compressor/ that joins the core, targets/ and benchmarks/.

The run (export -> validate -> measure -> report), its run directory, the prune and qat
flows, the fallback's probing, tuning and the command line live here; nothing outside
this package imports targets/ or benchmarks/ (tests/test_import_direction.py holds it).
"""


def run_recipe(path, out=None, overwrite: bool = False, show_progress: bool = False) -> dict:
    """Run the recipe at `path` and return its report (the Python API of `compressor run`)."""
    import targets
    from compressor.config.recipe import load_recipe
    from compressor.flows.run import run

    return run(load_recipe(path, target_options=targets.option_models()), out, overwrite, show_progress)
