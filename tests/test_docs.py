"""Every code block of README.md and docs/ runs as written, or says on its
first line what it needs (``# needs a CUDA GPU``, ``# needs ogbn-arxiv``).

A page's Python blocks run in order in one fresh process and namespace (a
later block may use what an earlier one made, as a reader following the
page would); each shell block runs on its own. Both run in a scratch
directory, so files the blocks write land there."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import List

import pytest

from tests.doc_blocks import (
    LANGUAGES,
    PAGES,
    ROOT,
    RUN_BY_TESTS,
    Block,
    blocks,
    matching,
    run_shell,
    shell_env,
)

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


# Importing torch and PyG takes seconds of each page's run. A page's blocks
# run in a child forked from one interpreter that has imported them and
# started no thread: a fresh namespace and process, which ends through the
# interpreter's own exit (so a crash at exit still fails the page). Where an
# import did start a thread, forking is unsafe and each page gets a fresh
# interpreter instead.
SERVER = """
import json, os, sys, traceback


def run_page(blocks, cwd, log):
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1), os.dup2(out, 2)
    os.chdir(cwd)
    sys.stdin = open(os.devnull)
    namespace = {"__name__": "__main__"}
    for where, code in json.load(open(blocks)):
        try:
            exec(compile(code, where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"block at {where} failed", file=sys.stderr)
            sys.exit(1)
    sys.exit(0)


if len(sys.argv) > 1:  # one page, in this fresh interpreter
    run_page(*sys.argv[1:])
import numpy, torch, salient_pipes
try:
    import torch_geometric
except ImportError:
    pass
import gc
gc.freeze()  # what the imports made is never collected: a child's exit does not copy it
tasks = "/proc/self/task"  # this process's threads (Linux; elsewhere: 0, so no fork)
print(json.dumps(len(os.listdir(tasks)) if os.path.isdir(tasks) else 0), flush=True)
for request in sys.stdin:
    pid = os.fork()
    if pid == 0:
        run_page(*json.loads(request))
    print(json.dumps(pid), flush=True)
    print(json.dumps(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])), flush=True)
"""


class PageRunner:
    """Runs a page's Python blocks in order, in one namespace, in a child
    of the server above (or in a fresh interpreter)."""

    def __init__(self, env: dict, fork: bool = True) -> None:
        # numpy's BLAS starts its threads on import unless told to use one
        self.env = {**env, "OPENBLAS_NUM_THREADS": "1"}
        self.forks = fork
        if fork:
            self.server = subprocess.Popen([sys.executable, "-c", SERVER],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           text=True, env=self.env)
            self.forks = self.server.stdout.readline().strip() == "1"  # threads
            if not self.forks:
                self.close()

    def run(self, blocks: Path, cwd: Path) -> tuple[int, str]:
        """(exit status, stdout and stderr) of the page's blocks."""
        log = cwd / "page.log"
        if not self.forks:
            proc = subprocess.run([sys.executable, "-c", SERVER, str(blocks), str(cwd), str(log)],
                                  capture_output=True, text=True, timeout=600, env=self.env)
            return proc.returncode, (log.read_text() if log.exists() else "") + proc.stderr
        self.server.stdin.write(json.dumps([str(blocks), str(cwd), str(log)]) + "\n")
        self.server.stdin.flush()
        pid = int(self.server.stdout.readline())
        watchdog = threading.Timer(600, os.kill, (pid, signal.SIGKILL))
        watchdog.start()
        try:
            status = int(self.server.stdout.readline())
        finally:
            watchdog.cancel()
        return status, log.read_text()

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    runner = PageRunner(shell_env(tmp_path_factory.mktemp("home")))
    yield runner
    if runner.forks:
        runner.close()


@pytest.mark.parametrize("fork", [True, False])
def test_a_page_fails_on_an_error_or_a_crash_at_exit(fork, pages, tmp_path):
    """The harness itself: both runners report a block's error and an
    abort at interpreter exit, and a page that works leaves no trace of
    another page's namespace."""
    runner = pages if fork else PageRunner(shell_env(tmp_path), fork=False)
    assert runner.forks == fork
    cases = {"error": ["leaked = 1", "raise KeyError('boom')"],
             "abort": ["import atexit, os", "atexit.register(os.abort)"],
             "ok": ["import sys", "assert 'leaked' not in globals(); print('done')"]}
    results = {}
    for name, codes in cases.items():
        where = tmp_path / name
        where.mkdir()
        (where / "blocks.json").write_text(json.dumps([[f"{name}:{i}", c]
                                                       for i, c in enumerate(codes)]))
        results[name] = runner.run(where / "blocks.json", where)
    assert results["ok"] == (0, "done\n")
    status, output = results["error"]
    assert status == 1 and "KeyError: 'boom'" in output and "block at error:1 failed" in output
    assert results["abort"][0] == -signal.SIGABRT


def _runnable_python(page: Path) -> List[Block]:
    return [b for b in blocks(page) if b.lang == "python" and not b.needs]


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable_python(p)], ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, tmp_path, pages):
    script = tmp_path / "blocks.json"
    script.write_text(json.dumps([[str(b), b.code] for b in _runnable_python(page)]))
    status, output = pages.run(script, tmp_path)
    assert status == 0, output[-4000:]


SHELL = [b for b in ALL if b.lang == "bash" and not b.needs
         and not any(b.page == ROOT / page and text in b.code for page, text in RUN_BY_TESTS)]


@pytest.mark.parametrize("block", SHELL, ids=str)
def test_shell_blocks_run_as_written(block, tmp_path):
    proc = run_shell(block.code, tmp_path)
    assert proc.returncode == 0, f"{block}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("page,text", sorted(RUN_BY_TESTS))
def test_a_block_left_to_another_test_is_run_by_it(page, text):
    """Each block that test_shell_blocks_run_as_written leaves out is one
    runnable block, and the test named for it exists and fetches it."""
    found = matching(page, text)
    assert len(found) == 1 and not found[0].needs, f"{page}: {text!r} matches {found}"
    path, name = RUN_BY_TESTS[page, text].split("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    source = inspect.getsource(getattr(module, name))
    assert f'doc_block("{page}", "{text}")' in source, f"{path}::{name} does not run the block"
