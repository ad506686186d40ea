"""Dropout on CPU tensors with the mask filled natively on every core: the
mask is the documented counter stream (whatever the thread count), keeps
1 - p of the elements at 1 / (1 - p), repeats under torch.manual_seed, and
the gradient flows through the kept elements only; elsewhere it is
F.dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salient_pipes import SAGE, _native, models
from salient_pipes.batch import Adj
from salient_pipes.models import dropout

GAMMA = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over uint64 arrays (numpy wraps mod 2**64)."""
    z = z + GAMMA
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _reference_mask(n: int, p: float, seed: int, dtype) -> np.ndarray:
    """Element i keeps when the low (even i) or high (odd i) 32 bits of
    mix64(seed + (i // 2) * gamma) are >= ceil(p * 2**32)."""
    with np.errstate(over="ignore"):
        draws = _mix64(np.uint64(seed) + np.arange((n + 1) // 2, dtype=np.uint64) * GAMMA)
    bits = np.stack([draws & np.uint64(0xFFFFFFFF), draws >> np.uint64(32)], 1).reshape(-1)[:n]
    kept = bits >= np.uint64(int(np.ceil(p * 2**32)))
    return np.where(kept, dtype(1.0 / (1.0 - p)), dtype(0.0)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_mask_is_the_counter_stream_for_any_thread_count(dtype):
    for n, seed, p in ((9, 12345, 0.5), (1, 2**64 - 3, 0.3), (0, 7, 0.5),
                       (4 * 65536 + 3, 99, 0.25)):  # the last is split across threads
        want = _reference_mask(n, p, seed, dtype)
        for threads in (1, 2, 3):
            mask = np.full(n, -1.0, dtype=dtype)
            _native.fill_dropout_mask(mask, p, seed, threads)
            np.testing.assert_array_equal(mask, want)
    mask = np.empty((3, 5), dtype=dtype)  # any contiguous shape: the flat stream
    _native.fill_dropout_mask(mask, 0.5, 1, 2)
    np.testing.assert_array_equal(mask.reshape(-1), _reference_mask(15, 0.5, 1, dtype))


def test_native_mask_keeps_one_minus_p_at_its_scale():
    n = 1_000_000
    for p in (0.0, 0.3, 0.9):
        mask = np.empty(n, dtype=np.float32)
        _native.fill_dropout_mask(mask, p, 2024, 2)
        kept = mask != 0
        assert set(np.unique(mask[kept]).tolist()) <= {float(np.float32(1 / (1 - p)))}
        sigma = (n * p * (1 - p)) ** 0.5
        assert abs(int(kept.sum()) - n * (1 - p)) <= 5 * sigma + 1e-9


@pytest.mark.parametrize("args,message", [
    ((np.empty(4, np.float32), 1.0, 0, 1), r"p must be in \[0, 1\)"),
    ((np.empty(4, np.float32), -0.1, 0, 1), r"p must be in \[0, 1\)"),
    ((np.empty(4, np.float32), float("nan"), 0, 1), r"p must be in \[0, 1\)"),
    ((np.empty(4, np.float16), 0.5, 0, 1), "mask must be float32 or float64"),
    ((np.empty(4, np.int32), 0.5, 0, 1), "mask must be float32 or float64"),
    ((np.empty(8, np.float32)[::2], 0.5, 0, 1), "mask must be contiguous"),
    ((np.empty(4, np.float32), 0.5, 0, 0), "num_threads must be in"),
])
def test_native_mask_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        _native.fill_dropout_mask(*args)
    frozen = np.empty(4, np.float32)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="mask must be writable"):
        _native.fill_dropout_mask(frozen, 0.5, 0, 1)


def test_dropout_repeats_under_manual_seed_and_passes_gradients_through_kept_elements(
        monkeypatch):
    x = torch.randn(300, 40, requires_grad=True)
    outs = []
    for threads in (1, 2):
        monkeypatch.setattr(torch, "get_num_threads", lambda threads=threads: threads)
        torch.manual_seed(5)
        outs.append(dropout(x, 0.4))
    assert torch.equal(outs[0], outs[1])
    again = dropout(x, 0.4)  # the generator moved on: another mask
    assert not torch.equal(again, outs[0])
    out = outs[0]
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.02
    torch.testing.assert_close(out[kept], x[kept] / 0.6)
    out.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.6)


def test_dropout_elsewhere_is_torchs():
    x = torch.randn(50, 8)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.5)
    half = x.half()
    try:
        torch.nn.functional.dropout(half, 0.5)
    except RuntimeError as refused:  # torch 2.1 has no float16 dropout on a CPU
        with pytest.raises(RuntimeError, match=str(refused)[:20]):
            dropout(half, 0.5)
        return
    out = dropout(half, 0.5)  # float16: torch's dropout, same dtype
    assert out.dtype == torch.float16 and ((out == 0) | (out == half * 2)).all()


def test_sage_training_uses_the_native_mask_and_repeats(monkeypatch):
    calls = []
    real = _native.fill_dropout_mask
    monkeypatch.setattr(models._native, "fill_dropout_mask",
                        lambda *args: calls.append(args[0].shape) or real(*args))
    model = SAGE(6, 16, 3, num_layers=3)
    x = torch.randn(10, 6)
    adjs = [Adj(torch.tensor([[1, 2, 3, 9], [0, 1, 2, 5]]), None, (10, 6)),
            Adj(torch.tensor([[1, 2, 3], [0, 1, 2]]), None, (6, 4)),
            Adj(torch.tensor([[1, 2], [0, 1]]), None, (4, 2))]
    torch.manual_seed(3)
    first = model(x, adjs)
    assert calls == [(6, 16), (4, 16)]  # between the layers, not after the last
    torch.manual_seed(3)
    assert torch.equal(model(x, adjs), first)
    model.eval()
    calls.clear()
    model(x, adjs)
    assert calls == []


def test_torch_2_1s_names_of_the_compile_helpers_are_used_where_torch_compiler_lacks_them(
        monkeypatch):
    """torch 2.1 has neither torch.compiler.is_compiling nor
    cudagraph_mark_step_begin: SAGE's dropout (every training step) and the
    CUDA graph step must find them where that torch keeps them."""
    import torch._inductor.cudagraph_trees as trees

    monkeypatch.delattr(torch.compiler, "is_compiling", raising=False)  # torch 2.1: absent
    monkeypatch.delattr(torch.compiler, "cudagraph_mark_step_begin", raising=False)
    asked, marks = [], []
    # (today's torch._dynamo.is_compiling itself asks torch.compiler's)
    monkeypatch.setattr(torch._dynamo, "is_compiling", lambda: asked.append(1) or False)
    monkeypatch.setattr(trees, "mark_step_begin", lambda: marks.append(1))
    assert models._is_compiling() is False and asked == [1]
    models._mark_cuda_step_begin()
    assert marks == [1]
    out = dropout(torch.ones(64, 8), 0.5)  # the native mask, as in training
    assert set(out.unique().tolist()) <= {0.0, 2.0} and out.dtype == torch.float32
