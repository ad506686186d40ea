"""The command line as its users meet it: help, argument forms, errors that
show the right usage, signals with and without checkpoints, resumed epochs,
time-based checkpoints and the profile without matplotlib."""

from __future__ import annotations

import argparse
import builtins
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from salient_pipes import SAGE, FastDataset, salient_pipeline, train_epoch
from salient_pipes.cli import CHECKPOINT_FILE, build_parser, main
from salient_pipes.cli.args import every, resolve
from salient_pipes.cli.checkpoint import Schedule
from salient_pipes.train import EpochSoFar


def _options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command", ["train", "partition"])
def test_every_option_has_help_and_states_its_default_at_most_once(command):
    sub = build_parser().subcommands[command]
    text = sub.format_help()
    for action in _options(sub):
        assert action.help, action.option_strings
    blocks = re.split(r"\n  (?=-)", text)
    for block in blocks:
        assert block.count("default") <= 1, block
    # a default that is a number is shown (0 is not mistaken for "no default")
    assert re.search(r"--seed SEED\s+seed of .*\(default: 0\)", " ".join(text.split()))


def test_version_names_the_library_torch_and_python(capsys):
    import importlib.metadata
    import platform

    import salient_pipes

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"salient-pipes {salient_pipes.__version__} (torch {torch.__version__}, "
        f"Python {platform.python_version()})")
    # the package's version is the one it is installed as (pyproject.toml's)
    assert salient_pipes.__version__ == importlib.metadata.version("salient_pipes")


def test_top_level_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out and "train" in out


@pytest.mark.parametrize("form", [["15", "10", "5"], ["15,10,5"], ["15,10", "5"]])
def test_fanouts_as_separate_words_or_commas(form):
    args = resolve(build_parser(), ["train", "--fanouts", *form, "--test-fanouts", *form])
    assert args.fanouts == [15, 10, 5] and args.test_fanouts == [15, 10, 5]


