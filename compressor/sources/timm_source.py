"""A timm model by name: `model: {timm: resnet18, weights: file, kwargs: {...}}`.

The architecture comes from timm.create_model(name, pretrained=False): nothing is
downloaded, the trained weights come from `weights`. Without `inputs` in the recipe the
model takes pixel_values of its pretrained config's input size, batch first.
"""

from __future__ import annotations

import difflib

from torch import nn

from compressor.config.model import InputSpec
from compressor.errors import CompressorError, ModelLoadError, first_line

INPUT_NAME = "pixel_values"


def build_timm(name: str, kwargs: dict) -> tuple[nn.Module, list[InputSpec]]:
    """The timm model, in eval mode, and its default input."""
    import timm

    where = f"timm model {name!r}"
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else "list them with python -c \"import timm; " \
            "print(timm.list_models('*resnet*'))\""
        raise ModelLoadError(f"{where}: timm {timm.__version__} has no model of that name; {hint}")
    try:
        module = timm.create_model(name, pretrained=False, **kwargs)
    except CompressorError:
        raise
    except Exception as e:  # noqa: BLE001 - timm passes kwargs down to the model class
        raise ModelLoadError(f"{where}: timm.create_model failed with kwargs {kwargs} ({type(e).__name__}: "
                             f"{first_line(e)}); fix model.kwargs") from None
    cfg = getattr(module, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") or (3, 224, 224)
    return module.eval(), [InputSpec(name=INPUT_NAME, shape=[1, *map(int, size)], dtype="float32")]
