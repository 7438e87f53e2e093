import dataclasses
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import nin_utils.training as training
from nin_utils import (CHANCE_LOSS, Budget, CheckpointError, NiN, PlateauWarning, PlateauWatch,
                       Recipe, SmallMapWarning, UserError, evaluate, fit, load_checkpoint,
                       load_fashion_mnist, mnist_nin, output_side, train_step)
from conftest import Interrupt, disconnect, synthetic_fashion
import nin_utils.train as train_module
from nin_utils.train import main, run
from nin_utils.training import LOG_EVERY, PLATEAU_STEPS, make_optimization

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny():
    return synthetic_fashion(train=384, test=256)


def budget(epochs, resolution=28):
    return Budget(train_subset=None, test_subset=None, epochs=epochs, resolution=resolution)


def _train(data, epochs, recipe=Recipe(batch_size=64), **kwargs):
    torch.manual_seed(0)
    model = mnist_nin()  # the trained network: a 7 x 7 map at 28 px
    history = fit(model, data, recipe, budget(epochs), progress=False, **kwargs)
    return model, history


# ----------------------------------------------------------------- the recipe

def test_recipe_defaults_and_d2ls():
    assert Recipe() == Recipe(batch_size=128, optimizer="adamw", lr=4e-3, schedule="onecycle", grad_clip=2.0,
                              label_smoothing=0.1)
    d2l = Recipe.d2l()
    assert (d2l.optimizer, d2l.lr, d2l.momentum, d2l.weight_decay, d2l.schedule, d2l.grad_clip,
            d2l.label_smoothing, d2l.autocast, d2l.batch_size) == ("sgd", 0.1, 0.0, 0.0, "constant", None, 0.0,
                                                                   False, 128)
    assert Recipe.from_dict(dataclasses.asdict(d2l)) == d2l
    with pytest.raises(dataclasses.FrozenInstanceError):
        d2l.lr = 1.0


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0), ("batch_size", -5), ("batch_size", 1.5), ("lr", 0), ("lr", -1), ("lr", float("nan")),
    ("optimizer", "adam"), ("schedule", "cosine"), ("momentum", 1.0), ("weight_decay", -1e-4),
    ("warmup", 0), ("grad_clip", 0), ("label_smoothing", 1.0)])
def test_an_invalid_recipe_is_one_clear_error(field, value):
    with pytest.raises(ValueError, match=f"Recipe {field}=.* is invalid: it must be"):
        Recipe(**{field: value})


def test_unknown_recipe_fields_in_a_checkpoint_are_refused():
    with pytest.raises(ValueError, match="Unknown recipe fields \\['lr_max'\\]"):
        Recipe.from_dict({"lr_max": 1.0})


# ----------------------------------------------------------------- the step and the loop

def test_train_step_updates_every_parameter_and_returns_detached_results(tiny):
    model, recipe = NiN(zero_init_last=False), Recipe(batch_size=8)
    optim = make_optimization(model, recipe, total_steps=10)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = next(tiny.batches("train", 8, 67))
    loss, logits = train_step(model, x, y, recipe, optim)
    assert logits.shape == (8, 10) and not loss.requires_grad and not logits.requires_grad
    assert 1.0 < loss.item() < 10.0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert optim.scheduler.last_epoch == 1


def test_fit_takes_every_step_through_train_step(tiny, monkeypatch):
    calls = []
    real = training.train_step
    monkeypatch.setattr(training, "train_step", lambda *args: calls.append(1) or real(*args))
    _train(tiny, 2)
    assert len(calls) == 2 * tiny.num_batches("train", 64) == 12


def test_untrained_zero_logit_model_scores_exactly_chance():
    # All-zero logits: argmax picks class 0, which is exactly 10 of the 100 balanced test images.
    assert evaluate(NiN(), synthetic_fashion(test=100), resolution=67) == 0.1


@pytest.mark.slow
def test_a_short_real_run_learns_far_above_chance():
    # 4,000 images, 2 epochs of the trained network at 28 px (126 steps); chance is 0.10, so 0.3
    # fails only when learning is broken, not on an unlucky seed or thread count.
    data = load_fashion_mnist(device="cpu", train_subset=4_000, test_subset=1_000, seed=0)
    history = fit(mnist_nin(), data, Recipe(batch_size=64), budget(2, resolution=28), progress=False)
    assert history[-1].train_loss < history[0].train_loss < CHANCE_LOSS
    assert history[-1].test_acc >= 0.3, history


