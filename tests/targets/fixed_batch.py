"""A model that only runs at batch 1, shared by the pt2 and TorchScript tests."""

from torch import nn


class FixedBatch(nn.Module):
    """Reshapes to a batch of exactly 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8 * 64, 4)

    def forward(self, x):
        return self.fc(self.conv(x).reshape(1, 8 * 64))
