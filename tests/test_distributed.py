"""Data-parallel training: two CPU processes (torchrun, gloo) train like one process with twice the batch.

One torchrun launch runs this file as a script (``_worker``) in two processes; each writes
what it saw and the weights it ended with into a folder, and the tests compare those with
single-process runs made here. Everything is tiny (a few hundred images at 67 px).
"""

import contextlib
import dataclasses
import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import Interrupt, disconnect
from nin_utils import (Budget, Callback, CheckpointError, DistributedError, Recipe, fit, load_checkpoint, mnist_nin,
                       load_fashion_mnist)
from nin_utils import distributed
from nin_utils.distributed_exercises import check_accumulate, check_ring_all_reduce, check_shard
from nin_utils.train import main
from nin_utils.training import make_optimization, train_step

B, WORLD, RESOLUTION, EPOCHS = 8, 2, 28, 2  # per-process batch; one process compares with batch WORLD * B
# float32, so one step differs only by rounding. SGD, not AdamW: over 16 steps a rounding-sized
# difference grows (max pooling routes a gradient to whichever input is largest), and AdamW, which
# divides by each gradient's size, turns it into weight changes as large as the training's own.
RECIPE = Recipe(batch_size=B, optimizer="sgd", lr=0.05, autocast=False)
STEP_SEED = 1  # the shuffle seed of the single-step comparison
BUDGET = Budget(train_subset=128, test_subset=64, epochs=EPOCHS, resolution=RESOLUTION)
ONE_EPOCH = Budget(train_subset=None, test_subset=None, epochs=1, resolution=RESOLUTION)


def tiny_data():
    return load_fashion_mnist(device="cpu", train_subset=128, test_subset=64, seed=0)


def fresh_nin():
    """No dropout (its masks differ between one and two processes); a random last layer, so every
    layer gets a gradient in the first step."""
    torch.manual_seed(0)
    return mnist_nin(batch_norm=False, dropout=0.0, zero_init_last=False)  # the trained network, 7 x 7 map


def _first_epoch_then_stop(data, recipe, checkpoint):
    with contextlib.suppress(Interrupt):
        fit(fresh_nin(), data, recipe, BUDGET, checkpoint=checkpoint, callbacks=[disconnect], progress=False)


# ----------------------------------------------------------------- what each of the two processes does

def _worker(out: Path) -> None:
    distributed.setup()
    rank, data = distributed.rank(), tiny_data()
    save = lambda name, value: torch.save(value, out / f"{name}_rank{rank}.pt")

    # One step on this process's part of the first global batch.
    model = fresh_nin()
    optim = make_optimization(model, RECIPE, total_steps=10)
    x, y = next(data.batches("train", WORLD * B, RESOLUTION, shuffle_seed=STEP_SEED, shard=(rank, WORLD)))
    train_step(distributed.wrap(model), x, y, RECIPE, optim)
    save("step", {"x": x, "y": y, "model": model.state_dict(),
                  "grad": {name: p.grad for name, p in model.named_parameters()}})

    # Two epochs with a checkpoint; a copy of epoch 1's is kept for the resume test.
    class KeepFirst(Callback):
        def on_epoch_end(self, history):
            if len(history) == 1 and distributed.is_main():
                shutil.copy(out / "run.pt", out / "epoch1.pt")

    model = fresh_nin()
    history = fit(model, data, RECIPE, BUDGET, checkpoint=out / "run.pt", callbacks=[KeepFirst()],
                  progress=False)
    save("fit", {"model": model.state_dict(), "history": history})

    # Resume a checkpoint written by one process with batch WORLD * B.
    model = fresh_nin()
    fit(model, data, RECIPE, BUDGET, checkpoint=out / "single.pt", resume=True, progress=False)
    save("resumed", model.state_dict())

    # A training set that does not split evenly.
    odd = load_fashion_mnist(device="cpu", train_subset=127, test_subset=64)
    try:
        fit(fresh_nin(), odd, RECIPE, ONE_EPOCH, progress=False)
    except ValueError as error:
        (out / f"odd_rank{rank}.txt").write_text(str(error))

    # The command line inside the same launch: a run, then a bad one.
    for name, subset in (("cli", "64"), ("cli_odd", "63")):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main(["--mode", "smoke", "--train-subset", subset, "--test-subset", "32", "--batch-size",
                      str(B), "--checkpoint", str(out / f"{name}.pt")])
                status = 0
            except SystemExit as exit_:
                status = exit_.code
        (out / f"{name}_rank{rank}.txt").write_text(f"{status}\n{stdout.getvalue()}\n---\n{stderr.getvalue()}")
    distributed.cleanup()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, batch WORLD * B: epoch 1's checkpoint, and an uninterrupted two-epoch run."""
    out = tmp_path_factory.mktemp("single")
    data = tiny_data()
    recipe = dataclasses.replace(RECIPE, batch_size=WORLD * B)
    _first_epoch_then_stop(data, recipe, out / "epoch1.pt")
    model = fresh_nin()
    history = fit(model, data, recipe, BUDGET, progress=False)
    return {"dir": out, "data": data, "recipe": recipe, "model": model.state_dict(), "history": history}