def test_bad_budgets_are_clear_errors(tiny):
    with pytest.raises(UserError, match="epochs=0 is invalid"):
        _train(tiny, 0)
    with pytest.raises(UserError, match="resolution=28 is below the smallest input this network accepts \\(67 px\\)"):
        fit(NiN(), tiny, None, budget(1), progress=False)


def test_model_and_data_on_different_devices_is_a_clear_error(tiny):
    data = load_fashion_mnist(device="meta", train_subset=8, test_subset=8)
    with pytest.raises(UserError, match="model is on cpu but the data is on meta"):
        fit(NiN(), data, None, budget(1), progress=False)


# ----------------------------------------------------------------- checkpoints

def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny, tmp_path):
    straight, straight_history = _train(tiny, 2)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):  # dies right after epoch 1's checkpoint is written
        _train(tiny, 2, checkpoint=checkpoint, callbacks=[disconnect])
    assert len(load_checkpoint(checkpoint)["history"]) == 1
    resumed, resumed_history = _train(tiny, 2, checkpoint=checkpoint, resume=True)
    assert [s.epoch for s in resumed_history] == [1, 2]
    assert resumed_history[-1].train_loss == straight_history[-1].train_loss
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_resume_of_a_finished_run_trains_nothing_more(tiny, tmp_path):
    checkpoint = tmp_path / "run.pt"
    model, history = _train(tiny, 1, checkpoint=checkpoint)
    again, again_history = _train(tiny, 1, checkpoint=checkpoint, resume=True)
    assert again_history == history
    assert torch.equal(model.state_dict()["features.0.0.weight"], again.state_dict()["features.0.0.weight"])


def test_checkpoint_stores_the_recipe_budget_and_model_args_as_plain_data(tiny, tmp_path):
    checkpoint = tmp_path / "run.pt"
    recipe = Recipe(batch_size=64, label_smoothing=0.1)
    model, _ = _train(tiny, 1, recipe, checkpoint=checkpoint)
    state = load_checkpoint(checkpoint)
    assert Recipe.from_dict(state["recipe"]) == recipe
    assert Budget(**state["budget"]) == budget(1)
    assert (state["seed"], state["train_size"]) == (0, 384)
    rebuilt = NiN(**state["model_args"])  # nanoGPT's model_args: the checkpoint rebuilds its network
    rebuilt.load_state_dict(state["model"])
    x = next(tiny.batches("test", 4, 28))[0]
    assert torch.allclose(rebuilt.eval()(x), model.eval()(x), atol=1e-5)


