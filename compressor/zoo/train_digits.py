"""Train the embedded DigitsCNN on scikit-learn's digits and write its safetensors.

    python -m compressor.zoo.train_digits [--epochs 40] [--out PATH]

Deterministic on a CPU (fixed seeds, one thread). Trains on the fixed train split of
`compressor.data.digits_arrays` and prints accuracy on the held-out test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from compressor.data import digits_arrays
from compressor.fsutil import atomic_path
from compressor.zoo import ZOO_DIR
from compressor.zoo.digits import WEIGHTS, DigitsCNN


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def train(epochs: int = 40, seed: int = 0) -> tuple[DigitsCNN, float]:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    xtr, ytr = digits_arrays("train")
    xte, yte = digits_arrays("test")
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = int(np.ceil(len(xtr) / 64))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(xtr))
        for i in range(steps_per_epoch):
            idx = order[i * 64:(i + 1) * 64]
            xb = torch.from_numpy(xtr[idx])
            # Shifts of one pixel: cheap augmentation that keeps digits legible at 8x8.
            dx, dy = rng.integers(-1, 2, size=2)
            xb = torch.roll(xb, shifts=(int(dy), int(dx)), dims=(2, 3))
            loss = loss_fn(model(xb), torch.from_numpy(ytr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  test accuracy {accuracy(model, xte, yte):.4f}")
    return model.eval(), accuracy(model, xte, yte)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ZOO_DIR / WEIGHTS)
    args = ap.parse_args()
    model, acc = train(args.epochs)
    with atomic_path(args.out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"test_accuracy": f"{acc:.4f}", "epochs": str(args.epochs)})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB), held-out accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
