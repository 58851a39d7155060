"""Search spaces: YAML files that narrow what each technique declares.

```yaml
version: 1
techniques:
  runtime:
    backend: [onnxruntime, torch]       # a list: categorical over these values
    intra_op_threads: {low: 1, high: 2}  # a range: within the declared bounds
  quantize:
    mode: [none, int8_dynamic]
targets:                                # not searched: every build is projected on each
  names: [cpu-local, nvidia-l4]         # default every profile (--targets overrides)
  batch_size: [1, 8, 32]                # the plan grid each estimated target is projected over
  tensor: [1, 2]
```
A technique left out is not searched (it keeps its defaults, i.e. does nothing); a parameter
left out keeps its declared default. Validation happens here, once, with messages that name
the file, the key and the fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoaccel.errors import UserError
from autoaccel.projection.plans import GRID_KEYS
from autoaccel.techniques import REGISTRY, Param

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"


@dataclass(frozen=True)
class Dimension:
    """One searched parameter after the YAML narrowed it."""

    key: str  # "<technique>.<param>"
    param: Param
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    blocks: dict[str, dict[str, Any]]
    """Validated YAML: technique -> param -> list of choices or {low, high[, log]}."""
    targets: dict[str, list[Any]] | None = None
    """The `targets:` block: `names` to project on and the plan grid (not searched)."""

    def digest(self) -> str:
        """What the study is tied to: the searched dimensions only (the targets a build is
        projected on can change between runs of one study)."""
        return hashlib.sha256(json.dumps(self.blocks, sort_keys=True).encode()).hexdigest()[:16]


def resolve_space_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return SPACES_DIR / f"{name_or_path}.yaml"


def load_space(name_or_path: str) -> SearchSpace:
    path = resolve_space_path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise UserError(
            f"--space {name_or_path}: no such file {path}; use one of {known} or a path"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(
            f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("techniques"), dict):
        raise UserError(f"{path}: needs a top-level 'techniques:' mapping of technique -> params")
    unknown_top = set(raw) - {"version", "techniques", "description", "targets"}
    if unknown_top:
        raise UserError(
            f"{path}: unknown top-level key(s) {sorted(unknown_top)}; allowed: "
            "version, description, techniques, targets"
        )
    if type(raw.get("version", 1)) is not int or raw.get("version", 1) != 1:
        raise UserError(f"{path}: version {raw['version']!r} is not supported; use version: 1")
    blocks: dict[str, dict[str, Any]] = {}
    for tech_name, block in raw["techniques"].items():
        if tech_name == "target":
            raise UserError(
                f"{path}: techniques.target: hardware is no longer searched (every build is "
                "measured here and projected on every target); move its plan lists to a "
                "top-level 'targets:' block (names, batch_size, data, tensor, pipeline, "
                "micro_batches)"
            )
        if tech_name not in REGISTRY:
            raise UserError(
                f"{path}: techniques.{tech_name} is not a technique; "
                f"use one of {', '.join(REGISTRY)}"
            )
        block = block or {}
        if not isinstance(block, dict):
            raise UserError(f"{path}: techniques.{tech_name} must map parameter names to values")
        declared = _declared_params(tech_name)
        blocks[tech_name] = {}
        for pname, spec in block.items():
            where = f"{path}: techniques.{tech_name}.{pname}"
            if pname not in declared:
                raise UserError(
                    f"{where} is not a parameter of {tech_name}; use one of {', '.join(declared)}"
                )
            blocks[tech_name][pname] = _validate_spec(where, declared[pname], spec)
    targets = _validate_targets(path, raw.get("targets"))
    return SearchSpace(name=path.stem, path=path, blocks=blocks, targets=targets)


def _validate_targets(path: Path, block: Any) -> dict[str, list[Any]] | None:
    """`targets:`: `names` (a list of target names, checked when the search loads them) and
    plan-grid lists of positive integers."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise UserError(f"{path}: targets must map names / plan dimensions to lists")
    out: dict[str, list[Any]] = {}
    for key, values in block.items():
        where = f"{path}: targets.{key}"
        if key not in ("names", *GRID_KEYS):
            raise UserError(f"{where} is unknown; use names, {', '.join(GRID_KEYS)}")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise UserError(f"{where}: empty list; give at least one value")
        if key == "names":
            if not all(isinstance(v, str) and v for v in values):
                raise UserError(f"{where}: give target names (autoaccel targets list)")
        elif not all(type(v) is int and 1 <= v <= 4096 for v in values):
            raise UserError(f"{where}: {values} must be integers from 1 to 4096")
        out[key] = values
    return out