@pytest.fixture(scope="module")
def launched(single, tmp_path_factory):
    """The two processes' results (one torchrun launch)."""
    out = tmp_path_factory.mktemp("two")
    shutil.copy(single["dir"] / "epoch1.pt", out / "single.pt")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={WORLD}", __file__, str(out)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    load = lambda name: [torch.load(out / f"{name}_rank{r}.pt", weights_only=False) for r in range(WORLD)]
    text = lambda name: [(out / f"{name}_rank{r}.txt").read_text() for r in range(WORLD)]
    return {"dir": out, "step": load("step"), "fit": load("fit"), "resumed": load("resumed"),
            "odd": text("odd"), "cli": text("cli"), "cli_odd": text("cli_odd")}


INITIAL = fresh_nin().state_dict()


def assert_close(got: dict, expected: dict, start: dict | None = None, rtol: float = 1e-3) -> None:
    """Equal up to float rounding: each tensor's largest difference is tiny next to its largest
    entry or, given ``start`` (the weights before training), its largest change from there."""
    for name, want in expected.items():
        scale = (want - start[name]).abs().max() if start is not None else want.abs().max()
        difference = (got[name] - want).abs().max()
        assert difference <= rtol * scale + 1e-7, f"{name}: differs by {difference:.2e} (scale {scale:.2e})"


def assert_trains_alike(got: dict, expected: dict) -> None:
    """Two training runs ended alike: the weights' difference is under 10% of the training's change
    (both norms over all tensors). Nudging the starting weights by 1e-6 of themselves, rounding's
    size, moved the end by 2-3% (3 nudges); training at 1.1 times the learning rate moved it by
    15%, half the global batch or other data by over 90%."""
    difference = sum(((got[k] - expected[k]) ** 2).sum() for k in expected) ** 0.5
    change = sum(((expected[k] - INITIAL[k]) ** 2).sum() for k in expected) ** 0.5
    assert difference <= 0.1 * change, f"differs by {difference / change:.1%} of the change"


# ----------------------------------------------------------------- the tests

@pytest.mark.slow  # a two-process torchrun launch
def test_both_processes_end_with_identical_weights(launched):
    for result in ("step", "fit"):
        first, second = (r["model"] for r in launched[result])
        for name in first:
            assert torch.equal(first[name], second[name]), (result, name)
    assert launched["fit"][0]["history"] == launched["fit"][1]["history"]


@pytest.mark.slow  # a two-process torchrun launch
def test_the_processes_share_each_global_batch(launched, single):
    x, y = next(single["data"].batches("train", WORLD * B, RESOLUTION, shuffle_seed=STEP_SEED))
    assert torch.equal(torch.cat([r["y"] for r in launched["step"]]), y)
    assert torch.allclose(torch.cat([r["x"] for r in launched["step"]]), x)
    epoch = launched["fit"][0]["history"][0]
    assert epoch.train_acc * 128 == round(epoch.train_acc * 128)  # counted over all 128 images


