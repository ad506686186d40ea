#!/usr/bin/env bash
# The soak test (200 epochs; SOAK_EPOCHS overrides), then its figures into
# docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pytest -q -m soak tests/test_soak.py
python3 - <<'PY'
import json
from pathlib import Path
from benchmarks.common import write_section
s = json.loads(Path("benchmarks/results/soak.json").read_text())
rows = s["rows"]
marks = sorted({0, 1, 5, s["warmup"], 50, 100, 150, len(rows) - 1} & set(range(len(rows))))
table = ["| epoch | seconds | resident MiB | threads |", "| ---: | ---: | ---: | ---: |"]
table += [f"| {r['epoch']} | {r['seconds']:.3f} | {r['rss_mib']:.1f} | {r['threads']} |"
          for r in (rows[i] for i in marks)]
write_section("soak", "\n".join([
    f"{s['epochs']} epochs of `salient_pipeline()` on the arxiv-sized graph (batch 1024, "
    "fanouts 15/10/5, 2 threads; every 10th epoch broken off after 6 batches). "
    f"Median epoch {s['median_epoch_s']:.3f} s.",
    "",
    f"- resident memory, median of epochs {s['warmup']}-{s['warmup'] + 19}: "
    f"{s['rss_settled_mib']:.1f} MiB; of the last 20 epochs: {s['rss_last_mib']:.1f} MiB; "
    f"growth **{s['rss_growth'] * 100:+.2f}%** (limit: 1%)",
    f"- threads after warm-up: {s['threads']} (constant)",
    "",
    *table,
]), doc=Path("docs/reliability.md"))
print("docs/reliability.md updated")
PY
