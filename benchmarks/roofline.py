"""How far the recommended recipe is from this CPU's physical limit: its FLOPs (graph
analysis), its latency measured by the protocol, the achieved GFLOP/s, and that as a share of
this CPU's peak per precision (fp32, bf16, int8), both derived and calibrated.

    .venv/bin/python benchmarks/roofline.py [--runs-dir /tmp/vsp-runs] [--study NAME]
        [--calibration-dir /tmp/roofline-runs] [--recalibrate] [--seconds 3]

The recipe is the study's recommendation (<runs-dir>/<study>/recommendation.json); the
workload comes from the study's `workload_spec`. The default --runs-dir is the first of
/tmp/vsp-runs, /tmp/ovh-minilm and the repository's runs/ (`make demo`) that holds a finished
study. The candidate is rebuilt with the
study's own cache (every step cached: nothing is retrained), analysed with
`autoaccel.targets.graph.analyze` at the latency inputs' shapes (batch 1), and timed with
`open_runner` + `measure` (warm-up, median of the timed runs).

Peaks, for the recipe's intra-op thread count: derived = the peak_tops of cpu-local as derived
on this machine (cores x clock x FLOP/cycle, `autoaccel.targets.local_cpu`) x threads / cores;
calibrated = the best rate measured here: ONNX Runtime fp32 and int8 from `autoaccel
calibrate`'s micro-benchmarks (run into --calibration-dir when that thread count is missing;
never into the study's folder), and OpenVINO f32 / bf16 on large MatMuls (single and a chain
of 8, timed here). The cores boost above the base clock, so calibrated peaks exceed derived ones.
Matrix work is counted in the precision it executes in: the graph's (ONNX Runtime), fp32
(torch), or OpenVINO's matrix layers' exec precision (int8 QDQ weights that OpenVINO
decompresses run in its inference precision). Compute floor: matrix FLOPs at the peak;
memory floor: the weights once at DRAM bandwidth. Per node type: ORT's profiler (a second
session with the same options; FLOPs from its optimized graph when that can be analysed) or
OpenVINO's performance counters (time per executed layer type and precision).
Writes benchmarks/results/roofline.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import write  # benchmarks/ is run as a folder of scripts
from roofline_explain import explain_ov, ov_rows_and_gap
from roofline_layers import ov_profiler

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = (Path("/tmp/vsp-runs"), Path("/tmp/ovh-minilm"), REPO / "runs")
"""Where a study is looked for without --runs-dir: the minilm-search study, the minilm study
benchmarks/overhead.py runs, then the repository's runs/ (`make demo` writes minilm-quick)."""


def find_study(runs_dirs: list[Path], study: str | None) -> tuple[Path, str, dict[str, Any]]:
    """(runs dir, study name, recommendation) of the first finished study found."""
    for runs in runs_dirs:
        recs = sorted(runs.glob(f"{study or '*'}/recommendation.json"))
        recs = [r for r in recs if json.loads(r.read_text()).get("recommended")]
        if len(recs) > 1 and study is None:
            raise SystemExit(
                f"{runs}: several studies ({[r.parent.name for r in recs]}); give --study"
            )
        if recs:
            return runs, recs[0].parent.name, json.loads(recs[0].read_text())
    raise SystemExit(f"no finished study with a recommendation in {[str(r) for r in runs_dirs]}")


def workload_spec(runs: Path, study: str) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.load_study(study_name=study, storage=f"sqlite:///{runs / 'optuna.db'}")
    return st.user_attrs["workload_spec"]


# ------------------------------------------------------------------ peaks


