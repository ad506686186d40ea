"""The fenced code blocks of README.md and docs/: what tests/test_docs.py
runs, and what a test that checks a documented command more closely runs
as written (:func:`doc_block`)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

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


# Shell blocks that a test runs as written through doc_block() and checks
# more closely than an exit status; tests/test_docs.py leaves them to it.
# (page, a text found in that block alone): the test.
RUN_BY_TESTS: Dict[Tuple[str, str], str] = {
    ("docs/distributed.md", "--distributed --num-nodes"):
        "tests/test_distributed.py::test_cli_under_torchrun",
    ("docs/distributed.md", "--partitioned parts"):
        "tests/test_partitioned.py::test_cli_trains_a_partitioned_dataset_under_torchrun",
}


def matching(page: str, text: str) -> List[Block]:
    """The shell blocks of ``page`` whose code contains ``text``."""
    return [b for b in blocks(ROOT / page) if b.lang == "bash" and text in b.code]


def doc_block(page: str, text: str) -> str:
    """The code of the one shell block of ``page`` that contains ``text``,
    registered in ``RUN_BY_TESTS``."""
    assert (page, text) in RUN_BY_TESTS, f"register ({page!r}, {text!r}) in RUN_BY_TESTS"
    found = matching(page, text)
    assert len(found) == 1, f"{len(found)} shell blocks of {page} contain {text!r}"
    return found[0].code


def shell_env(home: Path) -> dict:
    """The environment a page's blocks run in: this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "2", "HOME": os.environ.get("HOME", str(home))}


def run_shell(code: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs a shell block in ``cwd`` as a reader would (bash, stopping at
    the first failing command)."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=shell_env(cwd))
