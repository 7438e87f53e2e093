"""Shared plumbing for the Network-in-Network course; notebooks import these names."""

from .checkpoint import CheckpointError, load_checkpoint
from .config import MODES, Budget, Mode, describe_device, get_device, get_mode, seed_everything
from .counting import (LayerTable, conv_output_size, count_flops, count_params, layer_table,
                       output_side, params_by_layer, smallest_resolution)
from .data import (CHANCE_LOSS, FASHION_CLASSES, DataNotFoundError, FashionMNISTData,
                   fashion_mnist_root, load_fashion_mnist, shifted, to_model_input)
from .distributed import DistributedError
from .errors import UserError
from .models import NiN, class_maps, d2l_nin, mnist_nin, mnist_nin_as_released, nin_block
from .evidence import load_evidence
from .pretrained import load_pretrained, pretrained_card
from .plotting import (LivePlot, draw_architecture, draw_ring_all_reduce, overlay_maps, plot_confusion,
                       plot_history, plot_seed_spread, show_images, show_maps)
from .training import (Callback, EpochStats, PlateauWarning, PlateauWatch, Recipe, SmallMapWarning,
                       evaluate, fit, predictions, train_step)

__all__ = [
    "CheckpointError", "load_checkpoint",
    "MODES", "Budget", "Mode", "describe_device", "get_device", "get_mode", "seed_everything",
    "LayerTable", "conv_output_size", "count_flops", "count_params", "layer_table", "output_side",
    "params_by_layer", "smallest_resolution",
    "CHANCE_LOSS", "FASHION_CLASSES", "DataNotFoundError", "FashionMNISTData", "fashion_mnist_root",
    "load_fashion_mnist", "shifted",
    "to_model_input",
    "DistributedError",
    "UserError",
    "NiN", "class_maps", "d2l_nin", "mnist_nin", "mnist_nin_as_released", "nin_block",
    "load_evidence", "load_pretrained", "pretrained_card",
    "LivePlot", "draw_architecture", "draw_ring_all_reduce", "overlay_maps", "plot_confusion", "plot_history",
    "plot_seed_spread",
    "show_images", "show_maps",
    "Callback", "EpochStats", "PlateauWarning", "PlateauWatch", "Recipe", "SmallMapWarning", "evaluate", "fit", "predictions", "train_step",
]