def test_truncated_checkpoint_is_a_clear_error(tiny, tmp_path):
    checkpoint = tmp_path / "run.pt"
    _train(tiny, 1, checkpoint=checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or incomplete.*delete it"):
        _train(tiny, 2, checkpoint=checkpoint, resume=True)


def test_resume_with_another_recipe_is_a_clear_error(tiny, tmp_path):
    checkpoint = tmp_path / "run.pt"
    _train(tiny, 1, checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match="other settings \\(lr: 0.004 -> 0.01\\)"):
        _train(tiny, 1, Recipe(batch_size=64, lr=0.01), checkpoint=checkpoint, resume=True)


class _Payload:
    """Unpickling this would create a file: the stand-in for code in a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tiny, tmp_path):
    checkpoint, marker = tmp_path / "run.pt", tmp_path / "payload-ran"
    _train(tiny, 1, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "history": _Payload(marker)}, checkpoint)
    with pytest.raises(CheckpointError, match="not loaded: it refers to .*could run code"):
        _train(tiny, 2, checkpoint=checkpoint, resume=True)
    assert not marker.exists()
    torch.load(checkpoint, weights_only=False)  # proves the payload is live: unsafe loading runs it
    assert marker.exists()


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a nin_utils checkpoint \\(it lacks model\\)"):
        load_checkpoint(tmp_path / "other.pt")


# ----------------------------------------------------------------- the plateau warning

def test_plateau_at_ln10_warns_once_and_names_the_causes():
    watch = PlateauWatch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(PLATEAU_STEPS // LOG_EVERY - 1):  # fewer than PLATEAU_STEPS steps logged
            watch.on_log(CHANCE_LOSS)
    with pytest.warns(PlateauWarning, match="init='kaiming'.*final_relu=False.*input_norm") as caught:
        for _ in range(5):
            watch.on_log(CHANCE_LOSS)
    assert len(caught) == 1


def test_a_learning_loss_does_not_warn():
    watch = PlateauWatch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(3 * PLATEAU_STEPS // LOG_EVERY):
            watch.on_log(2.3 - i / 20)


@pytest.mark.slow
def test_d2l_recipe_on_d2l_nin_warns_once(tiny):
    from nin_utils import d2l_nin
    with pytest.warns((PlateauWarning, SmallMapWarning)) as caught:  # at 67 px its map is 1 x 1
        fit(d2l_nin(), tiny, dataclasses.replace(Recipe.d2l(), batch_size=8), budget(3, resolution=67),
            progress=False)
    assert len([w for w in caught if w.category is PlateauWarning]) == 1


# ----------------------------------------------------------------- the command line

def test_command_line_trains_and_saves_a_checkpoint(tmp_path, capsys):
    checkpoint = tmp_path / "cli.pt"
    history = run(["--mode", "smoke", "--train-subset", "256", "--test-subset", "128",
                   "--checkpoint", str(checkpoint)])
    out = capsys.readouterr().out
    assert "smoke mode on cpu (" in out and ": 256 training images, 1 epoch at 28 px" in out
    assert "Final test accuracy" in out and "on 128 test images" in out
    state = load_checkpoint(checkpoint)
    assert len(history) == 1 and state["train_size"] == 256
    # The command line trains the authors' MNIST NiN, whose GAP averages a 7 x 7 map at 28 px.
    assert state["model_args"] == mnist_nin().model_args
    assert output_side(NiN(**state["model_args"]), state["budget"]["resolution"]) == 7


def test_float32_option_turns_autocast_off(tmp_path, capsys):
    checkpoint = tmp_path / "fp32.pt"
    assert main(["--mode", "smoke", "--train-subset", "256", "--test-subset", "128", "--float32",
                 "--checkpoint", str(checkpoint)]) is None  # a console script exits 0 on None
    assert "peak lr 0.004, float32" in capsys.readouterr().out
    assert load_checkpoint(checkpoint)["recipe"]["autocast"] is False


def test_module_runs_without_a_warning():
    result = subprocess.run([sys.executable, "-m", "nin_utils.train", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0 and "usage: python -m nin_utils.train" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: 0 must be greater than 0"),
    (["--batch-size", "0"], "argument --batch-size: 0 must be greater than 0"),
    (["--train-subset", "0"], "argument --train-subset: 0 must be greater than 0"),
    (["--test-subset", "0"], "argument --test-subset: 0 must be greater than 0"),
    (["--batch-size", "-5"], "argument --batch-size: -5 must be greater than 0"),
    (["--lr", "-1"], "argument --lr: -1 must be greater than 0"),
    (["--epochs", "two"], "argument --epochs: 'two' is not a whole number"),
    (["--mode", "fast"], "argument --mode: invalid choice: 'fast'"),
    (["--train-subset", "99999999"], "train_subset=99999999 is out of range: Fashion-MNIST has 60,000"),
    (["--test-subset", "10001"], "test_subset=10001 is out of range"),
    (["--resolution", "3"], "resolution=3 is below the smallest input"),
])
def test_bad_options_give_one_sentence_and_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "smoke", "--checkpoint", os.devnull, *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("python -m nin_utils.train: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_dir_and_damaged_checkpoint_give_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NIN_DATA_DIR", str(tmp_path / "nonexistent"))
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "smoke"])
    assert exit_.value.code == 2 and "NIN_DATA_DIR=" in capsys.readouterr().err
    monkeypatch.delenv("NIN_DATA_DIR")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "smoke", "--train-subset", "64", "--checkpoint", str(damaged), "--resume"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "is damaged or incomplete" in err


def test_a_bad_command_line_from_a_shell_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nin_utils.train", "--batch-size", "-5"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr == ("python -m nin_utils.train: error: argument --batch-size: -5 must be "
                             "greater than 0\n")


@pytest.mark.slow
def test_the_installed_console_script_exits_0_after_training(tmp_path):
    nin_train = Path(sys.executable).parent / "nin-train"
    result = subprocess.run([str(nin_train), "--mode", "smoke", "--epochs", "1", "--train-subset", "512",
                             "--test-subset", "512", "--checkpoint", str(tmp_path / "cli.pt")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Final test accuracy" in result.stdout and "EpochStats" not in result.stdout + result.stderr


def test_user_errors_are_value_errors_from_every_validation_site():
    from nin_utils import get_mode
    assert issubclass(UserError, ValueError)
    for bad in (lambda: Recipe(batch_size=0), lambda: Recipe.from_dict({"lr_max": 1.0}),
                lambda: load_fashion_mnist(device="cpu", train_subset=0), lambda: get_mode("fast"),
                lambda: NiN(head="mlp"), lambda: NiN(final_relu=True), lambda: NiN(head="fc", resolution=28),
                lambda: NiN(init="he")):
        with pytest.raises(UserError):
            bad()


def test_a_user_error_inside_training_is_one_sentence(capsys, monkeypatch):
    monkeypatch.setenv("NIN_MODE", "fast")
    with pytest.raises(SystemExit) as exit_:
        main(["--checkpoint", os.devnull])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "Unknown NiN mode 'fast'" in err


def test_a_value_error_from_a_bug_keeps_its_traceback(capsys, monkeypatch):
    def buggy(**kwargs):
        raise ValueError("a bug, not the user's doing")

    monkeypatch.setattr(train_module, "load_fashion_mnist", buggy)
    with pytest.raises(ValueError, match="a bug, not the user's doing"):  # uncaught: Python prints the traceback
        main(["--mode", "smoke", "--checkpoint", os.devnull])
    assert "error:" not in capsys.readouterr().err


def test_nin_debug_adds_the_traceback_to_a_user_error(capsys, monkeypatch):
    monkeypatch.setenv("NIN_DEBUG", "1")
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "smoke", "--checkpoint", os.devnull, "--train-subset", "99999999"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("Traceback (most recent call last):")
    assert "nin_utils.errors.UserError: train_subset=99999999 is out of range" in err
    assert err.splitlines()[-1].startswith("python -m nin_utils.train: error: train_subset=99999999 is out of "
                                           "range")


def test_fit_warns_when_gap_would_average_a_map_under_5x5():
    data = synthetic_fashion(64, 32)
    with pytest.warns(SmallMapWarning, match="last map is 1 x 1, so global average pooling averages 1"):
        fit(NiN(), data, Recipe(batch_size=32), Budget(None, None, 1, 72), progress=False)
    with pytest.warns(SmallMapWarning, match="3 x 3"):
        fit(mnist_nin(), data, Recipe(batch_size=32), Budget(None, None, 1, 14), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallMapWarning)
        fit(mnist_nin(), data, Recipe(batch_size=32), Budget(None, None, 1, 28), progress=False)  # 7 x 7
        fit(mnist_nin(head="fc", resolution=14), data, Recipe(batch_size=32), Budget(None, None, 1, 14),
            progress=False)  # no GAP, nothing to warn about


def test_hflip_mirrors_about_half_of_the_training_images(monkeypatch):
    data, seen = synthetic_fashion(256, 32), []

    def record(net, x, y, recipe, optim):
        seen.append(x)
        return torch.zeros(()), torch.zeros(len(y), 10)

    monkeypatch.setattr(training, "train_step", record)
    fit(mnist_nin(), data, Recipe(batch_size=256, hflip=True), Budget(None, None, 1, 28), progress=False)
    original, _ = next(data.batches("train", 256, 28, shuffle_seed=training._shuffle_seed(0, 1)))
    flipped = (seen[0] == original.flip(-1)).flatten(1).all(1)
    unchanged = (seen[0] == original).flatten(1).all(1)
    assert (flipped | unchanged).all() and 0.35 < flipped.float().mean() < 0.65


@pytest.mark.parametrize("autocast", [True, False])
def test_each_epoch_is_tested_in_the_recipes_precision(tiny, monkeypatch, autocast):
    tested_with = []
    evaluate_as_before = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *args, **kwargs: tested_with.append(kwargs["autocast"])
                        or evaluate_as_before(*args, **kwargs))
    _train(tiny, 2, Recipe(batch_size=64, autocast=autocast))
    assert tested_with == [autocast, autocast]  # --float32 is float32 throughout, evaluation included
