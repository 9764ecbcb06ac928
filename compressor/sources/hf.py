"""A local Hugging Face folder as a model source: `model: {hf: folder, task: ...}`.

The folder is read with local_files_only (and the hub set offline): nothing is
downloaded. `task` picks the head, and with it the inputs and the output:

- feature-extraction: the base model, mean-pooled over the attention mask and
  L2-normalised (how sentence-transformers uses an encoder);
- sequence-classification: the classification model's logits;
- image-classification: the image classification model's logits on pixel_values.

The wrappers return plain tensors and build the attention mask themselves, with no
data-dependent Python branch, so torch.export, the ONNX dynamo exporter, litert-torch
and a TorchScript trace all see the same graph.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from pathlib import Path

import torch
from torch import nn

from compressor.config.model import TEXT_INPUTS, InputSpec
from compressor.errors import CompressorError, ModelLoadError, first_line

IMAGE_INPUT = "pixel_values"
DEFAULT_SEQ_LEN = 128
DEFAULT_IMAGE_SIZE = 224
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
# task -> (the Auto class that builds it, the name of transformers' model_type -> class mapping)
TASKS = {"feature-extraction": ("AutoModel", "MODEL_MAPPING_NAMES"),
         "sequence-classification": ("AutoModelForSequenceClassification",
                                     "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"),
         "image-classification": ("AutoModelForImageClassification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES")}


def additive_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """BERT's classic additive mask [B, 1, 1, S], built once: transformers' own mask utilities
    take a data-dependent branch on the mask that neither TorchScript nor every exporter
    follows; a prepared 4D mask is passed through as it is."""
    keep = attention_mask[:, None, None, :].to(torch.float32)
    return (1.0 - keep) * torch.finfo(torch.float32).min


def _token_types(token_type_ids: torch.Tensor | None) -> dict:
    # A branch on whether the input was given at all, fixed when the graph is captured.
    return {} if token_type_ids is None else {"token_type_ids": token_type_ids}


class PooledEncoder(nn.Module):
    """A text encoder taking (input_ids, attention_mask[, token_type_ids]) and returning the
    mean of its last hidden states over the real tokens, L2-normalised. The backbone keeps
    its own prefix (`bert.` for a BertModel), so layer names read as in transformers."""

    gives_embeddings = True  # no class scores: validation judges cosine, not top-1 agreement

    def __init__(self, backbone: nn.Module, normalize: bool = True, prefix: str | None = None) -> None:
        super().__init__()
        self.prefix = prefix or getattr(backbone, "base_model_prefix", "") or "backbone"
        self.add_module(self.prefix, backbone)
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        backbone = self._modules[self.prefix]
        hidden = backbone(input_ids=input_ids, attention_mask=additive_mask(attention_mask), return_dict=True,
                          **_token_types(token_type_ids)).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


class TextLogits(nn.Module):
    """A sequence classification model as (input_ids, attention_mask[, token_type_ids]) -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=additive_mask(attention_mask), return_dict=True,
                          **_token_types(token_type_ids)).logits


class ImageLogits(nn.Module):
    """An image classification model as pixel_values -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits


@contextlib.contextmanager
def quiet_transformers():
    """transformers' load report (unused or newly initialised weights) and its weight-loading
    progress bar, silenced for the duration; the hub set offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from compressor.logs import quiet_third_party

    quiet_third_party()  # before transformers imports torchao, whose import makes torch log a notice
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def load_hf(folder: Path, task: str | None, sequence_length: int | None
            ) -> tuple[nn.Module, list[InputSpec], Path | None]:
    """The folder's model wrapped for `task`, its default inputs, and the folder again when
    it holds a tokenizer (for text data), else None."""
    where = f"hf folder {folder}"
    config = _config(folder, where)
    task = task or default_task(config)
    _check_fits(config, task, where)
    _check_weights(folder, where)
    model = _from_pretrained(folder, config, task, where)
    if task == "image-classification":
        return ImageLogits(model).eval(), [_image_input(folder, config)], None
    wrapper = PooledEncoder(model) if task == "feature-extraction" else TextLogits(model)
    takes = inspect.signature(model.forward).parameters
    names = [n for n in TEXT_INPUTS if n in takes]
    seq = _sequence_length(config, sequence_length, where)
    inputs = [InputSpec(name=n, shape=[1, seq], dtype="int64") for n in names]
    return wrapper.eval(), inputs, folder if has_tokenizer(folder) else None


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def _config(folder: Path, where: str):
    if not folder.exists():
        raise ModelLoadError(f"{where}: no such folder; give the folder save_pretrained wrote (config.json and "
                             "the weights)")
    if not folder.is_dir():
        raise ModelLoadError(f"{where} is a file, not a folder; give the folder save_pretrained wrote")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{where} has no config.json; give the folder save_pretrained wrote (config.json "
                             "beside the weights)")
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{where}: config.json is not valid JSON ({first_line(e)})") from None
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises ValueError, KeyError, OSError for one bad config
        raise ModelLoadError(f"{where}: transformers cannot read config.json ({type(e).__name__}: "
                             f"{first_line(e)}); check its model_type") from None


