"""Why each operator of a recipe takes the time it does: per OpenVINO layer type its time,
work, floor (`roofline_ceilings`) and excess over it, the bound in words, and the latency
split into the compute floor, the matrix layers above it, the other layers and the runtime's
cost outside layers.
"""

from __future__ import annotations

from typing import Any

from roofline_ceilings import ceilings
from roofline_layers import attribute_fused_flops

AT_CEILING = 0.85
"""A layer type at this share of its floor or more runs at that floor."""


def onchip_rate(layers: list[dict[str, Any]], ceiling: dict[str, Any]) -> float | None:
    """GB/s for element-wise data on chip: the micro-benchmark's, or the best a non-matrix
    layer of the model reached (over 100 KB) when that is higher, so no floor sits above a
    time this machine has shown; recorded in `ceiling` as `onchip_gbps_used`."""
    seen = [
        layer["bytes"] / (layer["us"] * 1e-6) / 1e9
        for layer in layers
        if not layer["dims"] and not layer["gflop"] and layer["bytes"] > 1e5 and layer["us"] > 0
    ]
    rates = [r for r in (ceiling.get("onchip_gbps"), max(seen, default=None)) if r]
    ceiling["onchip_gbps_used"] = max(rates) if rates else None
    return ceiling["onchip_gbps_used"]