def peaks(calib_dir: Path, threads: int, recalibrate: bool) -> dict[str, Any]:
    """Peaks per precision in GFLOP/s (int8: GOP/s) for `threads` threads.

    derived: the profile's peak_tops (all cores, base clock) x threads / cores.
    calibrated: the best rate measured here with that many threads: ONNX Runtime fp32 and
    int8 from the calibration micro-benchmarks (`autoaccel.targets.calibrate`, stored in
    <calib_dir>), and OpenVINO f32 / bf16 on the same fp32 MatMul graphs (timed here)."""
    import numpy as np
    import onnx

    from autoaccel.machine import usable_cores
    from autoaccel.targets.calibrate import (
        calibrate,
        calibrated_threads,
        calibration_path,
        micro_suite,
    )
    from autoaccel.targets.calibration_microbenchmarks import fp32_matmul_builder
    from autoaccel.targets.graph import analyze
    from autoaccel.targets.local_cpu import this_machine

    profile = this_machine()  # derived from this machine (the YAML is only a template)
    cores = usable_cores()
    derived = {
        p: f.value * 1e3 * min(threads, cores) / cores for p, f in profile.peak_tops.items()
    }
    if recalibrate or threads not in calibrated_threads(calib_dir):
        t0 = time.perf_counter()
        calibrate(calib_dir, threads=threads)
        print(f"calibrated {threads} thread(s) in {time.perf_counter() - t0:.0f} s", flush=True)
    entry = json.loads(calibration_path(calib_dir).read_text())["by_threads"][str(threads)]
    rng = np.random.default_rng(0)
    flops: dict[str, tuple[int, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, micro in enumerate(micro_suite()):  # FLOPs as calibrate analyses them
            model, feeds = micro.build(rng)
            path = Path(tmp) / f"m{i}.onnx"
            onnx.save(model, str(path))
            g = analyze(path, {k: v.shape for k, v in feeds.items()})
            matrix = [n for n in g.nodes if n.macs]
            flops[micro.name] = (g.flops, matrix[0].precision if matrix else "vector")
        openvino = ov_micro(Path(tmp), threads, rng, fp32_matmul_builder)
    samples = []
    for s in entry["samples"]:
        f, precision = flops.get(s["name"], (0, "?"))
        gflops = f / (s["measured_ms"] * 1e-3) / 1e9 if f else 0.0
        samples.append({**s, "gflop": f / 1e9, "precision": precision, "gflops": gflops})
    calibrated: dict[str, dict[str, Any]] = {}
    for s in samples:
        if s["kind"] in ("compute", "int8") and s["precision"] in ("fp32", "int8"):
            best = calibrated.get(s["precision"])
            if best is None or s["gflops"] > best["gflops"]:
                calibrated[s["precision"]] = {
                    "gflops": s["gflops"],
                    "micro_benchmark": f"ONNX Runtime {s['name']}",
                }
    for s in openvino:
        best = calibrated.get(s["precision"])
        if best is None or s["gflops"] > best["gflops"]:
            calibrated[s["precision"]] = {
                "gflops": s["gflops"],
                "micro_benchmark": f"OpenVINO {s['name']}",
            }
    return {
        "threads": threads,
        "cores": cores,
        "derived_gflops": derived,
        "derived_source": {p: f.source.strip() for p, f in profile.peak_tops.items()},
        "calibrated_best_gflops": calibrated,
        "fitted_rates": {k: v for k, v in entry.items() if "eta" in k or k.endswith("_us")},
        "calibration": {k: entry.get(k) for k in ("when", "cpu", "load_avg_1min", "fit_mdape")},
        "micro_benchmarks": samples,
        "openvino_micro_benchmarks": openvino,
        "dram_gbps": profile.memory.bandwidth_gbps.value,
        "on_chip_mb": profile.memory.on_chip_mb.value if profile.memory.on_chip_mb else 0.0,
    }


def _chain(rng, count: int, m: int = 128, k: int = 1024):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    names = ["x", *(f"t{i}" for i in range(1, count)), "y"]
    weights = [
        numpy_helper.from_array(rng.standard_normal((k, k), dtype=np.float32) * 0.03, f"w{i}")
        for i in range(count)
    ]
    nodes = [
        helper.make_node("MatMul", [a, f"w{i}"], [b])
        for i, (a, b) in enumerate(zip(names, names[1:], strict=False))
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, k])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, {"x": rng.standard_normal((m, k), dtype=np.float32)}


def ov_micro(tmp: Path, threads: int, rng, matmul) -> list[dict[str, Any]]:
    """Large fp32 MatMuls compiled by OpenVINO in f32 and in bf16 inference precision, timed
    by the protocol: the rates OpenVINO reaches here (the calibration has ORT only)."""
    import onnx

    from autoaccel.evaluate.measure import MeasureConfig, measure
    from autoaccel.evaluate.runners import _ov_core, ov_config
    from autoaccel.machine import runs_bf16

    core, out = _ov_core(), []
    graphs = [
        (f"matmul {m}x{k}x{n}", m, k, n, 1, matmul(m, k, n)(rng))
        for m, k, n in ((128, 384, 1536), (128, 1024, 1024), (512, 1024, 1024))
    ]
    # a chain of 8 MatMuls 128x1024x1024: the input / output conversions to the inference
    # precision are paid once, as in a model whose matrix layers follow one another
    graphs.append(("8 chained matmuls 128x1024x1024", 128, 1024, 1024, 8, _chain(rng, 8)))
    for name, m, k, n, count, (model, feeds) in graphs:
        path = tmp / f"ov{len(out)}.onnx"
        onnx.save(model, str(path))
        # bf16 only where the CPU computes it: elsewhere OpenVINO would run f32 under its name
        for precision, ov_name in (("fp32", "f32"), ("bf16", "bf16"))[: 2 if runs_bf16() else 1]:
            session = {"ov_precision": ov_name, "intra_op_threads": threads}
            compiled = core.compile_model(core.read_model(str(path)), "CPU", ov_config(session))
            request = compiled.create_infer_request()
            lat = measure(lambda r=request, f=feeds: r.infer(f), MeasureConfig().scaled(0.6))
            gflops = 2 * m * k * n * count / (lat.median_ms * 1e-3) / 1e9
            out.append(
                {
                    "name": f"{name} {ov_name}",
                    "precision": precision,
                    "measured_ms": lat.median_ms,
                    "gflops": gflops,
                }
            )
    return out


def per_precision(graph) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"gflop": 0.0, "gmac": 0.0, "mb": 0.0})
    for n in graph.nodes:
        key = n.precision if n.macs else f"{n.precision} (non-matrix)"
        out[key]["gflop"] += n.flops / 1e9
        out[key]["gmac"] += n.macs / 1e9
        out[key]["mb"] += n.bytes / 1e6
    return dict(out)


