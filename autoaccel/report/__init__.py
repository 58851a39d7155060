"""The hardware-selection report: `report.md` and a self-contained `report.html`.

Built from the Optuna storage alone (`facts.gather`), laid out once as plain text
(`content.layout`) and rendered twice (`markdown`, `html`), with the charts of `charts`.

Example:
    >>> study = optuna.load_study(study_name="seed-mlp-quick", storage="sqlite:///runs/optuna.db")
    >>> md, page = write_report(study, Path("runs/seed-mlp-quick"), prefer="cost")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from autoaccel.report import charts, html, markdown
from autoaccel.report.content import layout
from autoaccel.report.facts import Facts, gather, read_fidelity

PLOTS_DIR = "report-plots"


def write_report(
    study: optuna.Study,
    out_dir: Path,
    *,
    workload_info: dict[str, str] | None = None,
    limit: float | None = None,
    prefer: str = "latency",
    fidelity: dict[str, Any] | Path | None = None,
) -> tuple[Path, Path]:
    """Write `report.md` (charts as PNG files under `report-plots/`) and `report.html` (charts
    embedded) into `out_dir`; return both paths.

    `workload_info` ({name, metric, metric_description}) and `limit` (largest allowed quality
    drop) default to what the study recorded; `prefer` (latency, cost or energy) is the
    recommendation policy's objective (`autoaccel.frontier`); `fidelity` is the cost-model
    fidelity result or the path of its JSON (default: `benchmarks/results/
    costmodel_fidelity.json` when present; the report says when it is missing).
    """
    facts = gather(
        study, workload_info=workload_info, limit=limit, prefer=prefer, fidelity=fidelity
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = charts.render(facts)
    doc = layout(facts, {key: caption for key, (caption, _) in rendered.items()})
    plots = out_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    for old in plots.glob("*.png"):  # charts of targets a rerun no longer has
        old.unlink()
    for key, (_, png) in rendered.items():
        (plots / f"{key}.png").write_bytes(png)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    images = {key: f"{PLOTS_DIR}/{key}.png" for key in rendered}
    _write(md_path, markdown.render(doc, images))
    _write(html_path, html.render(doc, {key: png for key, (_, png) in rendered.items()}))
    return md_path, html_path


def _write(path: Path, text: str) -> None:
    """Write then rename: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = ["Facts", "gather", "read_fidelity", "write_report"]
