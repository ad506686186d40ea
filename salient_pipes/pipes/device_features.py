"""Features resident on the device: the tables are copied there once, the
sampling workers gather only labels, a batch crosses with its ids and
adjacency, and its rows are gathered on the device, on the prefetch stage's
copy stream (``salient_pipeline(..., features_on="cuda")``)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from salient_pipes.batch import NODE_TYPE, ids_per_type, with_features

MARGIN = 1 << 30  # device memory left free beyond the tables (batches, the model)


class DeviceFeatures:
    """Feature tables kept on ``device``; :meth:`fill` gathers a batch's
    rows there by its ``n_id`` (already on the device).

    Args:
        x: a table (a graph of one node type) or a dict per node type.
        device: where the tables live.

    Example:
        >>> from salient_pipes.batch import PreparedBatch
        >>> x = torch.arange(8.).view(4, 2)
        >>> feats = DeviceFeatures(x, "cpu")
        >>> b = PreparedBatch(x=None, y=None, adjs=[], n_id=torch.tensor([3, 1]))
        >>> feats.fill(b).x.tolist()
        [[6.0, 7.0], [2.0, 3.0]]
    """

    def __init__(self, x: Union[Tensor, Mapping[str, Tensor]],
                 device: Union[str, torch.device]) -> None:
        self.device = torch.device(device)
        tables = dict(x) if isinstance(x, Mapping) else {NODE_TYPE: x}
        self.tables: Dict[str, Tensor] = {}
        for t, table in tables.items():
            if not isinstance(table, Tensor):
                raise ValueError(f"features must be tensors, got {type(table).__name__} for "
                                 f"{t!r}")
            if table.numel():
                self.tables[t] = table.to(self.device)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tables.values())

    def fill(self, batch: Any) -> Any:
        """``batch`` with ``x`` gathered from the tables by its ``n_id``."""
        ids = ids_per_type(batch)
        return with_features(batch, {t: self.tables[t].index_select(0, ids[t])
                                     for t in self.tables if t in ids})

    def __repr__(self) -> str:
        return f"DeviceFeatures({self.nbytes / 2**30:.2f} GiB on {self.device})"


def choose_placement(features_on: Optional[str], device: torch.device,
                     x_bytes: int, free: Optional[int] = None) -> Tuple[Optional[torch.device],
                                                                       str]:
    """Where the features of ``x_bytes`` go for ``features_on``: ``None`` or
    ``"host"`` (gathered by the sampling workers, as always), a device
    name, or ``"auto"``: ``device`` when it is a GPU whose free memory
    (``free``, default: measured) holds them with :data:`MARGIN` to spare.
    Returns the device (``None``: the host) and a sentence saying why.

    Example:
        >>> choose_placement("auto", torch.device("cpu"), 10)[1]
        'features on the host: the device is the CPU'
    """
    if features_on in (None, "host"):
        return None, "features on the host"
    if features_on != "auto":
        return torch.device(features_on), f"features on {features_on} (as asked)"
    if device.type != "cuda":
        return None, f"features on the host: the device is the {device.type.upper()}"
    if free is None:
        free = torch.cuda.mem_get_info(device)[0]
    if x_bytes + MARGIN <= free:
        return device, (f"features on {device}: {x_bytes / 2**30:.2f} GiB of "
                        f"{free / 2**30:.2f} GiB free")
    return None, (f"features on the host: {x_bytes / 2**30:.2f} GiB do not fit the "
                  f"{free / 2**30:.2f} GiB free on {device} with "
                  f"{MARGIN / 2**30:.0f} GiB to spare")


__all__ = ["DeviceFeatures", "choose_placement"]
