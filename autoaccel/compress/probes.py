"""Try each structural edit once on a copy of the model before a search offers it.

Reading a layout (`layout.py`) says which edits *should* apply; some models break only when
the edited copy runs. MPNet adds one relative-position bias, sized for the teacher's head
count, to every layer's attention scores, so a layer with pruned heads no longer matches it;
torch-pruning cannot build its dependency graph of GPT-2 (Conv1D layers, a fused
query/key/value split). Without a probe every trial that picks such an edit fails the same
way. A probe edits a deep copy, runs one forward pass on the example inputs and returns what
was raised, in words: the search leaves the knob out and states the reason once.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

PROBE_FRACTION = 0.5
"""How much each probe removes: a typical searched amount, and at least one unit of any
layer with two or more (heads, neurons, channels)."""


def failure(model: nn.Module, edit: Callable[[nn.Module], nn.Module | None], args: tuple) -> str:
    """The exception in a few words (`ExceptionType: first line`) when `edit` of a deep copy
    of `model`, or a forward pass of the result on `args`, raises; "" when both run."""
    trial = copy.deepcopy(model)
    try:
        with warnings.catch_warnings():  # the trials that apply it say what they must
            warnings.simplefilter("ignore")
            edited = edit(trial)
            edited = trial if edited is None else edited
            with torch.no_grad():
                edited.eval()(*args)
    except Exception as exc:  # noqa: BLE001 - any error means the edit is not offered
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"{type(exc).__name__}: {first[:160]}".rstrip(": ")
    return ""


def heads(model: nn.Module, args: tuple) -> str:
    """Why removing attention heads breaks `model` ("" when it runs)."""
    from autoaccel.compress.pruning import transformer

    return failure(model, lambda m: transformer(m, PROBE_FRACTION, 0.0), args)


def ffn(model: nn.Module, args: tuple) -> str:
    """Why removing feed-forward neurons breaks `model` ("" when it runs)."""
    from autoaccel.compress.pruning import transformer

    return failure(model, lambda m: transformer(m, 0.0, PROBE_FRACTION), args)


def channels(model: nn.Module, args: tuple) -> str:
    """Why torch-pruning cannot remove `model`'s hidden channels / neurons ("" when it can)."""
    from autoaccel.compress.pruning import structured

    return failure(model, lambda m: structured(m, PROBE_FRACTION, args), args)


def layers(model: nn.Module, args: tuple) -> str:
    """Why a student keeping half the layer stack breaks `model` ("" when it runs)."""
    from autoaccel.compress.distillation import default_layers, layer_student
    from autoaccel.compress.layout import find_layout

    total = find_layout(model).num_layers
    keep = default_layers(total, max(1, total // 2))
    return failure(model, lambda m: layer_student(m, keep), args)
