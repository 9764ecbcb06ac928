"""A wider CNN for scikit-learn's digits upsampled to 32x32: the demo's model.

The 8x8 DigitsCNN (compressor.zoo.digits) is done in 0.04 ms, so every artifact of it
times the runtime's per-call overhead and int8 cannot show what it is for. This one does
about 95 million multiply-adds an image, nearly all in 3x3 convolutions producing 64 to
256 channels (multiples of 32, which int8 kernels tile without remainders), so the time
goes where quantization helps: static int8 ONNX runs it about 3x faster than fp32. Same building blocks as DigitsCNN and the ResNet family.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from compressor.zoo.digits import PooledClassifier, conv_block

WEIGHTS = "digits_wide_cnn.safetensors"
WEIGHTS_PATH = Path(__file__).resolve().parent / WEIGHTS
SIDE = 32  # the digits' resolution this model takes (data source option `resolution`)


class DigitsWideCNN(PooledClassifier):
    def __init__(self, width: int = 64, num_classes: int = 10) -> None:
        super().__init__(nn.Sequential(
            conv_block(1, width // 2),
            conv_block(width // 2, width),
            nn.MaxPool2d(2),                 # 32x32 -> 16x16
            conv_block(width, 2 * width),
            conv_block(2 * width, 2 * width),
            nn.MaxPool2d(2),                 # 16x16 -> 8x8
            conv_block(2 * width, 4 * width),
        ), 4 * width, num_classes)


def digits_wide_cnn(width: int = 64) -> DigitsWideCNN:
    """Factory used by recipes: `factory: compressor.zoo.digits_wide:digits_wide_cnn`."""
    return DigitsWideCNN(width=width).eval()
