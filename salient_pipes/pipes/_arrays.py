"""Zero-copy crossings between torch tensors and the native core's buffers."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# numpy has no bfloat16: such rows cross as their 16-bit pattern. The native
# gather copies bytes, so the pattern survives unchanged.
_CARRIERS = {torch.bfloat16: torch.int16}


def as_buffer(t: Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor, for the native core to read."""
    if t.device.type != "cpu":
        raise ValueError(f"the native core reads CPU tensors, got one on {t.device}")
    carrier = _CARRIERS.get(t.dtype)
    return (t.view(carrier) if carrier else t).detach().contiguous().numpy()


def from_buffer(a: np.ndarray, dtype: torch.dtype) -> Tensor:
    """The tensor of ``dtype`` over a buffer the native core filled."""
    t = torch.from_numpy(a)
    return t.view(dtype) if dtype in _CARRIERS else t


def as_index(t: Tensor) -> np.ndarray:
    """An int64 numpy view of an index tensor (a copy only if it is not int64)."""
    t = torch.as_tensor(t)
    if t.dtype != torch.int64:
        if t.dtype == torch.bool:
            raise ValueError("a seed batch must hold node ids, got a bool tensor; start the "
                             "chain with NodeIndices(mask) to turn a mask into ids")
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"node indices must be integers, got {t.dtype}")
        t = t.to(torch.int64)
    return as_buffer(t.reshape(-1))
