"""autoaccel against the tools people already use: MiniLM at batch 1 and batch 8 (128 tokens)
on this CPU, every row timed interleaved with the others and judged on the same data.

Rows: PyTorch eager fp32; PyTorch dynamic int8 (`torch.ao` quantize_dynamic); ONNX Runtime
fp32 (all graph optimizations); ONNX Runtime int8 dynamic per-channel (`quantize_dynamic`);
OpenVINO fp32 (the ONNX file); OpenVINO bf16 where the CPU has it (OpenVINO's own default
there: AMX, AVX512-BF16); OpenVINO + NNCF int8 (`nncf.quantize`, transformer model type);
Intel Neural Compressor's accuracy-aware autotune; Olive's CLI quantization; and autoaccel's
recommendation from a finished study (by default the `minilm-search-default` study of
`autoaccel search --workload minilm-search --budget 100 --time-budget 45m`).

Quality: the minilm workload's `task_quality` on three judging sets: the `search` half (what
autoaccel's search and INC's autotune select on), the `holdout` half (texts neither ever
embedded: the selection-bias check) and `all` (the `minilm` workload). Limit: no more than
0.01 below PyTorch eager fp32 on the same set. Teacher agreement (cosine, recall@10 on 200
polarity texts) for every row.

Compatibility table (`vs_peers_compat.py`, `vs_peers-compat.{json,md}`): the same rows when the
vectors must stay compatible with the fp32 model's (teacher cosine at most 0.01 below 1 on the
polarity texts and on the held-out texts), with INC tuned against that limit and autoaccel's
row from the `--metric teacher_cosine` study (`--compat-study`, '' to leave the table out).

    bash benchmarks/peers/setup_inc.sh && bash benchmarks/peers/setup_olive.sh   # once
    .venv/bin/python benchmarks/vs_peers.py --runs-dir /tmp/vsp-runs [--study NAME]

Writes benchmarks/results/vs_peers.{json,md}; the peers' models go to benchmarks/peers/out/.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

from vs_peers_report import BATCHES, SPLITS, report, result_name

from autoaccel.builder import build_candidate
from autoaccel.evaluate.measure import MeasureConfig, measure_interleaved
from autoaccel.evaluate.runners import open_runner
from autoaccel.machine import runs_bf16
from autoaccel.techniques import Candidate
from autoaccel.workloads.minilm import MiniLMWorkload

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
ORT_ALL = {"graph_level": "all"}  # ONNX Runtime: all graph optimizations, every core


def size_mb(candidate: Candidate) -> float:
    """Bytes of the model as deployed: the ONNX file (and its external data, if any), or the
    torch state dict as torch.save writes it (packed int8 weights included)."""
    if candidate.onnx_path is not None:
        files = [candidate.onnx_path, *candidate.onnx_path.parent.glob("*.onnx_data")]
        return sum(f.stat().st_size for f in files) / 1e6
    import io

    import torch

    buf = io.BytesIO()
    torch.save(candidate.torch_model.state_dict(), buf)
    return buf.getbuffer().nbytes / 1e6


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peer_python(name: str) -> Path:
    python = PEERS / f".venv-{name}" / "bin" / "python"
    if not python.exists():
        sys.exit(f"{python} is missing: run `bash benchmarks/peers/setup_{name}.sh` first")
    return python


def run_peer(name: str, args: list[str], out: Path, reuse: bool, source: Path) -> dict:
    """Run a peer script in its own environment (or reuse its earlier output when it was
    made from the same fp32 export: the export's path is its cache key)."""
    report = out / f"{name}.json"
    if reuse and report.exists() and (out / "model.onnx").exists():
        earlier = json.loads(report.read_text())
        if earlier.get("source_model") == str(source):
            print(f"{name}: reusing {out} (tuned earlier from the same export)")
            return {**earlier, "reused": True}
        print(f"{name}: {out} was made from another model; tuning again")
    log_path = out.parent / f"{out.name}.log"
    print(f"{name}: tuning ... (output in {log_path})", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        done = subprocess.run(
            [str(peer_python(name)), *args], stdout=log, stderr=subprocess.STDOUT
        )
    if done.returncode != 0 or not report.exists():
        sys.exit(f"{name} failed (exit {done.returncode}); see {log_path}")
    return {**json.loads(report.read_text()), "reused": False}


def autoaccel_row(runs_dir: Path, study: str) -> tuple[dict, Candidate, MiniLMWorkload]:
    """The study's best measured feasible recipe (what its recommendation re-times here),
    rebuilt from the recipe alone with the study's workload and build cache. A study still
    running has no recommendation.json yet: its best measured feasible trial so far is taken
    from the Optuna storage instead, and the results say so (`interim`)."""
    path = runs_dir / study / "recommendation.json"
    if path.exists():
        rec = json.loads(path.read_text())
        pick = rec.get("best_measured") or rec.get("recommended")
        if pick is None:
            sys.exit(f"study {study} recommends nothing: {rec.get('reason')}")
        source = str(path)
    else:
        rec, pick = _best_so_far(runs_dir, study)
        source = f"interim: best measured feasible trial so far in {runs_dir / 'optuna.db'}"
    split = {"minilm": "all", "minilm-search": "search"}.get(rec["workload"])
    if split is None:
        sys.exit(f"study {study} ran workload {rec['workload']}; vs_peers compares MiniLM only")
    workload = MiniLMWorkload(runs_dir / "cache", split=split)
    t0 = time.perf_counter()
    candidate = build_candidate(pick["recipe"], workload, runs_dir / "cache")
    study_info = {
        "study": study,
        "source": source,
        "interim": not path.exists(),
        "runs_dir": str(runs_dir),
        "workload": rec["workload"],
        "trial": pick["trial"],
        "recipe": pick["recipe"],
        "description": pick["description"],
        "recorded": {
            "accuracy": pick["accuracy"],
            "latency_ms": pick["latency_ms"],
            "latency_source": pick["latency_source"],
            "speedup": pick.get("speedup"),
            "quality": pick.get("quality"),
        },
        "baseline": {k: v for k, v in rec["baseline"].items() if k != "quality"},
        "rebuild_seconds": time.perf_counter() - t0,
        "notes": list(candidate.notes),
    }
    n_trials = _trial_counts(runs_dir, study)
    if n_trials:
        study_info["trials"] = n_trials
    return study_info, candidate, workload


def _best_so_far(runs_dir: Path, study: str) -> tuple[dict, dict]:
    """From the study's storage: the fastest completed, feasible, measured trial so far."""
    import optuna

    from autoaccel.techniques import describe_recipe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        s = optuna.load_study(study_name=study, storage=f"sqlite:///{runs_dir / 'optuna.db'}")
    except KeyError:
        sys.exit(f"no study {study} in {runs_dir / 'optuna.db'}: run the search first")
    best = None
    for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        result = t.user_attrs.get("result") or {}
        feasible = all(v <= 0 for v in t.constraints.values())
        if not feasible or "duplicate_of" in t.user_attrs:
            continue
        if result.get("latency_source") != "measured":
            continue
        if best is None or t.values[1] < best.values[1]:
            best = t
    if best is None:
        sys.exit(f"study {study} has no feasible measured trial yet")
    recipe = best.user_attrs.get("recipe", best.params)
    result = best.user_attrs["result"]
    rec = {
        "workload": s.user_attrs["identity"]["workload"],
        "baseline": s.user_attrs["baseline"],
    }
    pick = {
        "trial": best.number,
        "recipe": recipe,
        "description": describe_recipe(recipe),
        "accuracy": best.values[0],
        "latency_ms": result.get("latency_ms", best.values[1]),
        "latency_source": result["latency_source"],
        "speedup": s.user_attrs["baseline"]["latency_ms"] / best.values[1],
        "quality": result.get("quality"),
    }
    return rec, pick


def _trial_counts(runs_dir: Path, study: str) -> dict:
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = optuna.load_study(study_name=study, storage=f"sqlite:///{runs_dir / 'optuna.db'}")
        trials = s.get_trials(deepcopy=False)
        out: dict[str, int] = {}
        for t in trials:
            out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
        starts = [t.datetime_start for t in trials if t.datetime_start]
        ends = [t.datetime_complete for t in trials if t.datetime_complete]
        if starts and ends:
            out["wall_seconds"] = round((max(ends) - min(starts)).total_seconds())
        return out
    except Exception as exc:  # the counts are context, not a result
        return {"error": str(exc).splitlines()[0][:200]}


def build_rows(args, cache: Path, teacher_w: MiniLMWorkload) -> tuple[dict, dict, dict, dict]:
    """name -> (candidate, how it was made); plus the peers' reports and the studies' info
    (the task-quality study, and the compatibility study when there is one)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    teacher = teacher_w.torch_model()
    # every peer row runs with the framework default (all cores) unless --peer-threads says
    threads = {} if args.peer_threads is None else {"intra_op_threads": args.peer_threads}
    ort_all = {**ORT_ALL, **threads}
    thr = "threads = cores" if not threads else f"{args.peer_threads} thread(s)"
    fp32 = build_candidate({"runtime.backend": "onnxruntime"}, teacher_w, cache).onnx_path
    rows: dict[str, tuple[Candidate, str]] = {}
    rows["PyTorch eager fp32"] = (
        Candidate(backend="torch", torch_model=teacher, session=threads),
        f"torch {torch.__version__}, inference_mode, {thr}",
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # torch.ao's deprecation notices (it still works)
        warnings.simplefilter("ignore")
        q8 = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(teacher), {torch.nn.Linear}, dtype=torch.qint8
        ).eval()
    rows["PyTorch dynamic int8"] = (
        Candidate(backend="torch", torch_model=q8, session=threads),
        f"torch.ao.quantization.quantize_dynamic(model, {{nn.Linear}}, qint8) "
        f"({time.perf_counter() - t0:.1f} s)",
    )
    rows["ONNX Runtime fp32"] = (
        Candidate(backend="onnxruntime", onnx_path=fp32, session=ort_all),
        f"TorchScript export (opset 17), ORT_ENABLE_ALL, intra-op {thr}",
    )
    ort8 = work / "ort-int8-dynamic" / "model.onnx"
    ort8.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    quantize_dynamic(str(fp32), str(ort8), per_channel=True, weight_type=QuantType.QInt8)
    rows["ONNX Runtime int8 dynamic per-channel"] = (
        Candidate(backend="onnxruntime", onnx_path=ort8, session=ort_all),
        f"quantize_dynamic(per_channel=True, weight_type=QInt8) "
        f"({time.perf_counter() - t0:.1f} s), ORT_ENABLE_ALL",
    )
    rows["OpenVINO fp32"] = (
        Candidate(backend="openvino", onnx_path=fp32, session={"ov_precision": "f32", **threads}),
        "core.read_model(onnx) on CPU: INFERENCE_PRECISION_HINT f32, PERFORMANCE_HINT "
        f"latency, 1 stream, {thr}",
    )
    if runs_bf16():  # else OpenVINO's default here is f32: the row above
        rows["OpenVINO bf16 (its default here)"] = (
            Candidate(
                backend="openvino", onnx_path=fp32, session={"ov_precision": "bf16", **threads}
            ),
            "core.read_model(onnx) on CPU with OpenVINO's default precision on this CPU (bf16 "
            f"on AMX / AVX512-BF16), PERFORMANCE_HINT latency, 1 stream, {thr}",
        )
    batches = teacher_w.calibration_inputs()
    rows["OpenVINO + NNCF int8"] = nncf_row(fp32, batches, work, threads, thr)

    calib = work / "calib.npz"
    import numpy as np

    np.savez(calib, **{f"{n}_{k}": b[n] for k, b in enumerate(batches) for n in b})
    peers = {}

    def inc(metric: str, max_drop: float, out: Path) -> dict:
        script = [str(PEERS / "inc_autotune.py"), "--model", str(fp32), "--calib", str(calib)]
        script += ["--out", str(out), "--scorer-python", sys.executable, "--split", "search"]
        script += ["--max-drop", str(max_drop), "--metric", metric]
        return run_peer("inc", script, out, args.reuse_peers, fp32.resolve())

    peers["inc"] = inc("task_quality", args.max_drop, work / "inc")
    rows["Intel Neural Compressor autotune"] = (
        Candidate(backend="onnxruntime", onnx_path=work / "inc" / "model.onnx", session=ort_all),
        f"onnx-neural-compressor {peers['inc']['versions']['onnx-neural-compressor']}: "
        f"accuracy-aware autotune on the search half, limit {args.max_drop} "
        f"({peers['inc']['n_quantized_trials']} trials, "
        f"{peers['inc']['tuning_wall_seconds']:.0f} s); ORT_ENABLE_ALL",
    )
    peers["olive"] = run_peer(
        "olive",
        [str(PEERS / "olive_quantize.py"), "--model", str(fp32), "--out", str(work / "olive")],
        work / "olive",
        args.reuse_peers,
        fp32.resolve(),
    )
    rows["Olive CLI quantize"] = (
        Candidate(backend="onnxruntime", onnx_path=work / "olive" / "model.onnx", session=ort_all),
        f"olive-ai {peers['olive']['versions']['olive-ai']}: `olive quantize --algorithm rtn "
        f"--precision int8 --implementation ort` ({peers['olive']['tuning_wall_seconds']:.0f} s; "
        "without a dataset it runs OnnxDynamicQuantization, QOperator); ORT_ENABLE_ALL",
    )
    study, cand, _ = autoaccel_row(args.runs_dir.resolve(), args.study)
    rows["autoaccel recommendation"] = (
        cand,
        f"study {args.study}, trial {study['trial']}: {study['description']}",
    )
    compat: dict = {}
    if args.compat_study:
        from vs_peers_compat import INC, OURS

        peers["inc_teacher_cosine"] = inc(
            "teacher_cosine", args.compat_max_drop, work / "inc-teacher_cosine"
        )
        p = peers["inc_teacher_cosine"]
        rows[INC] = (
            Candidate(
                backend="onnxruntime",
                onnx_path=work / "inc-teacher_cosine" / "model.onnx",
                session=ort_all,
            ),
            f"onnx-neural-compressor: accuracy-aware autotune on teacher_cosine, limit "
            f"{args.compat_max_drop} ({p['n_quantized_trials']} trials, "
            f"{p['tuning_wall_seconds']:.0f} s); ORT_ENABLE_ALL",
        )
        compat, cand, _ = autoaccel_row(args.runs_dir.resolve(), args.compat_study)
        rows[OURS] = (
            cand,
            f"study {args.compat_study}, trial {compat['trial']}: {compat['description']}",
        )
    return rows, peers, study, compat


def nncf_row(fp32: Path, batches: list, work: Path, threads: dict, thr: str) -> tuple:
    """OpenVINO's own post-training int8 as its documentation shows it: `nncf.quantize` of
    the fp32 ONNX file with the transformer model type on the calibration texts, run by
    OpenVINO at its default precision on this CPU for what stays float."""
    os.environ.setdefault("NNCF_CI", "1")  # no usage reports (see autoaccel's quantize.py)
    import nncf
    import onnx

    out = work / "nncf-int8" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = onnx.load(str(fp32))
    names = {i.name for i in model.graph.input}
    dataset = nncf.Dataset(batches, lambda b: {k: v for k, v in b.items() if k in names})
    onnx.save(nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER), str(out))
    precision = "bf16" if runs_bf16() else "f32"  # OpenVINO's own default on this CPU
    return (
        Candidate(
            backend="openvino", onnx_path=out, session={"ov_precision": precision, **threads}
        ),
        f"nncf {version('nncf')}: nncf.quantize(onnx model, calibration texts, "
        f"model_type=TRANSFORMER) ({time.perf_counter() - t0:.1f} s); OpenVINO default "
        f"precision ({precision}) elsewhere, latency hint, {thr}",
    )


def judge(rows: dict, workloads: dict[str, MiniLMWorkload]) -> dict[str, dict[str, dict]]:
    """Quality of every row on each judging set (really run, not recorded figures)."""
    out: dict[str, dict[str, dict]] = {}
    for name, (cand, _) in rows.items():
        predict = open_runner(cand, workloads["all"].input_names)
        t0 = time.perf_counter()
        out[name] = {split: w.evaluate(predict) for split, w in workloads.items()}
        q = {s: out[name][s]["task_quality"] for s in SPLITS}
        print(
            f"  {name}: task_quality search {q['search']:.4f}, held-out {q['holdout']:.4f}, "
            f"all {q['all']:.4f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return out


def time_rows(rows: dict, workload: MiniLMWorkload, seconds: float, rounds: int) -> dict:
    """Every row at each batch size, interleaved in rounds (drift hits all rows alike)."""
    predicts = {name: open_runner(c, workload.input_names) for name, (c, _) in rows.items()}
    out = {}
    for batch in BATCHES:
        inputs = workload.latency_inputs(batch)
        fns = {name: (lambda p=p, x=inputs: p(x)) for name, p in predicts.items()}
        before = load()
        t0 = time.perf_counter()
        lat = measure_interleaved(fns, MeasureConfig().scaled(seconds), rounds=rounds)
        out[str(batch)] = {
            "latency": {k: v.as_dict() for k, v in lat.items()},
            "load_before": before,
            "load_after": load(),
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"  batch {batch}: timed in {out[str(batch)]['seconds']:.0f} s, load {load()}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="the study's runs dir")
    parser.add_argument("--study", default="minilm-search-default", help="the finished study")
    parser.add_argument("--max-drop", type=float, default=0.01, help="task_quality limit")
    parser.add_argument(
        "--compat-study",
        default="minilm-search-default-teacher_cosine",
        help="the study with --metric teacher_cosine for the compatibility table ('' for none)",
    )
    parser.add_argument(
        "--compat-max-drop", type=float, default=0.01, help="teacher cosine limit (below 1)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="timed seconds per row per batch size"
    )
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--work-dir", type=Path, default=PEERS / "out", help="peers' models")
    parser.add_argument(
        "--reuse-peers",
        action="store_true",
        help="reuse the INC and Olive models already in --work-dir instead of tuning again",
    )
    parser.add_argument(
        "--peer-threads",
        type=int,
        help="intra-op threads for every peer row (default: each framework's own, all cores); "
        "results then go to vs_peers-peers-N-thread.{json,md}",
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        metavar="RAW",
        help="only write the tables again from a vs_peers-raw.json an earlier run left",
    )
    args = parser.parse_args()
    if args.report_only:
        report(json.loads(args.report_only.read_text()))
        return
    started = time.perf_counter()
    load_start = load()
    cache = (args.runs_dir / "cache").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    workloads = {s: MiniLMWorkload(cache, split=s) for s in SPLITS}

    print("building rows ...", flush=True)
    rows, peers, study, compat = build_rows(args, cache, workloads["all"])
    print("quality on the search half, the held-out half and all pairs ...", flush=True)
    quality = judge(rows, workloads)
    tables = {"task_quality": [n for n in rows if "(teacher cosine)" not in n]}
    held = {}
    if compat:
        from vs_peers_compat import INC as INC_COMPAT
        from vs_peers_compat import held_out_agreement

        print("agreement with fp32 on the held-out texts ...", flush=True)
        held = held_out_agreement(rows, workloads["all"], next(iter(rows)))
        swap = {"Intel Neural Compressor autotune": INC_COMPAT}
        swap["autoaccel recommendation"] = "autoaccel recommendation (teacher cosine)"
        tables["teacher_cosine"] = [swap.get(n, n) for n in tables["task_quality"]]
    print("timing, interleaved ...", flush=True)
    timing = time_rows(rows, workloads["all"], args.seconds, args.rounds)
    raw = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": {n: {"how": how, "size_mb": size_mb(c)} for n, (c, how) in rows.items()},
        "quality": quality,
        "timing": timing,
        "peers": peers,
        "autoaccel": study,
        "autoaccel_compat": compat,
        "tables": tables,
        "held_out_agreement": held,
        "versions": {
            "torch": version("torch"),
            "onnxruntime": version("onnxruntime"),
            "openvino": version("openvino"),
            "nncf": version("nncf"),
            "onnx-neural-compressor": peers["inc"]["versions"]["onnx-neural-compressor"],
            "olive-ai": peers["olive"]["versions"]["olive-ai"],
        },
        "load_average": {"start": load_start, "end": load(), "cores": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wall_seconds": time.perf_counter() - started,
    }
    raw_path = args.work_dir.resolve() / f"{result_name(args.peer_threads)}-raw.json"
    raw_path.write_text(json.dumps(raw, indent=2, default=str))
    report(raw)
    print(f"wall time {raw['wall_seconds']:.0f} s (raw figures: {raw_path})")


if __name__ == "__main__":
    main()
