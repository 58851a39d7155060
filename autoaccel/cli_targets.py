"""The `autoaccel` hardware-target commands: `calibrate` and the `targets list|show` group.
`calibrate` is a plain function and `targets_app` a sub-app; `autoaccel.cli` registers both.

Heavy libraries are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def calibrate(
    runs_dir: Annotated[Path, typer.Option(help="Where the calibration is kept.")] = Path("runs"),
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads to calibrate (default: usable cores).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Fewer micro-benchmarks (a smoke run).")] = False,
    power_w: Annotated[
        float | None,
        typer.Option(help="This machine's power while running, in W (prices energy).", min=0.001),
    ] = None,
    price_per_hour: Annotated[
        float | None,
        typer.Option(help="What this machine costs per hour, in USD (prices $).", min=1e-6),
    ] = None,
    prices_only: Annotated[
        bool, typer.Option(help="Only store --power-w / --price-per-hour; time nothing.")
    ] = False,
) -> None:
    """Fit the cpu-local cost model to micro-benchmarks timed on this machine (the full suite;
    a search does a shorter one on first use), and keep the power and price you give: every
    measured point's energy and $ then use them instead of the per-core assumptions."""
    import socket

    from autoaccel.config import RunPaths
    from autoaccel.errors import UserError
    from autoaccel.targets.calibrate import calibrate as run_calibration
    from autoaccel.targets.calibrate import calibration_path
    from autoaccel.targets.calibration_file import store_user_figures

    paths = RunPaths(runs_dir).prepare()
    figures = {"power_w": power_w, "price_per_hour_usd": price_per_hour}
    figures = {k: v for k, v in figures.items() if v is not None}
    if prices_only and not figures:
        raise UserError("--prices-only needs --power-w W and/or --price-per-hour USD")
    if figures:
        stored = store_user_figures(paths.root, figures, socket.gethostname())
        for key, fig in stored.items():
            typer.echo(f"cpu-local {key} {fig['value']:g}: {fig['source']}")
    if prices_only:
        return
    typer.echo("timing micro-benchmarks (keep the machine otherwise idle) ...")
    fitted = run_calibration(paths.root, threads=threads, quick=quick)
    shown = ", ".join(
        f"{k} {v:.3g}" for k, v in fitted.items() if isinstance(v, float) and "eta" in k
    )
    typer.echo(
        f"cpu-local, {fitted.get('threads')} threads: {shown}; memory "
        f"{fitted.get('memory_bandwidth_gbps', 0):.1f} GB/s; fit error (median) "
        f"{fitted.get('fit_mdape', float('nan')):.1f} %, load average "
        f"{fitted.get('load_avg_1min', 0):g} -> {calibration_path(paths.root)}"
    )


targets_app = typer.Typer(
    help="Hardware targets: the profiles in hardware_profiles/.", no_args_is_help=True
)


@targets_app.command("list")
def targets_list() -> None:
    """One line per target: kind, main peak rates, memory bandwidth, power, how it is timed."""
    from rich.console import Console
    from rich.table import Column, Table

    from autoaccel.targets import load_targets

    table = Table("kind", "peak (dense, TOPS)", "memory GB/s", "power W", "latency")
    table.columns.insert(0, Column("target", no_wrap=True))
    for name, target in load_targets(None).items():
        how = "measured here" if target.measured else "estimated (cost model)"
        prof = target.profile
        if prof is None:  # a cuda-local that no profile describes
            table.add_row(name, "-", "-", "-", "-", how)
            continue
        peaks = ", ".join(f"{p} {f.value:.4g}" for p, f in prof.peak_tops.items())
        table.add_row(
            name,
            prof.kind,
            peaks,
            f"{prof.memory.bandwidth_gbps.value:g}",
            f"{prof.power_w.value:g}",
            how,
        )
    Console().print(table)


@targets_app.command("show")
def targets_show(name: Annotated[str, typer.Argument(help="A target from `targets list`.")]):
    """Every figure of one profile with its source."""
    import yaml

    from autoaccel.errors import UserError
    from autoaccel.targets.profile import load_profiles

    profiles = load_profiles()
    if name == "cpu-local":  # the template, as derived on this machine
        from autoaccel.targets.local_cpu import this_machine

        profiles[name] = this_machine()
    if name not in profiles:
        raise UserError(
            f"targets show {name}: no such target; choose from {', '.join(profiles)} "
            "(autoaccel targets list)"
        )
    prof = profiles[name]
    typer.echo(yaml.safe_dump(prof.model_dump(exclude_none=True), sort_keys=False, width=99))