def explain(
    layers: list[dict[str, Any]], ceiling: dict[str, Any], peaks: dict[str, float]
) -> list[dict[str, Any]]:
    """Per layer type and precision: time, work, its floor (matrix FLOPs at the rate their
    products reach back to back with the model's weights, never above alone; fused matrix
    work at `peaks`, calibrated GFLOP/s per precision; other bytes at the on-chip rate), the
    excess over it, and the bound in words."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    gbps = onchip_rate(layers, ceiling)
    for layer in layers:
        row = rows.setdefault(
            (layer["type"], layer["precision"]),
            {
                "op_type": layer["type"],
                "precision": layer["precision"],
                "layers": 0,
                "ms": 0.0,
                "gflop": 0.0,
                "mb": 0.0,
                "floor_ms": 0.0,
                "shapes": set(),
                "matrix_floor_ms": 0.0,
                "sequence_floor_ms": 0.0,
            },  # fmt: skip
        )
        row["layers"] += 1
        row["ms"] += layer["us"] / 1e3
        row["gflop"] += layer["gflop"]
        row["mb"] += layer["bytes"] / 1e6
        rate = None
        if layer["dims"]:
            shape = "x".join(map(str, layer["dims"]))
            row["shapes"].add(shape)
            rate = ceiling["product_gflops"].get(f"{layer['precision']} {shape}")
        if not layer["dims"] and layer["gflop"]:
            rate = peaks.get(layer["precision"])
        if rate and layer["gflop"]:
            row["matrix_floor_ms"] += layer["gflop"] / rate * 1e3
            seq = ceiling.get("sequence_gflops", {}).get(layer["name"], rate)
            row["sequence_floor_ms"] += layer["gflop"] / min(seq, rate) * 1e3
        elif gbps and not layer["gflop"]:
            row["floor_ms"] += layer["bytes"] / 1e9 / gbps * 1e3
    out = []
    for row in rows.values():
        row["floor_ms"] += row["sequence_floor_ms"]
        row["shapes"] = sorted(row["shapes"])
        row["excess_ms"] = max(0.0, row["ms"] - row["floor_ms"])
        row["reason"] = _reason(row, gbps)
        out.append(row)
    return sorted(out, key=lambda r: -r["ms"])


def _reason(row: dict[str, Any], gbps: float | None) -> str:
    per_layer = 1e3 * row["ms"] / row["layers"]
    share = row["matrix_floor_ms"] / row["ms"] if row["ms"] else 0.0
    where = "at" if share >= AT_CEILING else f"{100 * share:.0f} % of"
    if row["matrix_floor_ms"] and row["shapes"]:
        shapes = ", ".join(row["shapes"][:4]) + (" ..." if len(row["shapes"]) > 4 else "")
        alone = row["gflop"] / row["matrix_floor_ms"] * 1e3
        back = row["gflop"] / row["sequence_floor_ms"] * 1e3
        share = row["sequence_floor_ms"] / row["ms"] if row["ms"] else 0.0
        where = "at" if share >= AT_CEILING else f"{100 * share:.0f} % of"
        return (
            f"{row['precision']} products {shapes}: {where} the {back:.0f} GFLOP/s they reach "
            f"back to back with the model's weights and nothing else ({alone:.0f} alone, "
            "weights hot in cache); the rest is the model's post-ops and layers between"
        )
    if row["matrix_floor_ms"]:
        return (
            f"fused matrix work with its element-wise steps (attention): {where} the "
            f"calibrated {row['precision']} peak of large products"
        )
    if row["gflop"]:
        return f"matrix work in {row['precision']}, no ceiling measured for it"
    kb = 1e3 * row["mb"] / row["layers"]
    if not gbps:
        return f"no matrix work: {per_layer:.1f} us per layer for {kb:.0f} KB"
    achieved = row["mb"] / 1e3 / (row["ms"] * 1e-3) if row["ms"] else 0.0
    bound = "bandwidth" if achieved >= AT_CEILING * gbps else "per-layer cost"
    return (
        f"no matrix work (0 ms in the compute floor); {per_layer:.1f} us per layer for "
        f"{kb:.0f} KB = {achieved:.0f} GB/s of the {gbps:.0f} GB/s on-chip rate: {bound}"
    )


def explain_ov(ovp: dict[str, Any], graph, session, peaks: dict[str, float]) -> dict[str, Any]:
    """The profiled layers per type against measured ceilings (`roofline_layers`)."""
    layers = ovp.pop("layers")
    unattributed = attribute_fused_flops(layers, graph)
    ceiling = ceilings(layers, session)
    return {
        **ovp,
        "by_type": explain(layers, ceiling, peaks),
        "ceilings": ceiling,
        "unattributed_matrix_gflop": unattributed,
    }


def ov_rows_and_gap(ovp, ms: float, floor_cal: float, executed, derived, cal):
    """The OpenVINO layer rows, and the latency split into what bounds each part: the compute
    floor, matrix layers' own-shape ceilings above it, their excess over those, the other
    layers, and the runtime's cost outside layers."""
    by_type = ovp["by_type"]
    layer_ms = sum(r["ms"] for r in by_type)
    matrix = [r for r in by_type if r["gflop"]]
    m_ms, m_gflop = sum(r["ms"] for r in matrix), sum(r["gflop"] for r in matrix)
    m_floor = sum(r["matrix_floor_ms"] for r in matrix)
    other_floor = sum(r["floor_ms"] for r in by_type if not r["gflop"])
    m_seq = sum(r["sequence_floor_ms"] for r in matrix)
    gap = {
        "compute_floor_calibrated": floor_cal,
        "matrix_shape_ceilings_above_floor": m_floor - floor_cal,
        "matrix_sequence_above_alone": m_seq - m_floor,
        "matrix_above_sequence": m_ms - m_seq,
        "other_layers_bandwidth_floor": other_floor,
        "other_layers_above_bandwidth_floor": layer_ms - m_ms - other_floor,
        "outside_layers": ms - layer_ms,
    }
    rate = m_gflop / (m_ms * 1e-3) if m_ms else None
    rows = [
        [
            "OpenVINO profile: layers / profiled run",
            f"{layer_ms:.3f} / {ovp['profiled_run_ms']:.3f} ms",
            f"{ms - layer_ms:.3f} ms of the protocol latency outside layers (the runtime's own "
            "cost per inference)",
        ]
    ]
    if rate is not None:
        shares = ", ".join(
            f"{100 * rate / derived[p]:.0f} % derived"
            + (f" / {100 * rate / cal[p]:.0f} % calibrated" if p in cal else "")
            + f" {p}"
            for p in executed
        )
        rows.append(
            [
                "  matrix layers (FLOPs from their shapes)",
                f"{m_ms:.3f} ms, {m_gflop:.3f} GFLOP",
                f"{rate:.1f} GFLOP/s = {shares}",
            ]
        )
    rows += [
        [
            f"  {r['op_type']} ({r['precision']}, {r['layers']} layers)",
            f"{r['ms']:.3f} ms"
            + (f", {r['gflop']:.3f} GFLOP" if r["gflop"] else f", {r['mb']:.2f} MB")
            + f"; floor {r['floor_ms']:.3f}",
            r["reason"],
        ]
        for r in by_type
        if r["ms"] >= 0.005
    ]
    words = {
        "compute_floor_calibrated": "compute floor (all matrix work at the calibrated peak)",
        "matrix_shape_ceilings_above_floor": "+ matrix products alone above it (their shapes)",
        "matrix_sequence_above_alone": "+ back to back with the model's weights (cache)",
        "matrix_above_sequence": "+ matrix layers in the model above that (post-ops, fusions)",
        "other_layers_bandwidth_floor": "+ other layers at the on-chip rate",
        "other_layers_above_bandwidth_floor": "+ other layers above it (per-layer cost)",
        "outside_layers": "+ outside layers (runtime per inference)",
    }
    rows += [
        [f"latency, part: {words[k]}", f"{v:.3f} ms", f"{100 * v / ms:.0f} % of {ms:.3f} ms"]
        for k, v in gap.items()
    ]
    one = ovp["ceilings"].get("one_layer_run_ms")
    if one is not None:
        rows[-1][2] += f"; a one-layer model with these settings runs in {one:.3f} ms"
    rows[-1][2] += "; layer times are medians of profiled runs, the latency is not profiled"
    return {"gflop": m_gflop, "ms": m_ms, "gflops": rate}, gap, rows
