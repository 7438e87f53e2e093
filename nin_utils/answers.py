"""Answers as plain data: what a student's function returned, in a form that carries no code.

``encode`` turns a value into JSON-ready data: numbers, strings, lists, tuples and dicts as they
are, a network as its tree of layers, anything else as its type and ``repr``. ``decode`` turns
that data back into values, rebuilding networks from torch.nn layers and nin_utils' own
networks only. So the class grader can run a student's function in a sandbox, carry what it
returned out as JSON, and judge it with the checkers in a process that runs no student code.

A network whose class the student wrote cannot be described: its ``forward`` is their code.
The checkers judge the rebuilt network in the notebook too (``rebuild``), so a check there
and the grade agree.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import torch
from torch import nn

from .models import NiN

# torch.nn layers a rebuilt network may hold, rebuilt from their constructor arguments.
LAYERS = {cls.__name__: cls for cls in (
    nn.Conv2d, nn.Linear, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softmax,
    nn.LogSoftmax, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten,
    nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    nn.Identity, nn.ZeroPad2d)}
CONTAINERS = {cls.__name__: cls for cls in (nn.Sequential, nn.ModuleList, nn.ModuleDict)}
NETWORKS = {cls.__name__: cls for cls in (NiN,)}  # rebuilt from their ``model_args``
MAX_PARAMS = 100_000_000  # a larger rebuilt network is refused (NiN has 2 million)
MAX_MODULES = 1_000
MAX_DEPTH = 50  # nesting of answers and of networks
MAX_ITEMS = 10_000  # items of a list, tuple or dict answer


class NotDescribable(ValueError):
    """A network that cannot be rebuilt from torch.nn layers; the message says why, for the student."""


class Opaque:
    """An answer of a type the checkers do not take (a tensor, a string of digits...): only its repr."""

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return self.text


def describe(module: nn.Module, depth: int = 0) -> dict[str, Any]:
    """The network as a tree of layers: ``{"layer": name, "args": {...}, "children": [[name, tree], ...]}``."""
    kind = type(module)
    name = kind.__name__
    if depth > MAX_DEPTH:
        raise NotDescribable("The network is nested too deeply to be graded.")
    if (LAYERS.get(name) or CONTAINERS.get(name) or NETWORKS.get(name)) is not kind:  # that very class
        raise NotDescribable(
            f"The network contains a {name}, a class of your own: the checkers rebuild a network from its "
            f"layers and cannot run your forward(). Build it from nn.Sequential and torch.nn layers "
            f"(or nin_utils' NiN and nin_block), as the exercises do; use nn.ReLU() and nn.Flatten() "
            f"layers rather than functions.")
    tree: dict[str, Any] = {"layer": name}
    if name in NETWORKS:
        tree["args"] = dict(module.model_args)
    elif name in LAYERS:
        tree["args"] = _layer_args(module)
    children = [[child_name, describe(child, depth + 1)] for child_name, child in module.named_children()]
    if children:
        tree["children"] = children
    return tree


def _layer_args(module: nn.Module) -> dict[str, Any]:
    """The constructor arguments that rebuild ``module``: its attributes of the same names."""
    args = {}
    for name, parameter in inspect.signature(type(module).__init__).parameters.items():
        if name in ("self", "device", "dtype") or parameter.kind in (parameter.VAR_POSITIONAL,
                                                                      parameter.VAR_KEYWORD):
            continue
        if not hasattr(module, name):
            continue
        value = getattr(module, name)
        if name == "bias" or isinstance(value, torch.Tensor):  # a parameter: whether there is one
            value = value is not None
        if not _plain(value):
            raise NotDescribable(f"The network's {type(module).__name__} has {name}={value!r}, which "
                                 f"cannot be graded.")
        args[name] = list(value) if isinstance(value, tuple) else value
    return args


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def rebuild(tree: dict[str, Any]) -> nn.Module:
    """A fresh network (default initialisation) from ``describe``'s tree; ``NotDescribable`` if it
    cannot be built or is too large (``MAX_PARAMS``, ``MAX_MODULES``, counted without allocating)."""
    try:
        with torch.device("meta"):
            sized = _build(tree, [0], 0)
        params = sum(p.numel() for p in sized.parameters())
        if params > MAX_PARAMS:
            raise NotDescribable(f"The network has {params:,} parameters; the grader builds at most "
                                 f"{MAX_PARAMS:,}.")
        return _build(tree, [0], 0)
    except NotDescribable:
        raise
    except Exception as error:  # noqa: BLE001 - any malformed tree
        raise NotDescribable(f"The network could not be rebuilt ({type(error).__name__}: "
                             f"{str(error)[:200]}).") from None


def _build(tree: dict[str, Any], count: list[int], depth: int) -> nn.Module:
    count[0] += 1
    if count[0] > MAX_MODULES or depth > MAX_DEPTH:
        raise NotDescribable(f"The network has more than {MAX_MODULES:,} modules or is nested too deeply.")
    name, args, children = tree["layer"], tree.get("args", {}), tree.get("children", [])
    if not isinstance(args, dict) or not isinstance(children, list):
        raise TypeError("malformed layer")
    args = {str(key): _tuples(value) for key, value in args.items()}
    if name in CONTAINERS and not args:
        module = CONTAINERS[name]()
    elif name in NETWORKS:
        module = NETWORKS[name](**args)
    elif name in LAYERS and not children:
        module = LAYERS[name](**args)
    else:
        raise TypeError(f"unknown layer {str(name)[:40]!r}")
    for child_name, child in children:
        module.add_module(str(child_name), _build(child, count, depth + 1))
    return module


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def encode(value: Any, depth: int = 0) -> Any:
    """JSON-ready data for ``value``; ``decode`` gives an equal value back (a network: rebuilt)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else {"float": repr(number)}
    if depth > MAX_DEPTH or (isinstance(value, (list, tuple, dict)) and len(value) > MAX_ITEMS):
        return {"object": type(value).__name__, "repr": f"a {type(value).__name__} too large or deep to grade"}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, nn.Module):
        try:
            return {"network": describe(value)}
        except NotDescribable as why:
            return {"not_describable": str(why)}
    return {"object": type(value).__name__, "repr": repr(value)[:200]}


def decode(data: Any, depth: int = 0) -> Any:
    """The value ``encode`` made ``data`` from; raises ``NotDescribable`` for a network it cannot rebuild."""
    if depth > MAX_DEPTH:
        raise NotDescribable("The answer is nested too deeply to be graded.")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise NotDescribable("The answer could not be read back.")
    if "list" in data or "tuple" in data:
        items = [decode(v, depth + 1) for v in data.get("list", data.get("tuple"))]
        return items if "list" in data else tuple(items)
    if "dict" in data:
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in data["dict"]}
    if "float" in data:
        return float(data["float"])
    if "network" in data:
        return rebuild(data["network"])
    if "not_describable" in data:
        raise NotDescribable(str(data["not_describable"])[:1000])
    return Opaque(str(data.get("object"))[:100], str(data.get("repr"))[:200])
