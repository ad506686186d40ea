"""keep_freed_memory: freed blocks serve the next allocations instead of
going back to the kernel (run in child processes: it changes the whole
process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's mallopt")

FAULTS = """
import json, resource, sys, torch
from salient_pipes.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(1)
before = faults()
for _ in range(10):  # a step's large tensor, made and freed
    t = torch.empty(16 << 20, dtype=torch.float32)
    t.fill_(1.0)
    del t
print(json.dumps({"kept": kept, "faults": faults() - before}))
"""


def run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default, kept = run("system"), run("keep")
    assert kept["kept"] is True
    # 10 blocks of 64 MiB: by default each is mapped and faulted in anew;
    # kept, the first one's pages serve the nine after it
    assert default["faults"] > 3 * kept["faults"], (default, kept)


@pytest.mark.parametrize("flag", [[], ["--system-malloc"]])
def test_the_train_command_keeps_freed_memory_on_a_cpu_unless_asked_not_to(flag):
    out = subprocess.run([sys.executable, "-m", "salient_pipes", "train", "--num-nodes", "1500",
                          "--epochs", "1", "--device", "cpu", "--no-progress", *flag],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert ("host allocator keeps freed memory" in out) == (not flag), out
    assert json.loads(out.splitlines()[-1])["test_acc"] > 0


def test_without_glibc_nothing_is_set_and_false_says_so(monkeypatch):
    import ctypes

    from salient_pipes import allocator

    def no_libc(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert allocator.keep_freed_memory() is False  # musl, say: no libc.so.6
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