@pytest.mark.slow  # a two-process torchrun launch
def test_one_step_on_two_processes_is_one_step_with_twice_the_batch(launched, single):
    model, recipe = fresh_nin(), single["recipe"]
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = next(single["data"].batches("train", WORLD * B, RESOLUTION, shuffle_seed=STEP_SEED))
    train_step(model, x, y, recipe, make_optimization(model, recipe, total_steps=10))
    # The gradient the step used (DDP's average over the two processes, then clipped) ...
    assert_close(launched["step"][0]["grad"], {name: p.grad for name, p in model.named_parameters()})
    # ... and so the step.
    assert_close(launched["step"][0]["model"], model.state_dict(), start)


@pytest.mark.slow  # a two-process torchrun launch
def test_two_epochs_on_two_processes_match_one_process(launched, single):
    two = launched["fit"][0]
    assert_trains_alike(two["model"], single["model"])
    assert [s.epoch for s in two["history"]] == [1, 2]
    assert abs(two["history"][-1].train_loss - single["history"][-1].train_loss) < 1e-3


@pytest.mark.slow  # a two-process torchrun launch
def test_a_checkpoint_of_two_processes_resumes_in_one(launched, single, tmp_path):
    checkpoint = tmp_path / "resume.pt"
    shutil.copy(launched["dir"] / "epoch1.pt", checkpoint)
    state = load_checkpoint(checkpoint)
    assert state["world_size"] == WORLD and state["recipe"]["batch_size"] == B and len(state["history"]) == 1
    with pytest.raises(CheckpointError, match="other settings \\(global batch: 16 -> 8\\)"):
        fit(fresh_nin(), single["data"], RECIPE, BUDGET, checkpoint=checkpoint, resume=True,
            progress=False)  # batch 8 in one process: half the global batch
    model = fresh_nin()
    history = fit(model, single["data"], single["recipe"], BUDGET, checkpoint=checkpoint, resume=True,
                  progress=False)
    assert [s.epoch for s in history] == [1, 2]
    assert history[0] == launched["fit"][0]["history"][0]  # epoch 1 came from the checkpoint
    assert_trains_alike(model.state_dict(), launched["fit"][0]["model"])


@pytest.mark.slow  # a two-process torchrun launch
def test_a_checkpoint_of_one_process_resumes_in_two(launched, single):
    assert_trains_alike(launched["resumed"][0], single["model"])


@pytest.mark.slow  # a two-process torchrun launch
def test_a_training_set_that_does_not_split_evenly_is_one_clear_error(launched):
    for message in launched["odd"]:
        assert message == ("The 127 training images cannot be split evenly among 2 processes: use a training "
                           "subset that is a multiple of 2 (e.g. 126), or another number of processes.")


@pytest.mark.slow  # a two-process torchrun launch
def test_the_command_line_prints_on_rank_0_only_and_fails_with_one_sentence(launched):
    status, output = launched["cli"][0].split("\n", 1)
    assert status == "0" and "smoke mode on 2 processes (gloo, cpu): 64 training images" in output
    assert "batch 8 per process (16 in all)" in output and "Final test accuracy" in output
    assert launched["cli"][1].startswith("0\n\n---\n")  # rank 1: nothing printed
    assert load_checkpoint(launched["dir"] / "cli.pt")["world_size"] == WORLD
    for report in launched["cli_odd"]:
        status, output = report.split("\n", 1)
        err = output.split("---\n", 1)[1]
        assert status == "2" and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("python -m nin_utils.train: error: The 63 training images cannot be split evenly")


