"""A tiny squeeze-excite + hard-swish network that plain static int8 breaks on purpose.

One channel of `mix` runs `outlier` times larger than the others and the head reads it
scaled back down (the pattern of real outlier channels in transformers and SE nets): a
per-tensor activation scale sized for that channel leaves the others a handful of int8
levels, so int8 everywhere misses cosine 0.99 while the float model is unaffected.
Keeping `head` (whose input is that tensor) in float repairs it.
"""

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, c // r, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(c // r, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class FragileSE(nn.Module):
    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.stem_act = nn.Hardswish()
        self.se = SqueezeExcite(width)
        self.mix = nn.Conv2d(width, width, 3, padding=1)
        self.mix_act = nn.Hardswish()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.stem_act(self.stem(x)))
        x = self.mix_act(self.mix(x))
        return self.head(torch.flatten(self.pool(x), 1))


def fragile_se(outlier: float = 200.0) -> FragileSE:
    torch.manual_seed(0)
    m = FragileSE()
    with torch.no_grad():
        m.mix.weight[0] *= outlier
        m.mix.bias[0] = outlier
        m.head.weight[:, 0] /= outlier
    return m.eval()
