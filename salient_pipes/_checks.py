"""Argument checks shared by the public API: each error names the argument
the user passed and what was wrong with it, instead of coercing silently."""

from __future__ import annotations

import numbers
from typing import Any, List, Optional

import numpy as np
import torch
from torch import Tensor


def check_int(name: str, value: Any, *, minimum: Optional[int] = None) -> int:
    """``value`` as an int; ``ValueError`` for floats, bools, strings, or a
    value below ``minimum``.

    Example:
        >>> check_int("batch_size", 4, minimum=1)
        4
        >>> check_int("batch_size", 4.5)
        Traceback (most recent call last):
        ValueError: batch_size must be an int, got 4.5 (float)
    """
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float within [0, 1]; ``ValueError`` otherwise.

    Example:
        >>> check_probability("dropout", 0.5)
        0.5
        >>> check_probability("dropout", 2)
        Traceback (most recent call last):
        ValueError: dropout must be a probability within [0, 1], got 2
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability within [0, 1], got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float > 0 (an int or a float, not a bool); ``ValueError``
    otherwise.

    Example:
        >>> check_positive("scale", 0.5)
        0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def usable_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device`` this process can use; ``ValueError``
    for a name that is no device, CUDA without CUDA, or a CUDA index past the
    visible ones.

    Example:
        >>> usable_device("cpu")
        device(type='cpu')
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU build" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device {resolved} requested but CUDA is not available ({why})")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {resolved} requested but this process sees "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved


def check_fanouts(value: Any, name: str = "fanouts") -> List[int]:
    """A list of per-hop fanouts: positive ints, or -1 for every neighbor.

    Example:
        >>> check_fanouts((15, 10, -1))
        [15, 10, -1]
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a sequence of ints (one per hop), got {value!r}")
    fanouts = [check_int(f"{name}[{h}]", f) for h, f in enumerate(value)]
    if not fanouts:
        raise ValueError(f"{name} must name at least one hop")
    for h, f in enumerate(fanouts):
        if f == 0 or f < -1:
            raise ValueError(f"{name}[{h}] = {f}: each fanout must be a positive count, "
                             "or -1 for all neighbors")
    return fanouts


def as_node_ids(name: str, value: Any, num_nodes: Optional[int] = None) -> Tensor:
    """A 1-D int64 tensor of node ids from ids or a bool mask (PyG's
    ``train_mask`` style). A mask must have one entry per node when
    ``num_nodes`` is known; ids must lie in ``[0, num_nodes)``.

    Example:
        >>> as_node_ids("input_nodes", torch.tensor([True, False, True]), 3).tolist()
        [0, 2]
    """
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    elif isinstance(value, (list, tuple, range)):
        value = torch.as_tensor(list(value), dtype=torch.int64 if len(value) == 0 else None)
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a tensor of node ids or a bool mask, "
                         f"got {type(value).__name__}")
    if value.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(value.shape)}")
    if value.device.type == "meta":
        raise ValueError(f"{name} is on the meta device, which holds no values: pass the "
                         "node ids as a CPU tensor")
    value = value.cpu()  # ids on a GPU are read on the host
    if value.dtype == torch.bool:
        if num_nodes is not None and value.numel() != num_nodes:
            raise ValueError(f"{name} is a bool mask of {value.numel()} entries, "
                             f"but the graph has {num_nodes} nodes")
        return value.nonzero().view(-1)
    if value.is_floating_point() or value.is_complex():
        raise ValueError(f"{name} must hold integer node ids or be a bool mask, got {value.dtype}")
    ids = value.to(torch.int64)
    if num_nodes is not None and ids.numel() and (int(ids.min()) < 0
                                                   or int(ids.max()) >= num_nodes):
        raise ValueError(f"{name} holds node ids outside [0, {num_nodes})")
    return ids


def check_input_id(value: Any, count: int, of: str) -> Tensor:
    """PyG's ``input_id``: one integer per entry of ``of`` (``count`` of
    them), as a 1-D int64 tensor.

    Example:
        >>> check_input_id([4, 9], 2, "input_nodes").tolist()
        [4, 9]
    """
    ids = torch.as_tensor(value)
    if ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"input_id must be a 1-D tensor of integers, got {ids.dtype} of shape "
                         f"{tuple(ids.shape)}")
    if ids.numel() != count:
        raise ValueError(f"input_id has {ids.numel()} entries but {of} has {count}")
    return ids.to(torch.int64)
