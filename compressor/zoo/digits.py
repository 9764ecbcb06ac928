"""A small CNN for scikit-learn's 8x8 handwritten digits: the embedded default model.

Conv-BN-ReLU blocks, a max-pool, global average pooling and a linear classifier: the
same building blocks as the ResNet family, small enough to train in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS = "digits_cnn.safetensors"
WEIGHTS_PATH = Path(__file__).resolve().parent / WEIGHTS


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(1, width),
            _block(width, width),
            nn.MaxPool2d(2),                 # 8x8 -> 4x4
            _block(width, 2 * width),
            _block(2 * width, 2 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def digits_cnn(width: int = 32) -> DigitsCNN:
    """Factory used by recipes: `factory: compressor.zoo.digits:digits_cnn`."""
    return DigitsCNN(width=width).eval()
