"""A tiny Hugging Face BertModel (random weights, 2 layers, hidden 32) wrapped as a user
would: the 0/1 attention mask passed as the tokenizer gives it; shared by the export and
int8 tests of the torch-based targets."""

import numpy as np
import torch
from torch import nn

from compressor.config.recipe import InputSpec
from compressor.model import Model

SEQ = 16
NAMES = ("input_ids", "attention_mask", "token_type_ids")


class UserEncoder(nn.Module):
    """What a user writes around BertModel: the mask as the tokenizer gives it, a tensor out."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids).last_hidden_state


def tiny(wrapper=UserEncoder) -> Model:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=SEQ)
    return Model(module=wrapper(BertModel(config, add_pooling_layer=False)).eval(),
                 inputs=[InputSpec(name=n, shape=[1, SEQ], dtype="int64") for n in NAMES])


def feeds(padded: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 100, (3, SEQ))
    mask = np.ones((3, SEQ), np.int64)
    if padded:
        mask[0, 5:], mask[1, 11:] = 0, 0
        ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
