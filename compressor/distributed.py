"""Distributed fine-tuning with torch.distributed, launched by torchrun:

    torchrun --nproc-per-node 2 -m compressor run recipe.yaml
    torchrun --nnodes 2 --node-rank 0 --rdzv-backend c10d --rdzv-endpoint host:29400 \
             --nproc-per-node 8 -m compressor run recipe.yaml

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them
this is a single process and nothing here does anything. Every process trains on its
slice of each global batch (so the global batch, and the learning rate that goes with
it, stay those of the recipe), DistributedDataParallel averages the gradients, and only
rank 0 writes checkpoints, artifacts and reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_from_env() -> World:
    """Join the process group torchrun describes (gloo on CPUs, nccl with GPUs;
    COMPRESSOR_DIST_BACKEND overrides)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = os.environ.get("COMPRESSOR_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend)
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def wrap(module, world: World):
    """DistributedDataParallel around `module` when there is more than one process."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def shard(world: World) -> Callable[[np.ndarray], np.ndarray] | None:
    """This process's deterministic share of a global batch (every process draws the same
    permutation). A batch smaller than the world is used whole by every process: equal
    gradients average to themselves, and no process is left with an empty batch."""
    if not world.distributed:
        return None

    def take(idx: np.ndarray) -> np.ndarray:
        return idx if len(idx) < world.size else idx[world.rank::world.size]

    return take


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()
