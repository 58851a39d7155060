"""What a sentence-transformers folder's modules.json says: pooling, Dense layers, L2 norm.

sentence-transformers saves a model as a pipeline of modules: the Transformer, then Pooling,
optionally Dense projections (LaBSE and the distiluse models end in one), then Normalize.
autoaccel computes the same pipeline in its own wrapper (`hf_modules.SentenceEmbedder`), so
only these four kinds are read, in that order; anything else is refused with the way out
(export the model to ONNX). A Dense layer's activation is looked up by its class name in an
allow-list of torch.nn modules (the file names a class path: nothing is imported from it),
and its weights are read with safetensors or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from autoaccel.errors import UserError

POOLINGS = ("cls", "mean", "max")
ACTIVATIONS = ("Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU")
"""Dense activations read by name (sentence-transformers' default is Tanh)."""
DENSE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
EXPORT = "export the full model to ONNX and pass the .onnx file"


@dataclass(frozen=True)
class Dense:
    """One Dense module: its folder, sizes and activation (as read, checked)."""

    folder: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str
    weights: Path

    def describe(self) -> str:
        return f"Dense {self.in_features}->{self.out_features} {self.activation.lower()}"


@dataclass(frozen=True)
class Pipeline:
    """The modules after the Transformer, and the length the folder cuts texts at."""

    pooling: str = "mean"
    normalize: bool = False
    dense: tuple[Dense, ...] = ()
    source: str = "no modules.json: mean pooling, not normalised"
    max_seq_length: int | None = None


def read_pipeline(path: Path) -> Pipeline:
    """modules.json (and sentence_bert_config.json's length) of the folder at `path`."""
    st_config = path / "sentence_bert_config.json"
    length = (
        json.loads(st_config.read_text()).get("max_seq_length") if st_config.is_file() else None
    )
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return Pipeline(max_seq_length=length)
    pooling, normalize, dense, stage = "mean", False, [], 0  # 0 encoder, 1 pooled, 2 normed
    allowed = {"Transformer": (0,), "Pooling": (0,), "Dense": (1,), "Normalize": (0, 1)}
    for module in json.loads(modules_file.read_text()):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        where = path / module.get("path", "")
        if kind not in allowed:
            raise UserError(
                f"--model {modules_file}: module {kind} is not supported (only Transformer, "
                f"Pooling, Dense, Normalize); {EXPORT}"
            )
        if stage not in allowed[kind]:
            raise UserError(
                f"--model {modules_file}: module {kind} comes where autoaccel expects "
                f"Transformer, Pooling, Dense..., Normalize in that order; {EXPORT}"
            )
        if kind == "Pooling":
            pooling, stage = _pooling_mode(where / "config.json"), 1
        elif kind == "Dense":
            dense.append(_dense(where))
        elif kind == "Normalize":
            normalize, stage = True, 2
    parts = [f"{pooling} pooling", *(d.describe() for d in dense)]
    parts += ["L2-normalised"] if normalize else []
    return Pipeline(pooling, normalize, tuple(dense), f"{', '.join(parts)} (modules.json)", length)


def _pooling_mode(config_file: Path) -> str:
    if not config_file.is_file():
        return "mean"
    cfg = json.loads(config_file.read_text())
    if isinstance(cfg.get("pooling_mode"), str):
        modes = [cfg["pooling_mode"].replace("_tokens", "").replace("_token", "")]
    else:
        modes = [m for m in POOLINGS if cfg.get(f"pooling_mode_{m}_token")
                 or cfg.get(f"pooling_mode_{m}_tokens")]  # fmt: skip
    extra = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
    if len(modes) != 1 or modes[0] not in POOLINGS or len(extra) > 1:
        raise UserError(
            f"--model {config_file}: pooling {', '.join(extra) or modes} is not supported "
            f"(one of mean, cls, max); {EXPORT}"
        )
    return modes[0]


def _dense(folder: Path) -> Dense:
    """A Dense module's config and weights file, checked before anything is loaded."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"--model {folder}: a Dense module without config.json; {EXPORT}")
    cfg = json.loads(config_file.read_text())
    name = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
    activation = name.rsplit(".", 1)[-1]
    if activation not in ACTIVATIONS:
        raise UserError(
            f"--model {config_file}: Dense activation {name} is not supported (one of "
            f"{', '.join(ACTIVATIONS)}); {EXPORT}"
        )
    sizes = (cfg.get("in_features"), cfg.get("out_features"))
    if not all(isinstance(s, int) and s > 0 for s in sizes):
        raise UserError(f"--model {config_file}: Dense in_features / out_features missing")
    weights = next((folder / w for w in DENSE_WEIGHTS if (folder / w).is_file()), None)
    if weights is None:
        raise UserError(
            f"--model {folder}: a Dense module without weights ({', '.join(DENSE_WEIGHTS)}); "
            "save the model with sentence-transformers' save()"
        )
    return Dense(folder, sizes[0], sizes[1], bool(cfg.get("bias", True)), activation, weights)


def load_dense(dense: tuple[Dense, ...]):  # -> torch.nn.Sequential
    """The Dense modules as torch layers with their weights (state-dict keys as saved)."""
    import torch

    from autoaccel.workloads.hf_modules import DenseLayer

    layers = []
    for spec in dense:
        layer = DenseLayer(spec.in_features, spec.out_features, spec.bias, spec.activation)
        if spec.weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(spec.weights))
        else:
            state = torch.load(spec.weights, map_location="cpu", weights_only=True)
        try:
            layer.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(
                f"--model {spec.weights}: not this Dense layer's weights ({first})"
            ) from None
        layers.append(layer)
    return torch.nn.Sequential(*layers).eval()


def dense_files(dense: tuple[Dense, ...]) -> list[Path]:
    """The files that make the Dense layers what they are (part of the model's identity)."""
    return [p for d in dense for p in (d.folder / "config.json", d.weights)]
