"""The search configuration, validated once at the edge (CLI or Python API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoaccel.errors import UserError


class SearchConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workload: str | None = Field(None, description="built-in name or package.module:factory")
    model: Path | None = None
    data: Path | None = None
    space: str = "default"
    budget: int = Field(20, ge=1, le=100_000)
    max_accuracy_drop: float = Field(0.01, ge=0.0, le=1.0)
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int | None = 0
    study: str | None = None
    runs_dir: Path = Path("runs")
    storage: str | None = None
    tracking_uri: str | None = None
    measure_seconds: float = Field(1.5, gt=0.0, le=120.0)
    prefer: Literal["latency", "cost", "energy"] = "latency"
    scenario: Literal["single-stream", "offline", "server"] = "single-stream"
    latency_bound_ms: float = Field(100.0, gt=0.0, le=1e6)
    arrival_rate: float | None = Field(None, gt=0.0, le=1e7)
    targets: list[str] | None = Field(
        None, description="hardware profiles to search over (default: the space's, else all)"
    )

    @classmethod
    def build(cls, **values) -> SearchConfig:
        """Validate, turning pydantic's report into one line that names the option."""
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
            raise UserError(f"--{field} {err.get('input')!r}: {err['msg']}") from None


class RunPaths:
    """Where every output of a search lives; `--runs-dir` moves all of it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def prepare(self) -> RunPaths:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.cache.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"--runs-dir {self.root}: cannot create it ({exc.strerror}); "
                "choose a folder you can write to"
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise UserError(
                f"--runs-dir {self.root}: not writable; choose a folder you can write to"
            )
        return self

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    def storage_url(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def study_dir(self, study: str) -> Path:
        return self.root / study
