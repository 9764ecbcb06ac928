"""A small decoder language model built from a transformers LlamaConfig, random weights:
for size and latency (weight-only int4/int8 of its linear layers and embeddings), not for
what it says. Its forward takes token ids and returns the logits of every position, with
no key/value cache (use_cache=False), so that it exports as one plain graph.

    model: {factory: compressor.zoo.decoder:tiny_llama, inputs: [{name: input_ids, shape: [1, 128],
            dtype: int64}], outputs: [logits]}
"""

from __future__ import annotations

import torch
from torch import nn


class CausalLM(nn.Module):
    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, use_cache=False, return_dict=True).logits


def tiny_llama(vocab_size: int = 8192, hidden_size: int = 512, intermediate_size: int = 1376,
               num_hidden_layers: int = 4, num_attention_heads: int = 8, max_position_embeddings: int = 256,
               seed: int = 0) -> CausalLM:
    """Llama's architecture (RMSNorm, rotary positions, SwiGLU MLP, untied head) at 21 M
    parameters by default."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                         num_key_value_heads=num_attention_heads, max_position_embeddings=max_position_embeddings,
                         tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(seed)
    return CausalLM(LlamaForCausalLM(config)).eval()
