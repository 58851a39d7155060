"""autoaccel against the tools people already use: MiniLM at batch 1 and batch 8 (128 tokens)
on this CPU, every row timed interleaved with the others and judged on the same data.

Rows: PyTorch eager fp32; PyTorch dynamic int8 (`torch.ao` quantize_dynamic); ONNX Runtime
fp32 (all graph optimizations); ONNX Runtime int8 dynamic per-channel (`quantize_dynamic`);
OpenVINO fp32 (the ONNX file); Intel Neural Compressor's accuracy-aware autotune; Olive's CLI
quantization; and autoaccel's recommendation from a finished study (by default the
`minilm-search` study of `autoaccel search --workload minilm-search --budget 100 --targets
cpu-local`).

Quality: the minilm workload's `task_quality` on three judging sets: the `search` half (what
autoaccel's search and INC's autotune select on), the `holdout` half (texts neither ever
embedded: the selection-bias check) and `all` (the `minilm` workload). Limit: no more than
0.01 below PyTorch eager fp32 on the same set. Teacher agreement (cosine, recall@10 on 200
polarity texts) for every row.

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

from _common import RESULTS, write  # benchmarks/ is run as a folder of scripts

from autoaccel.builder import build_candidate
from autoaccel.evaluate.measure import MeasureConfig, measure_interleaved
from autoaccel.evaluate.runners import open_runner
from autoaccel.techniques import Candidate
from autoaccel.workloads.minilm import MiniLMWorkload

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
SPLITS = ("search", "holdout", "all")
BATCHES = (1, 8)
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
    print(f"{name}: tuning ... (output in {out.parent / (name + '.log')})", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{name}.log", "w") as log:
        done = subprocess.run(
            [str(peer_python(name)), *args], stdout=log, stderr=subprocess.STDOUT
        )
    if done.returncode != 0 or not report.exists():
        sys.exit(f"{name} failed (exit {done.returncode}); see {out.parent / f'{name}.log'}")
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


def build_rows(args, cache: Path, teacher_w: MiniLMWorkload) -> tuple[dict, dict, dict]:
    """name -> (candidate, how it was made); plus the peers' reports and the study's info."""
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

    calib = work / "calib.npz"
    import numpy as np

    batches = teacher_w.calibration_inputs()
    np.savez(calib, **{f"{n}_{k}": b[n] for k, b in enumerate(batches) for n in b})
    peers = {}
    peers["inc"] = run_peer(
        "inc",
        [
            str(PEERS / "inc_autotune.py"),
            "--model",
            str(fp32),
            "--calib",
            str(calib),
            "--out",
            str(work / "inc"),
            "--scorer-python",
            sys.executable,
            "--split",
            "search",
            "--max-drop",
            str(args.max_drop),
        ],
        work / "inc",
        args.reuse_peers,
        fp32.resolve(),
    )
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
    return rows, peers, study


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
    rows, peers, study = build_rows(args, cache, workloads["all"])
    print("quality on the search half, the held-out half and all pairs ...", flush=True)
    quality = judge(rows, workloads)
    print("timing, interleaved ...", flush=True)
    timing = time_rows(rows, workloads["all"], args.seconds, args.rounds)
    raw = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": {n: {"how": how, "size_mb": size_mb(c)} for n, (c, how) in rows.items()},
        "quality": quality,
        "timing": timing,
        "peers": peers,
        "autoaccel": study,
        "versions": {
            "torch": version("torch"),
            "onnxruntime": version("onnxruntime"),
            "openvino": version("openvino"),
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


def result_name(peer_threads: int | None) -> str:
    return "vs_peers" if peer_threads is None else f"vs_peers-peers-{peer_threads}-thread"


def report(raw: dict) -> None:
    """Limits, speedups and the acceptance check from the measured figures; the tables."""
    out_name = result_name(raw["args"].get("peer_threads"))
    max_drop = float(raw["args"]["max_drop"])
    quality, timing, study, peers = raw["quality"], raw["timing"], raw["autoaccel"], raw["peers"]
    names = list(raw["rows"])
    base, ours = names[0], "autoaccel recommendation"
    results, table = {}, []
    for name in names:
        q = quality[name]
        drop = {s: quality[base][s]["task_quality"] - q[s]["task_quality"] for s in SPLITS}
        meets = {s: drop[s] <= max_drop + 1e-12 for s in SPLITS}
        lat = {b: timing[str(b)]["latency"][name] for b in BATCHES}
        speed = {
            b: timing[str(b)]["latency"][base]["median_ms"] / lat[b]["median_ms"] for b in BATCHES
        }
        results[name] = {
            **raw["rows"][name],
            "quality": q,
            "task_quality_drop": drop,
            "meets_limit": {**meets, "headline": meets["holdout"] and meets["all"]},
            "latency_ms": {str(b): lat[b] for b in BATCHES},
            "speedup_vs_pytorch_fp32": {str(b): speed[b] for b in BATCHES},
        }
        cell = " / ".join(f"{q[s]['task_quality']:.4f} ({0.0 - drop[s]:+.4f})" for s in SPLITS)
        table.append(
            [
                name,
                cell,
                f"{q['all']['teacher_cosine']:.4f} / {q['all']['teacher_recall_at_10']:.2f}",
                "yes"
                if results[name]["meets_limit"]["headline"]
                else "no (" + ", ".join(s for s in SPLITS if not meets[s]) + ")",
                *[f"{lat[b]['median_ms']:.2f} / {lat[b]['p90_ms']:.2f}" for b in BATCHES],
                *[f"{speed[b]:.2f}x" for b in BATCHES],
            ]
        )

    peers_ok = [n for n in names if n != ours and results[n]["meets_limit"]["headline"]]
    mine_ok = results[ours]["meets_limit"]["headline"]
    acceptance: dict = {
        "rule": "autoaccel's row meets the limit and its p50 is at most that of the "
        "fastest peer row meeting the same limit (goal: 2x faster than it, 6x faster "
        "than PyTorch eager fp32); meeting = within the limit on the held-out half "
        "and on all pairs"
    }
    for b in BATCHES:
        key = str(b)
        fastest = min(
            peers_ok, key=lambda n: results[n]["latency_ms"][key]["median_ms"], default=None
        )
        mine = results[ours]["latency_ms"][key]["median_ms"]
        vs_torch = results[ours]["speedup_vs_pytorch_fp32"][key]
        entry = {
            "autoaccel_p50_ms": mine,
            "autoaccel_meets_limit": mine_ok,
            "speedup_vs_pytorch_fp32": vs_torch,
            "goal_6x_vs_pytorch": mine_ok and vs_torch >= 6,
        }
        if fastest:
            theirs = results[fastest]["latency_ms"][key]["median_ms"]
            entry.update(
                fastest_peer_meeting_limit=fastest,
                fastest_peer_p50_ms=theirs,
                speedup_vs_fastest_peer=theirs / mine,
                at_least_as_fast=mine_ok and mine <= theirs,
                goal_2x_vs_peer=mine_ok and theirs / mine >= 2,
            )
        acceptance[f"batch_{b}"] = entry

    args = raw["args"]
    load_avg = raw["load_average"]
    payload = {
        "protocol": (
            f"MiniLM (all-MiniLM-L6-v2, mean pooling + L2 norm), 128 real tokens per sequence, "
            f"batch 1 and 8; every row timed interleaved with the others by "
            f"autoaccel.evaluate.measure.measure_interleaved ({args['rounds']} rounds, "
            f"{args['seconds']:g} s timed per row per batch size after warm-up), p50 / p90 of "
            f"single calls; quality by MiniLMWorkload.evaluate on each judging set, really run"
        ),
        "quality_limit": {
            "metric": "task_quality",
            "max_drop": max_drop,
            "against": "PyTorch eager fp32 on the same judging set",
            "headline": "within the limit on the held-out half and on all pairs",
        },
        "splits": {
            "search": "even-numbered Lee documents (300 pairs among them) and one of two "
            "word-disjoint halves of each word task's pairs: what autoaccel's search and "
            "INC's autotune selected on",
            "holdout": "the other half: texts neither the search nor INC ever embedded",
            "all": "every pair (the `minilm` workload): 1225 Lee pairs, 353 wordsim, 999 simlex",
        },
        "peer_threads": raw["args"].get("peer_threads") or "framework default (all cores)",
        "load_average": {
            **load_avg,
            "during_timing": {b: t["load_after"] for b, t in timing.items()},
            "note": "1/5/15-minute load averages; this 2-core machine is shared, latencies "
            "taken at a load above the core count are inflated (all rows alike, since they "
            "are interleaved, but not exactly alike: 2-thread runs suffer most)",
        },
        "versions": raw["versions"],
        "peers": peers,
        "autoaccel": study,
        "timing": {b: {k: v for k, v in t.items() if k != "latency"} for b, t in timing.items()},
        "rows": results,
        "acceptance": acceptance,
        "measured_at": raw.get("measured_at"),
        "wall_seconds": raw["wall_seconds"],
    }
    header = [
        "row",
        "task_quality search / held-out / all (vs fp32)",
        "teacher cos / R@10",
        "meets limit",
        "b1 p50 / p90 ms",
        "b8 p50 / p90 ms",
        "b1 speedup",
        "b8 speedup",
    ]
    write(out_name, payload, table, header)
    cores = load_avg["cores"]
    v = raw["versions"]
    threads = raw["args"].get("peer_threads")
    notes = [
        "",
        "Peer rows ran with "
        + (
            "each framework's default threads (all cores)"
            if threads is None
            else f"{threads} intra-op thread(s) (--peer-threads)"
        )
        + "; autoaccel's row with its recipe's "
        + f"({study['recipe'].get('runtime.intra_op_threads')}).",
    ]
    notes.append(
        f"Measured {raw['measured_at']} (end of the run)."
        if raw.get("measured_at")
        else "Measurement time not recorded in the raw figures (the Machine date above is "
        "when these tables were written)."
    )
    if study.get("interim"):
        t = study.get("trials", {})
        notes.append(
            f"INTERIM: study {study['study']} was still running ({t.get('complete', '?')} "
            f"complete, {t.get('pruned', 0)} pruned, {t.get('fail', 0)} failed trials); the "
            "autoaccel row is its best measured feasible trial so far, not its final "
            "recommendation."
        )
    notes += [
        f"Load average (1/5/15 min) at start {load_avg['start']}, after batch 1 "
        f"{timing['1']['load_after']}, after batch 8 {timing['8']['load_after']}, on {cores} "
        f"cores: figures taken above a load of {cores} are inflated (the machine is shared).",
        f"Limit: task_quality at most {max_drop} below PyTorch eager fp32 on the same set; "
        "'meets' = on the held-out half and on all pairs. The held-out half is texts that "
        "neither autoaccel's search nor INC's autotune ever embedded.",
        f"autoaccel row: study {study['study']} (trials {study.get('trials')}), trial "
        f"{study['trial']}: {study['description']}; search-half task_quality recorded by the "
        f"search {study['recorded']['accuracy']:.4f}, rebuilt here "
        f"{quality[ours]['search']['task_quality']:.4f}.",
        "Selection-bias check, task_quality minus fp32's on the half each tool selected on "
        "vs on the held-out half: "
        + "; ".join(
            f"{n} {0.0 - results[n]['task_quality_drop']['search']:+.4f} (search) vs "
            f"{0.0 - results[n]['task_quality_drop']['holdout']:+.4f} (held-out)"
            for n in (ours, "Intel Neural Compressor autotune")
        )
        + ".",
        f"Versions: onnx-neural-compressor {v['onnx-neural-compressor']} (autotune "
        f"{peers['inc']['tuning_wall_seconds']:.0f} s, {peers['inc']['n_quantized_trials']} "
        f"trials), olive-ai {v['olive-ai']} ({peers['olive']['tuning_wall_seconds']:.0f} s), "
        f"openvino {v['openvino']}, onnxruntime {v['onnxruntime']}, torch {v['torch']}.",
    ]
    for b in BATCHES:
        a = acceptance[f"batch_{b}"]
        line = (
            f"Batch {b}: autoaccel {a['autoaccel_p50_ms']:.2f} ms, "
            f"{a['speedup_vs_pytorch_fp32']:.2f}x PyTorch eager fp32"
        )
        if "fastest_peer_meeting_limit" in a:
            line += (
                f"; fastest peer within the limit: {a['fastest_peer_meeting_limit']} "
                f"{a['fastest_peer_p50_ms']:.2f} ms, autoaccel {a['speedup_vs_fastest_peer']:.2f}x"
                f" it; at least as fast: {'yes' if a['at_least_as_fast'] else 'no'}"
            )
        notes.append(line + ".")
    notes += ["", "How each row was made:"]
    notes += [f"- {n}: {results[n]['how']}" for n in names]
    text = "\n".join(notes) + "\n"
    with open(RESULTS / f"{out_name}.md", "a") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
