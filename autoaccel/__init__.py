"""autoaccel: search combinations of compression, runtime and hardware choices for the fastest
model within an accuracy limit.

The Python API mirrors the CLI:

    >>> import autoaccel
    >>> result = autoaccel.search("digits-cnn", budget=12, runs_dir="runs")
    >>> result.recommendation["recommended"]["summary"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from autoaccel.search_run import SearchResult


def search(workload: str | None = None, **options: Any) -> SearchResult:
    """Run or continue a search (see `autoaccel search --help` for every option)."""
    from autoaccel.search_run import search as _search

    return _search(workload, **options)


__all__ = ["__version__", "search"]
