"""Empty stores kept as templates, so a new runs folder does not rebuild MLflow's schema.

Why: a new MLflow SQLite store takes about 1,700 statements over dozens of migrations (3-4 s
on 2 cores) and every new runs folder paid them; a copy of an empty store that one of those
builds left behind takes milliseconds. A template is named by the library and its version
(`mlflow-3.1.0.db`), lives in the user's cache (`$AUTOACCEL_STORE_TEMPLATES`, else
`$XDG_CACHE_HOME/autoaccel/store-templates`, else `~/.cache/...`), holds tables only (no
experiment, no artifact location) and is checked for the head revision after every copy.
Where the cache cannot be written, stores are simply built as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def template_dir() -> Path:
    """Where templates live (created on first save)."""
    if folder := os.environ.get("AUTOACCEL_STORE_TEMPLATES"):
        return Path(folder)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "autoaccel" / "store-templates"


def template_path(kind: str, version: str) -> Path:
    return template_dir() / f"{kind}-{version}.db"


def copy_template(kind: str, version: str, work: Path) -> bool:
    """Copy the template for this library version to `work`; False when there is none."""
    source = template_path(kind, version)
    if not source.is_file():
        return False
    try:
        shutil.copyfile(source, work)
    except OSError:
        with contextlib.suppress(OSError):
            work.unlink()
        return False
    return True


def save_template(kind: str, version: str, built: Path) -> None:
    """Keep a copy of a freshly built empty store (atomic: a reader never sees half)."""
    target = template_path(kind, version)
    if target.is_file():
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, partial)
        os.replace(partial, target)
    except OSError:  # a read-only home, a full disk: templates are only a shortcut
        with contextlib.suppress(OSError):
            partial.unlink()
