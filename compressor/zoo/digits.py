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


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """A 3x3 convolution (padding 1, no bias: the norm has one), batch norm and ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PooledClassifier(nn.Module):
    """Convolutional features, global average pooling and a linear classifier."""

    def __init__(self, features: nn.Module, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class DigitsCNN(PooledClassifier):
    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__(nn.Sequential(
            conv_block(1, width),
            conv_block(width, width),
            nn.MaxPool2d(2),                 # 8x8 -> 4x4
            conv_block(width, 2 * width),
            conv_block(2 * width, 2 * width),
        ), 2 * width, num_classes)


def digits_cnn(width: int = 32) -> DigitsCNN:
    """Factory used by recipes: `factory: compressor.zoo.digits:digits_cnn`."""
    return DigitsCNN(width=width).eval()
