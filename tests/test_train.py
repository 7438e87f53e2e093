import math
import warnings

import pytest
import torch

from nin_utils import MODES, CheckpointError, NiN, PlateauWarning, evaluate, fit, load_checkpoint, load_fashion_mnist
from nin_utils.train import _PlateauWatch, main


@pytest.fixture(scope="module")
def tiny():
    return load_fashion_mnist(device="cpu", train_subset=384, test_subset=256, seed=0)


def test_untrained_zero_logit_model_scores_exactly_chance(fashion):
    # All-zero logits: argmax picks class 0, which is exactly 1,000 of the 10,000 test images.
    assert evaluate(NiN(), fashion, resolution=67) == 0.1


def test_quick_recipe_learns_well_above_chance():
    quick = MODES["quick"]
    data = load_fashion_mnist(device="cpu", train_subset=quick.train_subset,
                              test_subset=quick.test_subset, seed=0)
    torch.manual_seed(0)
    history = fit(NiN(), data, epochs=quick.epochs, resolution=quick.resolution, batch_size=quick.batch_size,
                  progress=False)
    assert history[-1].train_loss < history[0].train_loss < math.log(10)
    assert history[-1].test_acc >= 0.70, history


def _train(data, epochs, **kwargs):
    torch.manual_seed(0)
    model = NiN()
    history = fit(model, data, epochs=epochs, resolution=67, batch_size=64, progress=False, **kwargs)
    return model, history


class _Interrupt(Exception):
    """Stands in for a Colab disconnect."""


def _disconnect(history):
    raise _Interrupt


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny, tmp_path):
    straight, straight_history = _train(tiny, 2)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(_Interrupt):  # dies right after epoch 1's checkpoint is written
        _train(tiny, 2, checkpoint=checkpoint, on_epoch_end=_disconnect)
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


def test_truncated_checkpoint_is_a_clear_error(tiny, tmp_path):
    checkpoint = tmp_path / "run.pt"
    _train(tiny, 1, checkpoint=checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or incomplete.*Delete it"):
        _train(tiny, 2, checkpoint=checkpoint, resume=True)


def test_resume_with_other_settings_is_a_clear_error(tiny, tmp_path):
    checkpoint = tmp_path / "run.pt"
    _train(tiny, 1, checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match="other settings.*lr: 0.002 -> 0.01"):
        _train(tiny, 1, checkpoint=checkpoint, resume=True, lr=0.01)


def test_model_and_data_on_different_devices_is_a_clear_error(tiny):
    model = NiN()
    data = load_fashion_mnist(device="meta", train_subset=8, test_subset=8)
    with pytest.raises(ValueError, match="model is on cpu but the data is on meta"):
        fit(model, data, epochs=1, progress=False)


def test_plateau_at_ln10_warns_once_and_names_the_causes():
    watch = _PlateauWatch()
    with pytest.warns(PlateauWarning, match="init='kaiming'.*final_relu=False.*normalize=True"):
        for _ in range(watch.window):
            watch.add(torch.tensor(math.log(10)))
        watch.check()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        watch.check()  # only once


def test_a_learning_loss_does_not_warn():
    watch = _PlateauWatch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(watch.window):
            watch.add(torch.tensor(2.3 - step / 100))
        watch.check()


def test_command_line_trains_and_saves_a_checkpoint(tmp_path, capsys):
    checkpoint = tmp_path / "cli.pt"
    history = main(["--mode", "quick", "--epochs", "1", "--train-subset", "256", "--test-subset", "128",
                    "--checkpoint", str(checkpoint)])
    out = capsys.readouterr().out
    assert "quick mode" in out and "Final test accuracy" in out
    assert len(history) == 1 and checkpoint.is_file()
    assert load_checkpoint(checkpoint)["settings"]["train_size"] == 256
