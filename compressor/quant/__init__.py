"""Int8 lowering as plain algorithm: the fallback's search for the fewest layers to keep
in float, over a probe callable that the caller (compressor/flows/fallback/) backs with
real exports and runs on a target's runtime, and the `Lowering` record that targets use
to describe their other lowerings of the same intent.

    from compressor.quant.search import Lowering, search
    found = search(probe, [Lowering("default")], order, in_model_order, budget)

Nothing here imports a target, a runtime or torch.
"""