# ----------------------------------------------------------------- launches that cannot work

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_torchrun_nothing_is_joined(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup() == torch.device("cpu") and distributed.world_size() == 1
    assert distributed.is_main() and distributed.backend_for(torch.device("cuda")) == "nccl"


@pytest.mark.parametrize("env, message", [
    ({"RANK": "1", "WORLD_SIZE": "2"}, "started as rank 1 of 2 .* but MASTER_ADDR and MASTER_PORT are not: "
                                       "launch it with torchrun"),
    ({"RANK": "0"}, "Only RANK=0 is set: a distributed launch sets RANK, WORLD_SIZE and LOCAL_RANK"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is out of range for WORLD_SIZE=2"),
])
def test_an_incomplete_launch_is_one_clear_error(env, message, monkeypatch, capsys):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedError, match=message):
        distributed.setup()
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "smoke", "--checkpoint", os.devnull])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("python -m nin_utils.train: error: ")


def test_fit_under_torchrun_without_setup_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    data = load_fashion_mnist(device="cpu", train_subset=8, test_subset=8)
    with pytest.raises(DistributedError, match="started as rank 0 of 2 but has not joined the others: call "
                                               "nin_utils.distributed.setup\\(\\) before training"):
        fit(mnist_nin(), data, None, ONE_EPOCH, progress=False)


def test_an_unreachable_master_is_one_sentence_and_status_2(monkeypatch, capfd):
    port = _free_port()  # nobody listens there
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "smoke", "--checkpoint", os.devnull, "--timeout", "1"])
    err = capfd.readouterr().err  # file descriptor 2: torch's C++ log lines come first, if any
    assert exit_.value.code == 2 and err.endswith("\n") and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(f"python -m nin_utils.train: error: Process 1 of 2 could not meet "
                                           f"the others at 127.0.0.1:{port} within 1 s")
    assert distributed.world_size() == 1


def test_what_torch_logs_when_the_processes_cannot_meet_is_kept(monkeypatch, capfd):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)

    def fails_to_connect(*args, **kwargs):
        os.write(2, b"[W socket.cpp:767] The client socket has failed to connect (from C++)\n")
        print("and from Python", file=sys.stderr, flush=True)
        raise RuntimeError("connect() timed out")

    monkeypatch.setattr(distributed.dist, "init_process_group", fails_to_connect)
    with pytest.raises(DistributedError, match="RuntimeError: connect\\(\\) timed out"):
        distributed.setup(timeout_s=1)
    err = capfd.readouterr().err
    assert "The client socket has failed to connect (from C++)\n" in err and "and from Python\n" in err


# ----------------------------------------------------------------- chapter 6's checkers

def _stub(*args):
    raise NotImplementedError


def _deal(order, batch_size, rank, world_size):
    return list(order[rank::world_size].split(batch_size))


def _parts(order, batch_size, rank, world_size):  # nin_utils' way
    step = batch_size * world_size
    return [order[s:s + step].tensor_split(world_size)[rank] for s in range(0, len(order), step)]


def _every_nth_batch(order, batch_size, rank, world_size):
    return list(order.split(batch_size)[rank::world_size])


def _contiguous_halves(order, batch_size, rank, world_size):
    return list(order.tensor_split(world_size)[rank].split(batch_size))


def _ring(grads, send):
    n = len(grads)
    chunks = [list(g.chunk(n)) for g in grads]
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(n - 1):
            messages = [(p, (p - step) % n if phase == "reduce-scatter" else (p + 1 - step) % n) for p in range(n)]
            arrived = [send(p, (p + 1) % n, chunks[p][c]) for p, c in messages]
            for (p, c), tensor in zip(messages, arrived):
                mine = chunks[(p + 1) % n]
                mine[c] = mine[c] + tensor if phase == "reduce-scatter" else tensor
    return [torch.cat(c) for c in chunks]


def _sum_directly(grads, send):
    return [sum(grads) for _ in grads]


def _whole_tensors_round_the_ring(grads, send):
    n, total = len(grads), grads[0]
    for p in range(n - 1):
        total = send(p, p + 1, total) + grads[p + 1]
    result = [None] * n
    result[-1] = total
    for p in range(n - 1):
        result[p] = send((p - 1) % n, p, result[(p - 1) % n])
    return result


