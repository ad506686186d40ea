"""Every code block of README.md and docs/ runs as written, or says on its
first line what it needs (``# needs a CUDA GPU``, ``# needs ogbn-arxiv``).

A page's Python blocks run in order in one fresh interpreter (a later block
may use what an earlier one made, as a reader following the page would);
each shell block runs on its own. Both run in a scratch directory, so files
the blocks write land there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "bash", "text"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


class Block(NamedTuple):
    page: Path
    line: int
    lang: str
    code: str

    @property
    def needs(self) -> str:
        """What the block says it needs ('' when it runs as written)."""
        first = self.code.lstrip().splitlines()[0] if self.code.strip() else ""
        match = re.match(r"#\s*needs\s+(.*)", first)
        return match.group(1).strip() if match else ""

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> List[Block]:
    text = page.read_text()
    return [Block(page, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
            for m in FENCE.finditer(text)]


ALL = [b for page in PAGES for b in blocks(page)]


def test_every_block_names_its_language_and_what_it_needs_names_something():
    assert ALL
    for block in ALL:
        assert block.lang in LANGUAGES, f"{block}: fence language {block.lang!r}"
        if block.code.lstrip().startswith("# needs"):
            assert len(block.needs) > 3, f"{block}: '# needs' says nothing"


def test_the_readme_example_runs_offline():
    first = next(b for b in blocks(ROOT / "README.md") if b.lang == "python")
    assert not first.needs and "from_path" not in first.code.split("#")[0]


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "2", "HOME": os.environ.get("HOME", str(tmp_path))}


DRIVER = """
import json, sys, traceback
namespace = {"__name__": "__main__"}
for where, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, where, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"block at {where} failed", file=sys.stderr)
        sys.exit(1)
"""


def _runnable_python(page: Path) -> List[Block]:
    return [b for b in blocks(page) if b.lang == "python" and not b.needs]


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable_python(p)], ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, tmp_path):
    runnable = _runnable_python(page)
    script = tmp_path / "blocks.json"
    script.write_text(json.dumps([[str(b), b.code] for b in runnable]))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]


SHELL = [b for b in ALL if b.lang == "bash" and not b.needs]


@pytest.mark.parametrize("block", SHELL, ids=str)
def test_shell_blocks_run_as_written(block, tmp_path):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=_env(tmp_path))
    assert proc.returncode == 0, f"{block}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
