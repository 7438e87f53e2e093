"""Shared plumbing for the Network-in-Network course; notebooks import these names."""

from .config import MODES, ModeSettings, get_device, get_mode, seed_everything
from .counting import (LayerTable, conv_output_size, count_flops, count_params, layer_table,
                       output_side, params_by_layer, smallest_input_size)
from .data import (FASHION_CLASSES, DataNotFoundError, FashionMNISTData, load_fashion_mnist,
                   to_model_input)
from .models import NiN, class_maps, nin_block
from .plotting import LivePlot, overlay_maps, plot_confusion, plot_history, show_images, show_maps
from .train import (CheckpointError, EpochStats, PlateauWarning, evaluate, fit, load_checkpoint,
                    predictions)

__all__ = [
    "MODES", "ModeSettings", "get_device", "get_mode", "seed_everything",
    "LayerTable", "conv_output_size", "count_flops", "count_params", "layer_table", "output_side",
    "params_by_layer", "smallest_input_size",
    "FASHION_CLASSES", "DataNotFoundError", "FashionMNISTData", "load_fashion_mnist", "to_model_input",
    "NiN", "class_maps", "nin_block",
    "LivePlot", "overlay_maps", "plot_confusion", "plot_history", "show_images", "show_maps",
    "CheckpointError", "EpochStats", "PlateauWarning", "evaluate", "fit", "load_checkpoint", "predictions",
]
