"""GPTQ for the MatMul weights of an ONNX graph, written as MatMulNBits.

GPTQ (Frantar et al., 2022) rounds the weights of a layer one input row at a time and
spreads each row's rounding error over the rows not yet rounded, weighted by the inverse
of the layer's input Hessian (X^T X over calibration data), so that the layer's outputs,
not its weights, stay close. ONNX Runtime 1.32 ships a GPTQ
(quantization.neural_compressor.weight_only.gptq) that updates along the zero half of its
triangular factor: its weights come out identical to round-to-nearest (byte for byte on
all-MiniLM-L6-v2), so this one is ours.

The grid is ONNX Runtime's own (MatMulNBits' blocks along K, its symmetric scale of
signed max / -8, its asymmetric min/max with a 4-bit zero point), so that a layer's codes
are what its round-to-nearest quantizer would write for the compensated weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.data import Dataset

BITS = 4
BLOCK = 128       # input rows updated together (a multiple of every group size)
DAMP = 0.01       # of the mean Hessian diagonal, added to it
CAPTURE_BATCH = 8
PAD_MASK = "attention_mask"  # an input of this name marks padding tokens (0) that no output reads


def hessians(model_path: Path, inputs: list[str], calibration: Dataset, batch_dynamic: bool,
             threads: int = 2) -> tuple[dict[str, np.ndarray], int]:
    """X^T X of each tensor in `inputs` (the activations the weights multiply) over the
    calibration data, as float64, and how many rows (tokens) went in. Rows of padding
    tokens (where an `attention_mask` input is 0) are left out."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    graph_inputs = {i.name for i in model.graph.input}
    have = {o.name for o in model.graph.output}
    for name in inputs:
        if name not in graph_inputs and name not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    fetch = [n for n in inputs if n not in graph_inputs]
    found: dict[str, np.ndarray] = {}
    rows = 0
    for feeds in calibration.batches(CAPTURE_BATCH if batch_dynamic else 1):
        outs = dict(zip(fetch, session.run(fetch, feeds)))
        outs.update({n: feeds[n] for n in inputs if n in graph_inputs})
        mask = feeds.get(PAD_MASK)
        for i, name in enumerate(inputs):
            x = _real_rows(np.asarray(outs[name], dtype=np.float64), mask)
            found[name] = found.get(name, 0) + x.T @ x
            rows += len(x) if i == 0 else 0
    return found, rows


def _real_rows(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """[..., C] activations as [rows, C], without the rows of padding tokens when the
    activation is laid out [batch, tokens, C] like the mask."""
    if mask is not None and x.ndim == 3 and tuple(x.shape[:2]) == tuple(np.shape(mask)):
        return x[np.asarray(mask) != 0]
    return x.reshape(-1, x.shape[-1])


def quantize(weight: np.ndarray, hessian: np.ndarray, group: int, symmetric: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPTQ of one [K, N] MatMul weight: (codes uint8 [N, K'] in 0..15, scales float32
    [N, K'/group], zero points uint8 [N, K'/group]), K' being K rounded up to whole groups
    (MatMulNBits' padding: zero weights for inputs that are not there)."""
    import torch

    pad = -weight.shape[0] % group
    weight = np.pad(weight, ((0, pad), (0, 0)))
    hessian = np.pad(hessian, ((0, pad), (0, pad)))
    k, n = weight.shape
    w = torch.tensor(weight.T, dtype=torch.float32)  # [N, K]: one output channel a row
    h = torch.tensor(hessian, dtype=torch.float64).clone()  # float64 for the factorisations only
    dead = torch.diagonal(h) == 0  # an input that was always zero: its weights do not matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += DAMP * torch.mean(torch.diagonal(h)) * torch.eye(k, dtype=torch.float64)
    # The upper Cholesky factor of H^-1: row i holds how the rows after i absorb i's error.
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).to(torch.float32)
    codes = torch.zeros(n, k, dtype=torch.uint8)
    scales = torch.zeros(n, k // group)
    zeros = torch.zeros(n, k // group)
    block = BLOCK - BLOCK % group if BLOCK >= group else group
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        part, err = w[:, b0:b1].clone(), torch.zeros(n, b1 - b0)
        ub = u[b0:b1, b0:b1]
        for i in range(b1 - b0):
            col = b0 + i
            if col % group == 0:  # the group's grid, fitted to its weights as compensated so far
                scale, zero = _grid(part[:, i:i + group], symmetric)
                scales[:, col // group], zeros[:, col // group] = scale, zero
            q = torch.clamp(torch.round(part[:, i] / scale) + zero, 0, 15)
            codes[:, col] = q.to(torch.uint8)
            e = (part[:, i] - (q - zero) * scale) / ub[i, i]
            part[:, i:] -= e[:, None] * ub[i, i:][None, :]
            err[:, i] = e
        w[:, b1:] -= err @ u[b0:b1, b1:]
    return codes.numpy(), scales.numpy(), zeros.numpy().astype(np.uint8)


def _grid(w, symmetric: bool):
    """ONNX Runtime's block grid for rows of weights: (scale, zero point) per row."""
    import torch

    hi, lo = w.max(dim=1).values, w.min(dim=1).values
    if symmetric:  # the larger magnitude, with its sign, lands on -8 (codes 0..15 around 8)
        scale = torch.where(hi.abs() > lo.abs(), hi, lo) / -8.0
        zero = torch.full_like(scale, 8.0)
    else:
        lo, hi = torch.clamp(lo, max=0), torch.clamp(hi, min=0)
        scale = (hi - lo) / 15.0
        zero = torch.clamp(torch.round(-lo / torch.where(scale == 0, torch.ones_like(scale), scale)), 0, 15)
    return torch.where(scale == 0, torch.ones_like(scale), scale), zero


def pack(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group: int, symmetric: bool
         ) -> list[np.ndarray]:
    """MatMulNBits' inputs B [N, K/group, group/2], scales [N, K/group] and (asymmetric)
    zero points [N, ceil(K/group / 2)]: two 4-bit values a byte, the first in the low nibble."""
    n, k = codes.shape
    b = _nibbles(codes).reshape(n, k // group, group // 2)
    if symmetric:
        return [b, scales]
    return [b, scales, _nibbles(np.pad(zeros, ((0, 0), (0, zeros.shape[1] % 2))))]


def _nibbles(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.uint8)
    return (v[:, 0::2] & 0xF) | ((v[:, 1::2] & 0xF) << 4)
