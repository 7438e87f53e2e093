"""Figures: the right panels, titles and data (headless, Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nin_utils import (FASHION_CLASSES, EpochStats, NiN, draw_architecture, draw_ring_all_reduce,  # noqa: E402
                       overlay_maps, plot_confusion, plot_history, plot_seed_spread, show_images, show_maps)
from nin_utils.plotting import plot_mean_sd  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _stats(epoch: int, test_acc: float) -> EpochStats:
    return EpochStats(epoch=epoch, train_loss=1.0 / epoch, train_acc=0.5, test_acc=test_acc,
                      examples_per_s=100.0, seconds=1.0, step_losses=[1.2, 1.0])


def test_plot_history_draws_each_run_test_accuracy():
    fig = plot_history({"gap": [_stats(1, 0.6), _stats(2, 0.7)], "fc": [_stats(1, 0.55)]})
    acc_ax = fig.axes[1]
    test_lines = {line.get_label(): list(line.get_ydata()) for line in acc_ax.lines
                  if line.get_label().endswith("test")}
    assert test_lines == {"gap test": [0.6, 0.7], "fc test": [0.55]}


def test_show_images_marks_mistakes_red():
    images = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    fig = show_images(images, labels=[0, 1, 2], predictions=[0, 5, 2], ncols=3)
    titles = [(ax.get_title(), ax.title.get_color()) for ax in fig.axes]
    assert titles[1] == (f"{FASHION_CLASSES[5]}\n({FASHION_CLASSES[1]})", "red")
    assert titles[0][1] == titles[2][1] == "black"


def test_show_maps_grid_leaves_spare_panels_empty():
    fig = show_maps(torch.rand(12, 5, 5), ncols=10)
    assert len(fig.axes) == 20
    assert sum(bool(ax.images) for ax in fig.axes) == 12


def test_plot_confusion_writes_counts():
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion[3, 3], confusion[3, 6] = 90, 10
    texts = sorted(t.get_text() for t in plot_confusion(confusion).axes[0].texts)
    assert texts == ["10", "90"]


def test_overlay_maps_upsamples_each_map_onto_its_image():
    images = torch.rand(4, 1, 72, 72)
    maps = torch.zeros(4, 3, 3)
    maps[2, 0, 0] = 1.0  # evidence in the top-left cell of image 2's map only
    maps[0] = 0.25  # a flat map: on a shared scale it must not look as strong as image 2's peak
    fig = overlay_maps(images, maps, titles=list("abcd"))
    panels, colour_bar = fig.axes[:4], fig.axes[4]
    assert [ax.get_title() for ax in panels] == list("abcd")
    heat = panels[2].images[1].get_array()
    assert heat.shape == (72, 72)
    assert heat[:12, :12].mean() > 0.5 > heat[-24:, -24:].max()
    assert all(ax.images[1].get_clim() == (0.0, 1.0) for ax in panels)  # one colour scale for all
    assert colour_bar.get_ylabel() == "class score (logit)"


def test_plot_seed_spread_shows_every_seed_and_the_mean():
    fig = plot_seed_spread({"a": [0.90, 0.92, 0.91], "b": [0.80, 0.84]})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    seeds = [list(line.get_xdata()) for line in ax.lines if line.get_marker() == "o"]
    assert seeds == [[0.90, 0.92, 0.91], [0.80, 0.84]]


def test_plot_mean_sd_draws_each_series_mean_and_sd_in_x_order():
    fig = plot_mean_sd({"GAP": {"2": [0.8, 0.6], "0": [0.9, 0.9]}, "card": {21: [0.5]}}, xlabel="shift (px)")
    ax = fig.axes[0]
    series = {bars.get_label(): bars for bars in ax.containers}
    means = {label: (list(bars.lines[0].get_xdata()), list(bars.lines[0].get_ydata()))
             for label, bars in series.items()}
    assert means == {"GAP": ([0.0, 2.0], pytest.approx([0.9, 0.7])), "card": ([21.0], [0.5])}
    bars = series["GAP"].lines[2][0].get_segments()  # its error bars, in x order
    assert [tuple(segment[:, 1].round(4)) for segment in bars] == [(0.9, 0.9), (0.5586, 0.8414)]
    assert ax.get_xlabel() == "shift (px)" and ax.get_ylabel() == "test accuracy"
    assert all(tick.is_integer() for tick in ax.get_xticks())  # whole pixels only


def test_plot_mean_sd_draws_into_a_given_panel():
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_mean_sd({"a": {1: [0.5]}}, "epoch", "train accuracy", ax=right) is fig
    assert not left.containers and right.get_ylabel() == "train accuracy"
    assert [bars.get_label() for bars in right.containers] == ["a"]


def test_architecture_diagram_has_a_box_per_conv_and_pool_and_the_shapes():
    fig = draw_architecture(NiN(), 224)
    ax = fig.axes[0]
    assert len(ax.patches) == 1 + 12 + 3 + 1  # input, 12 convs, 3 max pools, global average pooling
    texts = {t.get_text() for t in ax.texts}
    assert {"96 x 54 x 54", "384 x 5 x 5", "10 x 1 x 1", "NiN block 1", "NiN block 4"} <= texts


def test_ring_all_reduce_figure_sums_one_chunk_per_process_then_every_chunk_everywhere():
    fig = draw_ring_all_reduce(processes=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["start"] + [f"{phase} {step}" for phase in ("reduce-scatter", "all-gather")
                                  for step in (1, 2, 3)]
    cells = lambda ax: [t.get_text() for t in ax.texts]  # row by row: process p, chunk c
    assert cells(fig.axes[0]) == [str(p) for p in range(4) for _ in range(4)]
    after_reduce_scatter = cells(fig.axes[3])
    rows = [after_reduce_scatter[4 * p:4 * p + 4] for p in range(4)]
    assert [row.count("0123") for row in rows] == [1, 1, 1, 1]  # each process: one whole chunk ...
    assert sorted(row.index("0123") for row in rows) == [0, 1, 2, 3]  # ... a different one each
    assert set(cells(fig.axes[-1])) == {"0123"}