def default_task(config) -> str:
    """The task the folder was saved for, from config.architectures (a base model is read
    as a feature extractor)."""
    arch = (getattr(config, "architectures", None) or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        return "sequence-classification"
    if arch.endswith("ForImageClassification") or not _is_text(config):
        return "image-classification"
    return "feature-extraction"


def _is_text(config) -> bool:
    return getattr(config, "vocab_size", None) is not None


def fitting_tasks(config) -> list[str]:
    from transformers.models.auto import modeling_auto

    fits = [t for t, (_, mapping) in TASKS.items() if config.model_type in getattr(modeling_auto, mapping)]
    if not _is_text(config) and "feature-extraction" in fits:
        fits.remove("feature-extraction")  # mean pooling over an attention mask is for text
    return fits


def _check_fits(config, task: str, where: str) -> None:
    fits = fitting_tasks(config)
    if task not in fits:
        also = f"it fits {', '.join(fits)}" if fits else "transformers has none of the tasks here for it"
        raise ModelLoadError(f"{where}: task {task} does not fit its model_type {config.model_type!r}; {also} "
                             f"(set model.task to one of them)")


def _check_weights(folder: Path, where: str) -> None:
    found = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not found:
        raise ModelLoadError(f"{where} has no weights (looked for {', '.join(WEIGHT_FILES)}); save the model with "
                             "save_pretrained")
    if found[0].name == "model.safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(found[0]), framework="pt") as f:
                for key in f.keys():  # reading every tensor finds a file cut short
                    f.get_slice(key)
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelLoadError(f"{where}: model.safetensors is not a readable safetensors file ({first_line(e)}); "
                                 "save the model again with save_pretrained") from None


def _from_pretrained(folder: Path, config, task: str, where: str) -> nn.Module:
    import transformers

    auto = getattr(transformers, TASKS[task][0])
    cls = auto._model_mapping[type(config)]
    extra = {}
    if task == "feature-extraction" and "add_pooling_layer" in inspect.signature(cls.__init__).parameters:
        extra["add_pooling_layer"] = False  # the pooled embedding does not use BERT's pooler
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(str(folder), config=config, local_files_only=True,
                                              attn_implementation="eager", output_loading_info=True, **extra)
    except CompressorError:
        raise
    except Exception as e:  # noqa: BLE001 - a bad weight file surfaces as many types
        raise ModelLoadError(f"{where}: transformers cannot load the weights ({type(e).__name__}: "
                             f"{first_line(e)}); save the model again with save_pretrained") from None
    missing = list(info.get("missing_keys") or ())
    if missing:
        arch = ", ".join(getattr(config, "architectures", None) or ["?"])
        shown = ", ".join(sorted(missing)[:3]) + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "")
        raise ModelLoadError(f"{where}: the weights lack {shown}, which task {task} needs (the folder was saved "
                             f"as {arch}); set model.task to the task it was trained for")
    return model.float().eval()


def _sequence_length(config, asked: int | None, where: str) -> int:
    limit = getattr(config, "max_position_embeddings", None)
    if asked is not None and limit is not None and asked > limit:
        raise ModelLoadError(f"{where}: sequence_length {asked} exceeds the model's max_position_embeddings "
                             f"{limit}; use at most {limit}")
    return asked or min(DEFAULT_SEQ_LEN, limit or DEFAULT_SEQ_LEN)


def _image_input(folder: Path, config) -> InputSpec:
    channels = int(getattr(config, "num_channels", 3) or 3)
    size = getattr(config, "image_size", None) or _processor_size(folder) or DEFAULT_IMAGE_SIZE
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return InputSpec(name=IMAGE_INPUT, shape=[1, channels, h, w], dtype="float32")


def _processor_size(folder: Path) -> int | tuple[int, int] | None:
    """The image size the folder's image processor crops or resizes to, if it says."""
    try:
        proc = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    for key in ("crop_size", "size"):
        size = proc.get(key) if isinstance(proc, dict) else None
        if isinstance(size, int):
            return size
        if isinstance(size, dict):
            if "height" in size and "width" in size:
                return int(size["height"]), int(size["width"])
            if "shortest_edge" in size:
                return int(size["shortest_edge"])
    return None


def load_tokenizer(folder: Path, where: str, error: type[CompressorError] = ModelLoadError):
    """A Hugging Face tokenizer from `folder`, read locally; `where` names the data source."""
    if not folder.is_dir():
        raise error(f"{where}: tokenizer folder {folder} does not exist; give a folder with "
                    "tokenizer.json or vocab.txt (what save_pretrained writes)")
    if not has_tokenizer(folder):
        raise error(f"{where}: {folder} holds no tokenizer (looked for {', '.join(TOKENIZER_FILES)})")
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - a broken tokenizer file surfaces as many types
        raise error(f"{where}: cannot read the tokenizer in {folder} ({type(e).__name__}: "
                    f"{first_line(e)})") from None
