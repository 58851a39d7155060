"""Resumable training checkpoints: a longer run continues where a shorter one's stable phase
ended instead of starting over.

Under a warm-up–stable–decay schedule (`distillation.WSD`) a run is, up to the end of its
stable phase, a prefix of every longer run with the same settings. `train` saves its state
there (student weights, AdamW state, step, RNG state) and a longer run starts from the
furthest such state at or before its own stable end.

Stored as `<root>/<key>/<step>.pt`, one file per key: the furthest (a further one replaces
it; keeping shorter ones too would double the disk for a rare gain). Each file is written
aside and renamed, so a reader never sees half of one, and once all of them together pass
`max_bytes` the least recently used go first. A MiniLM 3-layer student's checkpoint is
~200 MB (weights plus AdamW's two moments; the word embeddings are most of it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 2 * 1024**3
"""All checkpoints of one cache together: about ten MiniLM students' worth."""


@dataclass(frozen=True)
class CheckpointStore:
    """Checkpoints of the runs that share `key`; `keyed` narrows it to runs sharing more."""

    root: Path
    key: str = ""
    max_bytes: int = DEFAULT_MAX_BYTES

    def keyed(self, identity: dict[str, Any]) -> CheckpointStore:
        """The store for runs that also share `identity` (what one layer knows of a run: the
        builder its teacher, the loss its settings, the loop its data and hyperparameters)."""
        blob = json.dumps([self.key, identity], sort_keys=True, default=str)
        return replace(self, key=hashlib.sha256(blob.encode()).hexdigest()[:24])

    @property
    def folder(self) -> Path:
        return self.root / self.key

    def steps(self) -> list[int]:
        """Steps of the checkpoints kept for this key, ascending."""
        if not self.folder.is_dir():
            return []
        return sorted(int(p.stem) for p in self.folder.glob("*.pt") if p.stem.isdigit())

    def latest(self, upto: int) -> tuple[int, dict[str, Any]] | None:
        """The furthest checkpoint at or before step `upto` as (step, state), or None."""
        import torch

        for step in reversed(self.steps()):
            if step > upto:
                continue
            path = self.folder / f"{step}.pt"
            try:
                state = torch.load(path, weights_only=True)
                os.utime(path)  # recently used: evicted last
            except FileNotFoundError:  # replaced or evicted by another worker meanwhile
                continue
            return step, state
        return None

    def save(self, step: int, state: dict[str, Any]) -> None:
        """Keep `state` as this key's checkpoint at `step`, unless a further one is kept."""
        import torch

        if any(kept >= step for kept in self.steps()):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.folder)
        os.close(handle)
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.folder / f"{step}.pt")
        finally:
            Path(tmp).unlink(missing_ok=True)
        for kept in self.steps():
            if kept < step:
                (self.folder / f"{kept}.pt").unlink(missing_ok=True)
        self._evict(keep=self.folder / f"{step}.pt")

    def _evict(self, keep: Path) -> None:
        """Delete the least recently used checkpoints (of any key) until all fit `max_bytes`;
        never `keep`, the one just written."""
        files = []
        for path in self.root.glob("*/*.pt"):
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            files.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size
