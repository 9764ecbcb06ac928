"""The qat step: quantization-aware training with PT2E (x86 and LiteRT quantizers) and
FX (TorchScript), fine-tuned with the shared loop (compressor.finetune).

Importing this package is cheap (the config only); torch loads when the step runs.
"""

from __future__ import annotations

from compressor.config.qat import QatStep, Sensitivity

__all__ = ["QatStep", "Sensitivity"]