def test_dataset_dependent_defaults():
    plain = resolve(build_parser(), ["train"])
    mag = resolve(build_parser(), ["train", "--dataset", "mag-synthetic"])
    assert (plain.fanouts, plain.hidden) == ([15, 10, 5], 256)
    assert (mag.fanouts, mag.hidden) == ([10, 5], 64)
    given = resolve(build_parser(), ["train", "--dataset", "mag-synthetic", "--fanouts", "4",
                                     "--hidden", "8"])
    assert (given.fanouts, given.hidden) == ([4], 8)


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "argument --epochs: must be > 0"),
    (["--epochs", "-3"], "argument --epochs: must be > 0"),
    (["--fanouts", ""], "fanouts must name at least one hop"),
    (["--fanouts", "5", "0"], "each fanout must be positive or -1"),
    (["--fanouts", "a,b"], "fanouts must be integers"),
    (["--cuda-graphs"], "add --compile"),
    (["--checkpoint-every", "5 parsecs"], "a number of batches (50) or a time"),
    (["--fanouts", "5", "5", "--test-fanouts", "5"], "as many hops"),
    (["--epochs", "three"], "argument --epochs: expected a number, got 'three'"),
    (["--memory-limit", "lots"], "expected a size such as 4GiB or 512MB, got 'lots'"),
    (["--gpu-cache", "150%"], "argument --gpu-cache/--device-cache: the cache share must be "
                              "within 0-100%, got '150%'"),
    (["--feature-cache", "most%"], "argument --feature-cache: the cache must be a size or a "
                                   "share like '10%', got 'most%'"),
    (["--features-on", "gpu"], "--features-on: device 'gpu' is not a torch device"),

    (["--features-on", "meta", "--device", "cpu"], "--features-on meta: the batches go to cpu "
                                                   "(--device)"),
])
def test_train_errors_show_the_train_usage(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and "usage: salient-pipes train" in err


@pytest.mark.parametrize("command,option", [("train", "--checkpoint"), ("train", "--profile"),
                                            ("train", "--out"), ("partition", "--out")])
def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, capsys, command,
                                                                    option):
    """Not after an epoch of training, at the first write."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    extra = ["--parts", "2"] if command == "partition" else []
    with pytest.raises(SystemExit) as exit_info:
        main([command, *extra, option, str(blocker / "sub" / "x.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"usage: salient-pipes {command}" in err
    assert f"{option}: cannot create {blocker / 'sub'}" in err, err


@pytest.mark.parametrize("dataset,message", [
    ("ogbn-nope", "unknown OGB"),
    ("ogbn-mag", "ogbn-mag is heterogeneous; partitioning takes a graph of one node type"),
    ("mag-synthetic", "mag-synthetic is heterogeneous"),
])
def test_partition_errors_show_the_partition_usage(dataset, message, capsys):
    with pytest.raises(SystemExit) as exit_info:  # refused before any dataset is read
        main(["partition", "--parts", "2", "--out", "x", "--dataset", dataset])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "usage: salient-pipes partition" in err and message in err


@pytest.mark.parametrize("args,message", [
    (["--parts", "2"], "the following arguments are required: --out"),
    (["--out", "x"], "the following arguments are required: --parts"),
    (["--parts", "0", "--out", "x"], "argument --parts: must be > 0, got 0"),
])
def test_partition_needs_its_part_count_and_directory(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["partition", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "usage: salient-pipes partition" in err and message in err


def test_partitioned_training_without_torchrun_is_refused_with_the_command(tmp_path, capsys):
    from salient_pipes.distributed import partition

    parts = partition(FastDataset.synthetic(num_nodes=300, seed=0), 2, tmp_path / "parts",
                      method="random", progress=False)
    for where, message in ((tmp_path, "holds no partitioned dataset"),
                           (parts, "has 2 parts; train it with --distributed under torchrun "
                                   "--nproc-per-node 2")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--partitioned", str(where)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2
        assert f"--partitioned: {where} {message}" in err


def test_partition_refuses_an_out_that_is_not_its_own(tmp_path, capsys):
    mine = tmp_path / "mine.txt"
    mine.write_text("keep")
    with pytest.raises(SystemExit) as exit_info:
        main(["partition", "--parts", "2", "--out", str(mine), "--num-nodes", "500"])
    assert exit_info.value.code == 2
    assert f"--out: {mine} is a file: it is left as it is" in capsys.readouterr().err
    assert mine.read_text() == "keep"


def test_checkpoint_every_takes_batches_or_a_time():
    assert every("50") == ("batches", 50)
    assert every("30s") == ("seconds", 30.0) and every("10min") == ("seconds", 600.0)
    assert every("1.5h") == ("seconds", 5400.0)
    for bad in ("0", "2.5", "-1", "10 lightyears", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            every(bad)
    assert resolve(build_parser(), ["train"]).checkpoint_every == ("seconds", 600.0)


def test_time_schedule_is_due_once_per_interval(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    schedule = Schedule(("seconds", 10.0))
    assert not schedule.due(1)
    now[0] = 109.9
    assert not schedule.due(2)
    now[0] = 110.0
    assert schedule.due(3) and not schedule.due(4)
    now[0] = 125.0
    assert schedule.due(5)
    by_batch = Schedule(("batches", 3))
    assert [b for b in range(1, 10) if by_batch.due(b)] == [3, 6, 9]


def test_failed_download_names_where_files_go_and_creates_no_directory(tmp_path, monkeypatch,
                                                                        capsys):
    import urllib.request
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "no" / "such" / "dir"
    assert main(["train", "--dataset", "ogbn-arxiv", "--root", str(root), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "could not download ogbn-arxiv" in err and "no network" in err
    assert str(root / "ogbn_arxiv" / "raw") in err and "Traceback" not in err
    assert not (tmp_path / "no").exists()


BASE = [sys.executable, "-m", "salient_pipes", "train", "--num-nodes", "20000",
        "--batch-size", "32", "--fanouts", "5", "5", "--hidden", "16", "--epochs", "2",
        "--no-progress", "--checkpoint-every", "20"]


def _start(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _signal_mid_epoch(args, signum, saved=None):
    """Starts ``args`` and sends ``signum`` in its first epoch: once the
    checkpoint of batch 20 is in ``saved``, or half a second after training
    began; (status, stdout, stderr)."""
    proc = _start(args)
    for line in proc.stdout:  # wait until the epochs begin
        if line.startswith("training"):
            break
    deadline = time.monotonic() + 60
    if saved is not None:
        while not saved.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        time.sleep(0.5)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


# Both signals stop through one handler: the resumed run is compared with an
# uninterrupted one once (SIGTERM; it runs beside the interrupted one),
# SIGINT's checkpoint only checked.
@pytest.mark.parametrize("signum,status,resume", [(signal.SIGTERM, 143, True),
                                                  (signal.SIGINT, 130, False)])
def test_signal_saves_a_checkpoint_that_the_same_command_resumes(tmp_path, request, signum,
                                                                  status, resume):
    command = [*BASE, "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "ck.json")]
    straight = tmp_path / "straight"
    if resume:  # the run the resumed one must equal
        uninterrupted = subprocess.Popen(
            [*BASE, "--checkpoint", str(straight), "--out", str(straight / "out.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        request.addfinalizer(uninterrupted.kill)  # where the test fails before it ends
    code, out, err = _signal_mid_epoch(command, signum, tmp_path / "ck" / CHECKPOINT_FILE)
    name = signal.Signals(signum).name
    assert code == status, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        f"salient-pipes: stopped by {name}: checkpoint saved in {tmp_path / 'ck'}; "
        "run the same command to resume")
    assert "Traceback" not in err
    saved = torch.load(tmp_path / "ck" / CHECKPOINT_FILE, weights_only=True)
    assert saved["pipeline"]["epoch"] == 0 and saved["pipeline"]["batches_done"] > 20
    assert saved["epoch_so_far"]["batches"] == saved["pipeline"]["batches_done"]
    if not resume:
        return
    _, straight_err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, straight_err[-2000:]
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr[-2000:]
    a = torch.load(straight / CHECKPOINT_FILE, weights_only=True)
    b = torch.load(tmp_path / "ck" / CHECKPOINT_FILE, weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # the resumed epoch's loss covers the whole epoch: the uninterrupted one's
    first = json.loads((straight / "out.json").read_text())["history"]
    second = json.loads((tmp_path / "ck.json").read_text())["history"]
    assert [r["loss"] for r in first] == [r["loss"] for r in second]


def test_signal_without_checkpoint_is_one_line(tmp_path):
    code, _, err = _signal_mid_epoch(BASE, signal.SIGTERM)
    assert code == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("salient-pipes: stopped by SIGTERM: no checkpoint "
                                            "(train with --checkpoint DIR to resume later)")


def test_keyboard_interrupt_outside_training_is_one_line(monkeypatch, capsys):
    import salient_pipes.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_train", interrupted)
    assert main(["train", "--no-progress"]) == 130
    assert capsys.readouterr().err.strip() == "salient-pipes: interrupted"


def test_resumed_epoch_reports_the_whole_epoch():
    ds = FastDataset.synthetic(num_nodes=3000, seed=2)

    def run(stop_after):
        torch.manual_seed(0)
        model = SAGE(ds.num_features, 16, ds.num_classes, 2)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        pipe = salient_pipeline(ds, batch_size=128, fanouts=(4, 4), device="cpu")
        if stop_after is None:
            return train_epoch(model, pipe, optimizer, progress=False)
        saved = {}

        def hook(so_far):
            state = so_far()
            if state.batches == stop_after:
                saved.update(pipe=pipe.state_dict(), so_far=state)
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train_epoch(model, pipe, optimizer, progress=False, on_batch=hook)
        again = salient_pipeline(ds, batch_size=128, fanouts=(4, 4), device="cpu")
        again.load_state_dict(saved["pipe"])
        state = EpochSoFar.from_state(saved["so_far"].state_dict())
        return train_epoch(model, again, optimizer, progress=False, resume=state)

    whole, resumed = run(None), run(3)
    assert resumed.batches == whole.batches and resumed.loss == whole.loss


def test_profile_without_matplotlib_writes_the_json_and_says_what_the_plot_needs(
        tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["train", "--epochs", "1", "--num-nodes", "2000", "--hidden", "8",
                 "--fanouts", "4", "4", "--no-progress", "--profile", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "the plot needs matplotlib: pip install matplotlib" in out
    assert (tmp_path / "profile.json").exists() and not (tmp_path / "stages.png").exists()
    assert "idle" not in out  # not measurable on the CPU: not printed


def _stop_worker(rank: int, world: int, tmp: str) -> None:
    from salient_pipes.cli.checkpoint import StopSignals
    from salient_pipes.distributed import process_group

    with process_group("cpu", init_method=f"file://{tmp}/init", rank=rank, world_size=world):
        stop = StopSignals(distributed=True, sync_every=4)
        agreed = []
        for batch in range(12):
            if rank == 0 and batch == 5:
                stop.requested = int(signal.SIGTERM)  # only rank 0 was signalled
            agreed.append(stop.agreed(batch))
        at_once = stop.agreed()  # no batch: compared now
        with open(f"{tmp}/rank{rank}.json", "w") as f:
            json.dump({"agreed": agreed, "at_once": at_once}, f)


def test_ranks_agree_on_a_stop_at_the_next_comparison(tmp_path):
    from tests.ranks import run_ranks

    assert run_ranks(_stop_worker, 2, str(tmp_path)) == [0, 0]
    term = int(signal.SIGTERM)
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # compared at batches 0, 4 and 8 only: both ranks learn of it at 8
        assert got["agreed"] == [None] * 8 + [term] + [None] * 3, (rank, got)
        assert got["at_once"] == term