def ort_profile(candidate, inputs, runs: int) -> tuple[dict[str, Any], Path]:
    """Per-node kernel time (ms per inference) from ORT's profiler, and the optimized model
    that session ran (saved by it), for a session opened like `open_runner` opens it."""
    import onnxruntime as ort

    from autoaccel.evaluate.runners import ort_session_options

    tmp = Path(tempfile.mkdtemp(prefix="roofline-"))
    opts = ort_session_options(candidate)
    opts.optimized_model_filepath = str(tmp / "optimized.onnx")
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / "profile")
    sess = ort.InferenceSession(
        str(candidate.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    wanted = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in inputs.items() if k in wanted}
    for _ in range(10):
        sess.run(None, feeds)
    t0 = time.perf_counter()
    for _ in range(runs):
        sess.run(None, feeds)
    profiled_ms = (time.perf_counter() - t0) * 1e3 / runs
    events = json.loads(Path(sess.end_profiling()).read_text())
    nodes: dict[str, dict[str, Any]] = {}
    model_runs = [e["dur"] for e in events if e.get("name") == "model_run"]
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            entry = nodes.setdefault(name, {"op": e["args"].get("op_name"), "us": 0.0, "n": 0})
            entry["us"] += e["dur"]
            entry["n"] += 1
    total_runs = len(model_runs)  # warm-up runs included: divide by the runs each node ran
    for entry in nodes.values():
        entry["ms_per_run"] = entry["us"] / 1e3 / entry["n"]  # each node runs once a run
    return {
        "nodes": nodes,
        "profiled_run_ms": profiled_ms,
        "model_run_ms_median": sorted(model_runs)[len(model_runs) // 2] / 1e3
        if model_runs
        else None,
        "model_runs": total_runs,
    }, tmp / "optimized.onnx"


def per_op_type(graph, prof: dict[str, Any], peak_by_precision: dict[str, float]):
    """Per op type of the optimized graph: FLOPs, kernel time, GFLOP/s, share of peak."""
    by_name = {n.name: n for n in graph.nodes}
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"gflop": 0.0, "ms": 0.0, "nodes": 0, "timed": 0, "mb": 0.0}
    )
    for name, entry in prof["nodes"].items():
        node = by_name.get(name)
        precision = node.precision if node is not None else "?"
        key = (entry["op"], precision if node is not None and node.macs else f"{precision} vec")
        row = rows[key]
        row["ms"] += entry["ms_per_run"]
        row["timed"] += 1
        if node is not None:
            row["gflop"] += node.flops / 1e9
            row["mb"] += node.bytes / 1e6
            row["nodes"] += 1
    out = []
    for (op, precision), row in rows.items():
        rate = row["gflop"] / (row["ms"] * 1e-3) if row["ms"] else 0.0
        peak = peak_by_precision.get(precision)
        out.append(
            {
                "op_type": op,
                "precision": precision,
                **row,
                "gflops": rate,
                "share_of_peak": rate / peak if peak and row["gflop"] else None,
            }
        )
    return sorted(out, key=lambda r: -r["ms"])


