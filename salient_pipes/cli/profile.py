"""``train --profile DIR``: per epoch, the wait for data and each stage's share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional


def write_profile(directory: Path, history: List[dict], device: str) -> Optional[Path]:
    """Writes ``profile.json`` (per epoch: seconds, data wait, per-stage
    waits) and, when matplotlib is installed, ``stages.png``: each epoch's
    time split into the wait for data and the steps, and the last epoch's
    per-stage waits. Returns the plot's path, or None without matplotlib."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profile.json").write_text(json.dumps({"device": device,
                                                        "epochs": history}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8),
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    epochs = [row["epoch"] for row in history]
    waits = [row["data_wait_s"] for row in history]
    steps = [row["train_s"] - row["data_wait_s"] for row in history]
    left.bar(epochs, steps, label="training steps")
    left.bar(epochs, waits, bottom=steps, label="waiting for data")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("epoch")
    left.set_ylabel("seconds")
    left.legend()
    stages = history[-1]["stages"] if history else []
    right.barh([s["stage"] for s in stages], [s["self_s"] for s in stages])
    right.invert_yaxis()
    right.xaxis.set_major_locator(MaxNLocator(nbins=5))
    right.set_xlabel("seconds its consumer waited on it (last epoch)")
    fig.tight_layout()
    path = directory / "stages.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