def _declared_params(tech_name: str) -> dict[str, Param]:
    """Every parameter the technique can have for any workload (validation is per file)."""
    return {p.name: p for p in REGISTRY[tech_name].params(None)}


def _validate_spec(where: str, param: Param, spec: Any) -> Any:
    if param.choices is not None:
        values = spec if isinstance(spec, list) else [spec]
        bad = [v for v in values if v not in param.choices or type(v) is not type(param.default)]
        if bad or not values:
            raise UserError(
                f"{where}: {bad or 'empty list'} not allowed; choose from {list(param.choices)}"
            )
        return values
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, dict):
        extra = set(spec) - {"low", "high", "log"}
        if extra or "low" not in spec or "high" not in spec:
            raise UserError(f"{where}: give a list of values or {{low: N, high: M}}")
        if not isinstance(spec.get("log", False), bool):
            raise UserError(f"{where}: log must be true or false, not {spec['log']!r}")
        values = [spec["low"], spec["high"]]
    else:
        values = [spec]
    for v in values:
        ok_type = isinstance(v, int) if param.integer else isinstance(v, int | float)
        if isinstance(v, bool) or not ok_type or not (param.low <= v <= param.high):
            kind = "an integer" if param.integer else "a number"
            raise UserError(f"{where}: {v!r} must be {kind} in [{param.low}, {param.high}]")
    if isinstance(spec, dict) and spec["low"] > spec["high"]:
        raise UserError(f"{where}: low {spec['low']} is above high {spec['high']}; swap them")
    return spec if isinstance(spec, dict) else values


def suggest_recipe(trial, space: SearchSpace, workload) -> dict[str, Any]:
    """Ask Optuna for one recipe: the full flat dict, defaults included, inactive keys left out.

    Techniques are walked in registry order so conditions (`when`, `requires`) see the values
    they depend on.
    """
    recipe: dict[str, Any] = {}
    for tech in REGISTRY.values():
        if not tech.is_active(recipe):
            continue
        block = space.blocks.get(tech.name, {})
        for param in tech.params(workload):
            key = f"{tech.name}.{param.name}"
            if not param.is_active(recipe):
                continue
            spec = block.get(param.name)
            recipe[key] = param.default if spec is None else _suggest(trial, key, param, spec)
    return recipe


def _suggest(trial, key: str, param: Param, spec: Any) -> Any:
    if isinstance(spec, dict):
        if param.integer:
            return trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False))
        return trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
    allowed = _allowed(param, spec)
    if not allowed:  # e.g. the torch backend for an ONNX-only workload
        return param.default
    return trial.suggest_categorical(key, allowed)


def _allowed(param: Param, spec: list) -> list:
    """The listed values this workload can take (its model, its machine decide some)."""
    return [v for v in spec if param.choices is None or v in param.choices]


def check_choices(study, space: SearchSpace, workload) -> None:
    """Refuse to continue a study whose categorical choices differ from what this run would
    offer. The space file is part of a study's identity, but some choices also depend on the
    model (an edit its probe found broken) and the machine (bf16 only where the CPU has it);
    Optuna cannot mix two value sets of one parameter in a study (it raises mid-search)."""
    from optuna.distributions import CategoricalDistribution

    recorded: dict[str, tuple] = {}
    for trial in study.get_trials(deepcopy=False):
        for key, dist in trial.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                recorded[key] = tuple(dist.choices)
    for tech in REGISTRY.values():
        block = space.blocks.get(tech.name, {})
        for param in tech.params(workload):
            key, spec = f"{tech.name}.{param.name}", block.get(param.name)
            if key not in recorded or spec is None or isinstance(spec, dict):
                continue
            now = tuple(_allowed(param, spec))
            if now and now != recorded[key]:
                raise UserError(
                    f"study {study.study_name!r} searched {key} over {list(recorded[key])}; "
                    f"for this model on this machine it can take {list(now)} (the notes above "
                    "say what does not apply, and why); give a new --study name to start a "
                    "separate study"
                )