def executed_precisions(graph, backend: str, ovp: dict[str, Any] | None) -> dict[str, float]:
    """GFLOP of matrix work per precision it executes in: the graph's own precision (ONNX
    Runtime), fp32 (torch), or for OpenVINO the precision of its matrix layers when they all
    run in one (int8, or bf16 / f32 inference precision for weights it decompresses)."""
    out: dict[str, float] = defaultdict(float)
    ov_precisions = set()
    if ovp is not None:
        ov_precisions = {r["precision"] for r in ovp["by_type"] if r["gflop"] and r["ms"] > 0}
    for n in graph.nodes:
        if not n.macs:
            continue
        if backend.startswith("torch"):
            precision = "fp32"
        elif len(ov_precisions) == 1:
            precision = next(iter(ov_precisions))
        else:
            precision = n.precision
        out[precision] += n.flops / 1e9
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--study", default=None)
    parser.add_argument("--calibration-dir", type=Path, default=Path("/tmp/roofline-runs"))
    parser.add_argument("--recalibrate", action="store_true")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget")
    parser.add_argument("--profile-runs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args()
    start, load = time.perf_counter(), os.getloadavg()[0]

    from autoaccel.builder import build_candidate
    from autoaccel.evaluate.measure import MeasureConfig, measure
    from autoaccel.evaluate.runners import open_runner
    from autoaccel.targets.graph import analyze
    from autoaccel.workloads import load_workload

    runs, study, rec = find_study(
        [args.runs_dir] if args.runs_dir else list(DEFAULT_RUNS), args.study
    )
    best = rec["recommended"]
    recipe = best["recipe"]
    spec = workload_spec(runs, study)
    print(f"study {study} in {runs}: trial {best['trial']}: {best['description']}", flush=True)
    workload = load_workload(
        spec["workload"],
        runs / "cache",
        None if spec.get("model") is None else Path(spec["model"]),
        None if spec.get("data") is None else Path(spec["data"]),
    )
    candidate = build_candidate(recipe, workload, runs / "cache")
    if candidate.onnx_path is None:
        raise SystemExit(f"backend {candidate.backend}: no ONNX graph to analyse")
    inputs = workload.latency_inputs(1)
    shapes = {k: v.shape for k, v in inputs.items()}
    graph = analyze(candidate.onnx_path, shapes)
    threads = int(recipe.get("runtime.intra_op_threads", 2))
    # timed and profiled first, before the micro-benchmarks, and in interleaved rounds: on a
    # shared 2-core machine one figure moved 0.93-1.6 ms from run to run, the layer times
    # with it; rounds side by side keep the two comparable
    predict = open_runner(candidate, workload.input_names)
    layer_times = ov_profiler(candidate, inputs) if candidate.backend == "openvino" else None
    rounds, per_round = [], []
    for _ in range(args.rounds):
        per_round.append(
            measure(lambda: predict(inputs), MeasureConfig().scaled(args.seconds / args.rounds))
        )
        if layer_times is not None:
            t0 = time.perf_counter()
            layer_times.profile(args.profile_runs // args.rounds)
            rounds.append((time.perf_counter() - t0) * 1e3 / (args.profile_runs // args.rounds))
    lat = sorted(per_round, key=lambda r: r.median_ms)[len(per_round) // 2]  # the median round
    ops, prof, ovp = [], None, None
    if layer_times is not None:
        ovp = {"profiled_run_ms": sorted(rounds)[len(rounds) // 2], "layers": layer_times.layers()}
    elif candidate.backend == "onnxruntime":
        prof, optimized = ort_profile(candidate, inputs, args.profile_runs)
    predict = layer_times = None  # their runtimes' threads gone before the micro-benchmarks
    pk = peaks(args.calibration_dir, threads, args.recalibrate)
    ms = lat.median_ms
    gflop = graph.flops / 1e9
    achieved = gflop / (ms * 1e-3)
    derived = pk["derived_gflops"]
    cal = {p: v["gflops"] for p, v in pk["calibrated_best_gflops"].items()}

    if ovp is not None:
        ovp = explain_ov(ovp, graph, candidate.session, cal)
    elif prof is not None:
        opt_graph, prof["graph_analysed"] = graph, "model file (node names may differ)"
        try:  # the graph ORT runs (its nodes are the ones profiled)
            opt_graph = analyze(optimized, shapes)
            prof["graph_analysed"] = "ORT's optimized graph"
        except Exception as exc:  # e.g. NCHWc layout ops at graph level all
            prof["graph_analysed"] += f"; the optimized graph could not be analysed ({exc!r})"
        ops = per_op_type(opt_graph, prof, derived)
        for row in ops:
            c = cal.get(row["precision"])
            row["share_of_calibrated"] = row["gflops"] / c if c and row["gflop"] else None
    executed = executed_precisions(graph, candidate.backend, ovp)
    matrix_gflop = sum(executed.values())
    floor_derived = sum(g / derived[p] for p, g in executed.items()) * 1e3
    floor_cal = sum(g / cal.get(p, derived[p]) for p, g in executed.items()) * 1e3
    weight_mb, moved_mb = graph.weight_bytes / 1e6, sum(n.bytes for n in graph.nodes) / 1e6
    floor_mem = weight_mb / 1e3 / pk["dram_gbps"] * 1e3  # weights once from DRAM

    rows = [
        ["recipe", best["description"], f"trial {best['trial']} of study {study}"],
        ["workload / inputs", f"{workload.name}, {shapes}", f"{threads} intra-op thread(s)"],
        ["GFLOP per inference", f"{gflop:.3f}", f"GMAC {graph.macs / 1e9:.3f}"],
    ]
    for p, g in sorted(executed.items()):
        rows.append([f"  matrix work executed in {p}", f"{g:.3f} GFLOP", ""])
    rows.append(
        [
            "  other ops",
            f"{gflop - matrix_gflop:.3f} GFLOP",
            f"weights {weight_mb:.1f} MB, all tensors {moved_mb:.1f} MB",
        ]
    )
    rows += [
        [
            "latency (protocol, batch 1)",
            f"{ms:.3f} ms",
            f"p90 {lat.p90_ms:.3f}, {lat.n_runs} runs",
        ],
        ["achieved (all FLOPs / latency)", f"{achieved:.1f} GFLOP/s", ""],
    ]
    for p in (p for p in ("fp32", "bf16", "int8") if p in derived):  # bf16: where the CPU has it
        c = cal.get(p)
        where = pk["calibrated_best_gflops"].get(p, {}).get("micro_benchmark", "")
        mark = " <- executed precision" if p in executed else ""
        rows.append(
            [
                f"peak {p} at {threads} thread(s): derived / calibrated",
                f"{derived[p]:.1f} / " + (f"{c:.1f}" if c else "n/a") + " GFLOP/s",
                f"achieved = {100 * achieved / derived[p]:.0f} % / "
                + (f"{100 * achieved / c:.0f} %" if c else "n/a")
                + (f" (calibrated: {where})" if where else "")
                + mark,
            ]
        )
    rows += [
        [
            "compute floor (matrix work at derived / calibrated peak)",
            f"{floor_derived:.3f} / {floor_cal:.3f} ms",
            f"measured = {ms / floor_derived:.1f}x / {ms / floor_cal:.1f}x the floor",
        ],
        [
            "memory floor (weights once at DRAM bandwidth)",
            f"{floor_mem:.3f} ms",
            f"{pk['dram_gbps']:g} GB/s; weights fit the {pk['on_chip_mb']:g} MB caches"
            if weight_mb < pk["on_chip_mb"]
            else f"{pk['dram_gbps']:g} GB/s",
        ],
    ]
    ov_matrix, gap = None, None
    if ovp is not None:
        ov_matrix, gap, ov_rows = ov_rows_and_gap(ovp, ms, floor_cal, executed, derived, cal)
        rows += ov_rows
    if prof is not None:
        kernel_ms = sum(r["ms"] for r in ops)
        rows.append(
            [
                "ORT profile: kernels / profiled run",
                f"{kernel_ms:.3f} / {prof['profiled_run_ms']:.3f} ms",
                f"{100 * (1 - kernel_ms / prof['profiled_run_ms']):.0f} % of a run "
                f"outside kernels; FLOPs from the {prof['graph_analysed'].split(';')[0]}",
            ]
        )
        for r in ops:
            share = ""
            if r["share_of_peak"] is not None:
                share = f" = {100 * r['share_of_peak']:.0f} % derived"
            if r.get("share_of_calibrated") is not None:
                share += f", {100 * r['share_of_calibrated']:.0f} % calibrated"
            why = f"{r['gflops']:.1f} GFLOP/s{share}"
            if not share and r["ms"] and r["timed"]:  # no matrix work: what bounds it
                why += (
                    f"; no matrix work: {1e3 * r['ms'] / r['timed']:.1f} us per node for "
                    f"{1e3 * r['mb'] / max(1, r['nodes']):.0f} KB "
                    f"({r['mb'] / r['ms']:.0f} GB/s)"
                )
            rows.append(
                [
                    f"  {r['op_type']} ({r['precision']}, {r['timed']} nodes)",
                    f"{r['ms']:.3f} ms, {r['gflop']:.3f} GFLOP",
                    why,
                ]
            )
    write(
        "roofline",
        {
            "runs_dir": str(runs),
            "study": study,
            "recommendation": {
                k: best.get(k)
                for k in ("trial", "description", "recipe", "latency_ms", "speedup", "accuracy")
            },
            "inputs": {k: list(v) for k, v in shapes.items()},
            "threads": threads,
            "gflop": gflop,
            "gmac": graph.macs / 1e9,
            "by_precision_in_graph": per_precision(graph),
            "matrix_gflop_by_executed_precision": executed,
            "weight_mb": weight_mb,
            "graph_notes": list(graph.notes),
            "latency": lat.as_dict(),
            "achieved_gflops": achieved,
            "peaks": pk,
            "share_of_derived_peak": {p: achieved / derived[p] for p in derived},
            "share_of_calibrated_peak": {p: achieved / v for p, v in cal.items()},
            "compute_floor_ms": {"derived": floor_derived, "calibrated": floor_cal},
            "memory_floor_ms": floor_mem,
            "openvino_profile": ovp,
            "openvino_matrix_layers": ov_matrix,
            "gap_to_floor_ms": gap,
            "ort_profile": None
            if prof is None
            else {k: v for k, v in prof.items() if k != "nodes"},
            "per_op_type": ops,
            "seconds": time.perf_counter() - start,
            "load_avg_1min": {"start": load, "end": os.getloadavg()[0]},
        },
        rows,
        ["figure", "value", "note"],
    )


if __name__ == "__main__":
    main()