def _to_rank_0(grads, send):
    return [send(p, 0, g) for p, g in enumerate(grads)]


def _sum_locally_send_zeros(grads, send):
    """Sends zero chunks of the right sizes round the ring, and adds them to a sum it made itself."""
    n, total = len(grads), sum(grads)
    received = [[send(p, (p + 1) % n, torch.zeros(len(total) // n)) for p in range(n)] for _ in range(2 * (n - 1))]
    return [total + sum(step[(p - 1) % n] for step in received).repeat(n) for p in range(n)]


def _ring_then_sum_locally(grads, send):
    """Sends what a ring sends, but returns a sum it made itself."""
    _ring(grads, send)
    return [sum(grads) for _ in grads]


def _accumulate(divide=True, sync_all=False, last_in_no_sync=False, zero_between=False, zero_first=True):
    def accumulate(model, micro_batches, optimizer):
        if zero_first:
            optimizer.zero_grad()
        for i, (x, y) in enumerate(micro_batches):
            if zero_between:
                optimizer.zero_grad()
            last = i == len(micro_batches) - 1
            quiet = not sync_all and (not last or last_in_no_sync)
            with model.no_sync() if quiet else contextlib.nullcontext():
                loss = torch.nn.functional.cross_entropy(model(x), y)
                (loss / len(micro_batches) if divide else loss).backward()
        optimizer.step()
    return accumulate


@pytest.mark.parametrize("check, answer, mark, phrase", [
    (check_shard, _stub, "❌", "Not done yet"),
    (check_shard, _deal, "✅", "same steps as one process"),
    (check_shard, _deal, "✅", "dealt like cards"),
    (check_shard, _parts, "✅", "contiguous parts, as nin_utils does"),  # the same global batches, another split
    (check_shard, _every_nth_batch, "❌", "the processes take [4, 3] steps"),
    (check_shard, _contiguous_halves, "❌", "do not have the images one process with batch 12 would"),
    (check_ring_all_reduce, _stub, "❌", "Not done yet"),
    (check_ring_all_reduce, _ring, "✅", "every process ends with the sum"),
    (check_ring_all_reduce, _sum_directly, "❌", "nothing was sent"),
    (check_ring_all_reduce, _whole_tensors_round_the_ring, "❌", "Send one chunk (length / N) per step"),
    (check_ring_all_reduce, _to_rank_0, "❌", "sends only to the next one"),
    (check_ring_all_reduce, _sum_locally_send_zeros, "❌", "which is not a sum of chunks"),  # passed before
    (check_ring_all_reduce, _ring_then_sum_locally, "❌", "did not build it from what they received"),
    (check_accumulate, _stub, "❌", "Not done yet"),
    (check_accumulate, _accumulate(), "✅", "equals one step on the whole batch"),
    (check_accumulate, _accumulate(divide=False), "❌", "4.00 times the right one: divide each micro-batch's loss"),
    (check_accumulate, _accumulate(sync_all=True), "❌", "micro-batches [1, 2, 3] ran outside no_sync"),
    (check_accumulate, _accumulate(last_in_no_sync=True), "❌", "the last micro-batch ran inside no_sync"),
    (check_accumulate, _accumulate(zero_between=True), "❌", "Zero the gradients once"),
    (check_accumulate, _accumulate(zero_first=False), "❌", "Zero the gradients once"),  # passed before
], ids=lambda value: getattr(value, "__name__", None) if callable(value) else None)
def test_the_chapter_6_checkers_accept_right_answers_and_explain_wrong_ones(check, answer, mark, phrase, capsys):
    assert check(answer) is (mark == "✅")
    out = capsys.readouterr().out
    assert out.startswith(mark) and phrase in out, out


if __name__ == "__main__":  # run by torchrun from the `launched` fixture
    _worker(Path(sys.argv[1]))
