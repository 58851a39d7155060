"""The bad-input catalogue: every input a person can get wrong, and what they are told.

Each case runs `autoaccel ...` in-process (`cli.main()` with a patched `sys.argv`: the same code
path as the console script, without 2 s of interpreter start per case) and checks the rule of
the project: exit code 2, exactly one line on stderr that starts with `error:`, names what is
wrong and says how to fix it, no traceback, and nothing written (the snapshot of the test's
folder, runs dir and working directory included, is the same after the command as before).

Cases already covered in tests/test_cli.py (as real processes) and not repeated here:
--budget 0, --budget -3, --workload no-such-workload, --sampler annealing,
--space missing-space, --study ../escape, --model without --data,
--max-accuracy-drop -0.1, a factory returning a non-Workload, a factory module that cannot be
imported, a space with an unknown choice (quantize.mode: [int3]), `report` on a missing store,
`ui` without a store. Hardware-profile files can't be given on the command line (profiles come
only from hardware_profiles/), so their errors are covered at the function level in
tests/targets/test_profiles.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from autoaccel import cli

TINY_SPACE = "version: 1\ntechniques:\n  quantize:\n    mode: [none]\n"


class Dirs:
    """A test's folders and the bad (or good) input files a case writes before it runs."""

    def __init__(self, tmp: Path, tiny_onnx: tuple[Path, Path]) -> None:
        self.tmp = tmp
        self.inp = tmp / "in"
        self.inp.mkdir()
        self.runs = tmp / "runs"
        self._tiny = tiny_onnx

    def write(self, name: str, text: str) -> str:
        path = self.inp / name
        path.write_text(text)
        return str(path)

    def space(self, text: str) -> str:
        return self.write("space.yaml", text)

    def npz(self, name: str = "data.npz", **arrays) -> str:
        path = self.inp / name
        np.savez(path, **arrays)
        return str(path)

    def model(self) -> str:
        return str(shutil.copy(self._tiny[0], self.inp / "tiny.onnx"))

    def data(self) -> str:
        return str(shutil.copy(self._tiny[1], self.inp / "tiny.npz"))

    def store(self, study: str = "shared", workload: str = "digits-cnn") -> str:
        """runs/ as an earlier search of `workload` left it: optuna.db holding one study
        (its identity as `search` records it, no trials)."""
        import optuna

        from autoaccel.space import load_space
        from autoaccel.workloads import load_workload

        self.runs.mkdir(exist_ok=True)
        (self.runs / "cache").mkdir(exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        created = optuna.create_study(
            study_name=study,
            storage=f"sqlite:///{self.runs / 'optuna.db'}",
            directions=["maximize", "minimize"],
        )
        identity = {
            "workload": workload,
            "workload_fingerprint": load_workload(workload, self.runs / "cache").fingerprint(),
            "space": load_space(self.write("tiny.yaml", TINY_SPACE)).digest(),
            "max_accuracy_drop": 0.01,
        }
        created.set_user_attr("identity", identity)
        return study

    def search(self, *args: str) -> list[str]:
        """`autoaccel search` with a tiny space and budget (a case's own options win: the
        last occurrence of an option counts), so a case that wrongly starts is still fast."""
        base = ["--runs-dir", str(self.runs), "--budget", "1", "--measure-seconds", "0.03"]
        return ["search", *base, "--space", self.write("tiny.yaml", TINY_SPACE), *args]

    def runs_cmd(self, command: str, *args: str) -> list[str]:
        return [command, "--runs-dir", str(self.runs), *args]


def _closed_port() -> int:
    """A loopback port nobody listens on (just freed): connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(n: int, features: int = 4) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, features)).astype(np.float32)


def _folder(d: Dirs, kind: str) -> str:
    """A model folder in the test's input folder: a tiny text or image classifier, a folder
    of notes, or a config of an architecture no one has."""
    import support_hf

    path = d.inp / kind
    if kind == "text":
        support_hf.text_classifier(path)
    elif kind == "image":
        support_hf.image_classifier(path)
    else:
        path.mkdir()
        config = {"model_type": "time-machine", "architectures": ["TimeMachineModel"]}
        name, text = ("config.json", json.dumps(config)) if kind == "odd" else ("notes.txt", "")
        (path / name).write_text(text)
        (path / "model.safetensors").write_bytes(b"")
    return str(path)


def _csv(d: Dirs, label: str = "pos", empty: bool = False) -> str:
    import support_hf

    texts = support_hf.sentences(20)
    texts[3] = " " if empty else texts[3]
    rows = "".join(f"{t},{label if i % 2 else 'neg'}\n" for i, t in enumerate(texts))
    return d.write("val.csv", "text,label\n" + rows)


def _images(d: Dirs) -> str:
    import support_hf

    root = support_hf.image_folder(d.inp / "images", per_class=6)
    (root / "circle" / "broken.png").write_text("not an image")
    return str(root)


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Dirs], list[str]]
    says: tuple[str, ...]
    """Fragments of the one line: what is wrong (option, file, key) and the fix."""
    env: tuple[tuple[str, str], ...] = ()
    xfail: str = ""


CASES = [
    # --- search space files -------------------------------------------------------------
    # YAML that does not parse: the file and the line.
    Case(
        "space-malformed-yaml",
        lambda d: d.search("--space", d.space("version: 1\ntechniques: [unclosed\n")),
        ("space.yaml", "line", "not valid YAML"),
    ),
    # A top-level key the format does not have (a typo, or a CLI option put in the file).
    Case(
        "space-unknown-top-level-key",
        lambda d: d.search("--space", d.space("sampler: tpe\n" + TINY_SPACE)),
        ("space.yaml", "unknown top-level key(s) ['sampler']", "allowed: version"),
    ),
    # No `techniques:` mapping at all.
    Case(
        "space-without-techniques",
        lambda d: d.search("--space", d.space("version: 1\n")),
        ("space.yaml", "needs a top-level 'techniques:'"),
    ),
    # A format version this release does not read.
    Case(
        "space-unsupported-version",
        lambda d: d.search("--space", d.space(TINY_SPACE.replace("version: 1", "version: 2"))),
        ("space.yaml", "version 2 is not supported", "use version: 1"),
    ),
    # A technique that does not exist (British spelling).
    Case(
        "space-unknown-technique",
        lambda d: d.search("--space", d.space("version: 1\ntechniques:\n  quantise: {}\n")),
        ("techniques.quantise is not a technique", "use one of", "quantize"),
    ),
    # A parameter the technique does not declare.
    Case(
        "space-unknown-parameter",
        lambda d: d.search(
            "--space", d.space("version: 1\ntechniques:\n  quantize:\n    bits: [8]\n")
        ),
        ("techniques.quantize.bits is not a parameter of quantize", "use one of", "mode"),
    ),
    # A string where a number belongs.
    Case(
        "space-string-for-a-number",
        lambda d: d.search(
            "--space",
            d.space(
                "version: 1\ntechniques:\n  runtime:\n    intra_op_threads: {low: one, high: 2}\n"
            ),
        ),
        ("techniques.runtime.intra_op_threads", "'one' must be an integer in [1, 256]"),
    ),
    # A number outside the parameter's declared bounds.
    Case(
        "space-value-out-of-range",
        lambda d: d.search(
            "--space",
            d.space(
                "version: 1\ntechniques:\n  runtime:\n    intra_op_threads: {low: 1, high: 999}\n"
            ),
        ),
        ("techniques.runtime.intra_op_threads", "999 must be an integer in [1, 256]"),
    ),
    # A range whose low is above its high.
    Case(
        "space-low-above-high",
        lambda d: d.search(
            "--space",
            d.space(
                "version: 1\ntechniques:\n  runtime:\n    intra_op_threads: {low: 4, high: 2}\n"
            ),
        ),
        ("techniques.runtime.intra_op_threads", "low 4 is above high 2", "swap them"),
    ),
    # A choice list with nothing in it.
    Case(
        "space-empty-choice-list",
        lambda d: d.search(
            "--space", d.space("version: 1\ntechniques:\n  quantize:\n    mode: []\n")
        ),
        ("techniques.quantize.mode", "empty list", "choose from"),
    ),
    # --- options ---------------------------------------------------------------------------
    # A hardware target that has no profile.
    Case(
        "targets-unknown",
        lambda d: d.search("--workload", "seed-mlp", "--targets", "cpu-local,nvidia-h900"),
        ("--targets", "nvidia-h900", "choose from", "cpu-local", "autoaccel targets list"),
    ),
    # A scenario name MLPerf does not have.
    Case(
        "scenario-unknown",
        lambda d: d.search("--workload", "seed-mlp", "--scenario", "batch"),
        ("--scenario 'batch'", "single-stream", "offline", "server"),
    ),
    # A recommendation objective that is not one of the three.
    Case(
        "prefer-unknown",
        lambda d: d.search("--workload", "seed-mlp", "--prefer", "speed"),
        ("--prefer 'speed'", "latency", "cost", "energy"),
    ),
    # An accuracy limit above 1 (a percentage typed where a fraction belongs).
    Case(
        "max-accuracy-drop-above-1",
        lambda d: d.search("--workload", "seed-mlp", "--max-accuracy-drop", "5"),
        ("--max-accuracy-drop 5", "less than or equal to 1"),
    ),
    # One percent typed as 1 on a metric in [0, 1]: a limit that allows any model.
    Case(
        "max-accuracy-drop-percent-for-a-fraction",
        lambda d: d.search("--workload", "seed-mlp", "--max-accuracy-drop", "1"),
        (
            "--max-accuracy-drop 1",
            "the metric accuracy lies in [0, 1]",
            "allows any model",
            "for 1 point use --max-accuracy-drop 0.01",
        ),
    ),
    # Half a percent typed as 0.5: half the accuracy scale is no limit either.
    Case(
        "max-accuracy-drop-half-the-range",
        lambda d: d.search("--workload", "seed-mlp", "--max-accuracy-drop", "0.5"),
        ("--max-accuracy-drop 0.5", "allows 50% of that range", "--max-accuracy-drop 0.005"),
    ),
    # Not a number at all.
    Case(
        "max-accuracy-drop-nan",
        lambda d: d.search("--workload", "seed-mlp", "--max-accuracy-drop", "nan"),
        ("--max-accuracy-drop nan", "finite number"),
    ),
    # A seed numpy cannot take (it would fail with a traceback once the study opens).
    Case(
        "seed-negative",
        lambda d: d.search("--workload", "seed-mlp", "--seed", "-1"),
        ("--seed -1", "greater than or equal to 0"),
    ),
    # A quality figure the workload does not report (a typo, or another workload's).
    Case(
        "metric-unknown",
        lambda d: d.search("--workload", "seed-mlp", "--metric", "teacher_cosine"),
        ("--metric teacher_cosine", "seed-mlp reports accuracy", "use one of those"),
    ),
    # No time at all to measure latency.
    Case(
        "measure-seconds-zero",
        lambda d: d.search("--workload", "seed-mlp", "--measure-seconds", "0"),
        ("--measure-seconds 0", "greater than 0"),
    ),
    # A latency bound of zero for the server scenario.
    Case(
        "latency-bound-zero",
        lambda d: d.search("--scenario", "server", "--latency-bound-ms", "0"),
        ("--latency-bound-ms 0", "greater than 0"),
    ),
    # Text where an integer option belongs (parsed by the command line, not by pydantic).
    Case(
        "budget-not-a-number",
        lambda d: d.search("--budget", "ten"),
        ("--budget", "valid integer", "autoaccel search --help"),
    ),
    # A time limit that is no time at all.
    Case(
        "trial-timeout-zero",
        lambda d: d.search("--trial-timeout", "0"),
        ("--trial-timeout 0.0", "greater than 0"),
    ),
    # A time limit without the worker process that could enforce it.
    Case(
        "trial-timeout-without-isolation",
        lambda d: d.search("--trial-timeout", "60", "--no-isolate"),
        ("--trial-timeout needs candidates in their own process", "drop --no-isolate"),
    ),
    # An option that does not exist (a typo).
    Case(
        "option-misspelt",
        lambda d: d.search("--bugdet", "5"),
        ("--bugdet", "--budget", "autoaccel search --help"),
    ),
    # A subcommand that does not exist.
    Case(
        "command-misspelt",
        lambda d: ["serach", "--budget", "5"],
        ("serach", "autoaccel --help"),
    ),
    # --- the workload ------------------------------------------------------------------------
    # --data without --model (the reverse of test_cli's case).
    Case(
        "data-without-model",
        lambda d: d.search("--data", d.data()),
        ("--model and --data go together", "give both"),
    ),
    # --workload together with --model/--data: which one is meant?
    Case(
        "workload-and-model",
        lambda d: d.search("--workload", "seed-mlp", "--model", d.model(), "--data", d.data()),
        ("--workload", "--model/--data", "not both"),
    ),
    # --model names a file that is not there.
    Case(
        "model-missing-file",
        lambda d: d.search("--model", str(d.inp / "nope.onnx"), "--data", d.data()),
        ("--model", "nope.onnx", "no such file"),
    ),
    # --data names a file that is not there.
    Case(
        "data-missing-file",
        lambda d: d.search("--model", d.model(), "--data", str(d.inp / "nope.npz")),
        ("--data", "nope.npz", "no such file"),
    ),
    # An .onnx file that is not a model (a truncated download, say).
    Case(
        "model-corrupt-onnx",
        lambda d: d.search(
            "--model", d.write("broken.onnx", "not a protobuf"), "--data", d.data()
        ),
        ("--model", "broken.onnx", "not a valid ONNX model", "export it again"),
    ),
    # An .npz without the model's input (saved under another name); labels are optional.
    Case(
        "data-npz-missing-input",
        lambda d: d.search("--model", d.model(), "--data", d.npz(x=_rows(5), y_val=np.zeros(5))),
        ("--data", "missing array features (or x_val)", "name each input array"),
    ),
    # An .npz that is no archive at all (a CSV renamed).
    Case(
        "data-not-an-npz",
        lambda d: d.search("--model", d.model(), "--data", d.write("data.npz", "x,y\n1,2\n")),
        ("--data", "data.npz", "not a readable .npz archive", "numpy.savez"),
    ),
    # x_val rows of 7 features for a model that takes 4.
    Case(
        "data-wrong-shape",
        lambda d: d.search(
            "--model", d.model(), "--data", d.npz(x_val=_rows(5, 7), y_val=np.zeros(5))
        ),
        ("--data", "x_val has shape 5x7 but the model takes Nx4", "reshape"),
    ),
    # x_val of strings for a model that takes float32.
    Case(
        "data-wrong-dtype",
        lambda d: d.search(
            "--model", d.model(), "--data", d.npz(x_val=np.array([["a"] * 4] * 3), y_val=[0] * 3)
        ),
        ("--data", "x_val has dtype <U1", "store numbers"),
    ),
    # Labels saved one-hot (N x 3) instead of as class indices.
    Case(
        "data-one-hot-labels",
        lambda d: d.search(
            "--model", d.model(), "--data", d.npz(x_val=_rows(5), y_val=np.eye(3)[[0, 1, 2, 0, 1]])
        ),
        ("--data", "y_val has shape 5x3", "one integer class index per row", "argmax"),
    ),
    # x_val saved as an object array (a list of arrays): numpy would need pickle to load it.
    Case(
        "data-object-array",
        lambda d: d.search(
            "--model",
            d.model(),
            "--data",
            d.npz(x_val=np.array([_rows(1)[0], None], dtype=object), y_val=np.zeros(2)),
        ),
        ("--data", "holds object arrays", "store numeric arrays"),
    ),
    # One label fewer than input rows.
    Case(
        "data-rows-mismatch",
        lambda d: d.search(
            "--model", d.model(), "--data", d.npz(x_val=_rows(5), y_val=np.zeros(4))
        ),
        ("--data", "x_val has 5 rows but y_val has 4", "one label per input row"),
    ),
    # A factory name the module does not define.
    Case(
        "factory-missing-attribute",
        lambda d: d.search("--workload", "support_workloads:no_such_factory"),
        ("--workload support_workloads:no_such_factory", "no callable 'no_such_factory'"),
    ),
    # package.module:factory with the module left out.
    Case(
        "factory-empty-module",
        lambda d: d.search("--workload", ":make"),
        ("--workload :make", "package.module:factory"),
    ),
    # The user's factory itself fails (its weights file is missing).
    Case(
        "factory-raises",
        lambda d: d.search("--workload", "support_workloads:broken"),
        ("--workload support_workloads:broken", "FileNotFoundError", "weights.pt", "--debug"),
    ),
    # A torch model with an operator ONNX lacks: found by the export before any trial.
    Case(
        "model-cannot-be-exported",
        lambda d: d.search("--workload", "support_workloads:unexportable"),
        ("fft-mlp", "cannot be exported to ONNX", "aten::fft_fft", "--model/--data"),
    ),
    # --- a Hugging Face model folder and its data files -----------------------------------
    # A folder that holds no model (no config.json).
    Case(
        "model-folder-not-a-model",
        lambda d: d.search("--model", _folder(d, "notes"), "--data", _csv(d)),
        ("--model", "not a Hugging Face model folder (no config.json)", "save_pretrained"),
    ),
    # A config.json naming an architecture transformers does not have (custom code).
    Case(
        "model-folder-unknown-architecture",
        lambda d: d.search("--model", _folder(d, "odd"), "--data", _csv(d)),
        (
            "config.json names architecture 'TimeMachineModel'",
            "does not know",
            "export it to ONNX",
        ),
    ),
    # --text-column names a column the CSV does not have.
    Case(
        "data-csv-missing-named-column",
        lambda d: d.search(
            "--model", _folder(d, "text"), "--data", _csv(d), "--text-column", "body"
        ),
        ("--text-column body", "val.csv has no column 'body'", "columns: text, label"),
    ),
    # Labels the model does not have (its config.json id2label says neg, pos).
    Case(
        "data-labels-outside-model-classes",
        lambda d: d.search("--model", _folder(d, "text"), "--data", _csv(d, label="meh")),
        ("label(s) 'meh' are not among the model's 2 classes (neg, pos)", "id2label"),
    ),
    # A text column with an empty row.
    Case(
        "data-text-column-empty-rows",
        lambda d: d.search("--model", _folder(d, "text"), "--data", _csv(d, empty=True)),
        ("val.csv: text column 'text' is empty in 1 row(s)", "drop those rows or fill them"),
    ),
    # An image that cannot be read (images of mixed sizes are fine: the processor resizes).
    Case(
        "data-unreadable-image",
        lambda d: d.search("--model", _folder(d, "image"), "--data", _images(d)),
        ("broken.png: not a readable image", "remove it or replace it"),
    ),
    # An .npz for a model folder (that format is for an .onnx model).
    Case(
        "data-npz-for-a-model-folder",
        lambda d: d.search("--model", _folder(d, "text"), "--data", d.data()),
        ("tiny.npz", "the model takes text", "give a table"),
    ),
    # A task that autoaccel does not have.
    Case(
        "task-unknown",
        lambda d: d.search("--model", _folder(d, "text"), "--data", _csv(d), "--task", "chat"),
        ("--task chat", "use one of text-classification"),
    ),
    # A model folder's data option with an .onnx model.
    Case(
        "task-with-an-onnx-model",
        lambda d: d.search("--model", d.model(), "--data", d.data(), "--text-column", "x"),
        ("--text-column: only for a Hugging Face model folder", "drop it"),
    ),
    # --- where results go ---------------------------------------------------------------
    # --runs-dir below a regular file (root ignores permission bits; this can't be created).
    Case(
        "runs-dir-under-a-file",
        lambda d: d.search(
            "--workload", "seed-mlp", "--runs-dir", d.write("file.txt", "") + "/runs"
        ),
        ("--runs-dir", "file.txt/runs", "cannot create it", "choose a folder you can write to"),
    ),
    # --storage: an SQLite file in a folder that does not exist (SQLite won't create it).
    Case(
        "storage-sqlite-missing-folder",
        lambda d: d.search(
            "--workload", "seed-mlp", "--storage", f"sqlite:///{d.tmp / 'nodir' / 'optuna.db'}"
        ),
        ("--storage sqlite:///", "folder", "nodir does not exist", "create it first"),
    ),
    # --storage: a bare path where a database URL belongs.
    Case(
        "storage-not-a-url",
        lambda d: d.search("--workload", "seed-mlp", "--storage", "optuna.db"),
        ("--storage optuna.db", "not a database URL", "sqlite:///"),
    ),
    # --storage: a database server nobody listens on (refused at once; no driver is needed).
    Case(
        "storage-unreachable-server",
        lambda d: d.search(
            "--workload",
            "seed-mlp",
            "--storage",
            f"postgresql://u:p@127.0.0.1:{_closed_port()}/db",
        ),
        ("--storage postgresql://u:***@127.0.0.1:", "cannot reach 127.0.0.1:", "database server"),
    ),
    # --tracking-uri: an MLflow server nobody listens on; must fail fast, not after MLflow's
    # minutes of retries (the env caps them in case the up-front check ever stops catching it).
    Case(
        "tracking-uri-unreachable",
        lambda d: d.search(
            "--workload", "seed-mlp", "--tracking-uri", f"http://127.0.0.1:{_closed_port()}"
        ),
        ("--tracking-uri http://127.0.0.1:", "cannot reach 127.0.0.1:", "MLflow server"),
        env=(
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "3"),
            ("NO_PROXY", "127.0.0.1"),
            ("no_proxy", "127.0.0.1"),
        ),
    ),
    # --tracking-uri: an SQLite store below a regular file (MLflow creates missing folders,
    # but not there).
    Case(
        "tracking-uri-sqlite-under-a-file",
        lambda d: d.search(
            "--workload",
            "seed-mlp",
            "--tracking-uri",
            f"sqlite:///{d.write('notes.txt', '')}/mlruns/mlflow.db",
        ),
        ("--tracking-uri sqlite:///", "notes.txt is a file, not a folder", "choose a path"),
    ),
    # AUTOACCEL_TRAIN_PRECISION with a value it does not know: refused before any trial trains.
    Case(
        "train-precision-env-unknown",
        lambda d: d.search("--workload", "seed-mlp"),
        ("AUTOACCEL_TRAIN_PRECISION='fp8'", "use one of fp32, bf16"),
        env=(("AUTOACCEL_TRAIN_PRECISION", "fp8"),),
    ),
    # --study with a space in it.
    Case(
        "study-name-with-space",
        lambda d: d.search("--workload", "seed-mlp", "--study", "my study"),
        ("--study 'my study'", "letters, digits"),
    ),
    # --study names a study made for another workload: continuing it would mix results.
    Case(
        "study-made-for-another-workload",
        lambda d: d.search("--workload", "seed-mlp", "--study", d.store("shared", "digits-cnn")),
        (
            "study 'shared' was created with a different workload",
            "workload='digits-cnn'",
            "give a new --study name",
        ),
    ),
    # A server latency bound no recipe can meet, found by timing the baseline.
    Case(
        "latency-bound-baseline-cannot-meet",
        lambda d: d.search(
            "--model",
            d.model(),
            "--data",
            d.data(),
            "--targets",
            "cpu-local",
            "--scenario",
            "server",
            "--latency-bound-ms",
            "0.000001",
        ),
        ("--latency-bound-ms 1e-06", "the baseline cannot meet it", "raise the bound"),
    ),
    # --- report, export, targets ----------------------------------------------------------
    # report: an objective that is not one of the three.
    Case(
        "report-prefer-unknown",
        lambda d: d.runs_cmd("report", "--prefer", "speed"),
        ("--prefer 'speed'", "use latency, cost or energy"),
    ),
    # report: a study the store does not hold.
    Case(
        "report-unknown-study",
        lambda d: d.store() and d.runs_cmd("report", "--study", "nope"),
        ("--study 'nope'", "no such study", "known: shared"),
    ),
    # report: --storage pointing at an SQLite file that is not there.
    Case(
        "report-storage-missing-file",
        lambda d: d.runs_cmd("report", "--storage", f"sqlite:///{d.tmp / 'none.db'}"),
        ("--storage", "none.db", "no such study store", "autoaccel search"),
    ),
    # export: both --recommended and --trial.
    Case(
        "export-recommended-and-trial",
        lambda d: d.runs_cmd("export", "--recommended", "--trial", "3", "--out", "m.onnx"),
        ("exactly one of --recommended or --trial N",),
    ),
    # export: neither --recommended nor --trial.
    Case(
        "export-neither-recommended-nor-trial",
        lambda d: d.runs_cmd("export", "--out", "m.onnx"),
        ("exactly one of --recommended or --trial N",),
    ),
    # export: --out without the .onnx suffix.
    Case(
        "export-out-not-onnx",
        lambda d: d.runs_cmd("export", "--recommended", "--out", "model.bin"),
        ("--out model.bin", ".onnx"),
    ),
    # export: no --out at all (a required option).
    Case(
        "export-missing-out",
        lambda d: d.runs_cmd("export", "--recommended"),
        ("--out", "autoaccel export --help"),
    ),
    # export: a trial number the study does not have.
    Case(
        "export-unknown-trial",
        lambda d: d.store() and d.runs_cmd("export", "--trial", "7", "--out", "m.onnx"),
        ("--trial 7", "no completed trial", "frontier"),
    ),
    # targets show: a profile that does not exist.
    Case(
        "targets-show-unknown",
        lambda d: ["targets", "show", "nvidia-h900"],
        ("nvidia-h900", "no such target", "autoaccel targets list"),
    ),
]


# --- model files: ONNX with named inputs, TorchScript / torch.export programs ----------------


def _two_input_onnx(d: Dirs) -> str:
    """An ONNX model taking input_ids (int64, N x sequence) and attention_mask."""
    import warnings

    import torch

    class Pool(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return (input_ids * attention_mask).float().sum(1, keepdim=True)

    path = d.inp / "two.onnx"
    names = {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask")}
    ids = torch.zeros(1, 4, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pool(), (ids, ids), str(path), input_names=list(names),
                          dynamic_axes=names, opset_version=17, dynamo=False)  # fmt: skip
    return str(path)


def _torchscript(d: Dirs) -> str:
    import torch

    class Pool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 2)

        def forward(self, input_ids, attention_mask):
            return (self.embed(input_ids) * attention_mask.unsqueeze(-1)).sum(1)

    ids = torch.zeros(2, 4, dtype=torch.long)
    torch.jit.save(torch.jit.trace(Pool(), (ids, ids)), d.inp / "pool.pt")
    return str(d.inp / "pool.pt")


def _pickled(d: Dirs) -> str:
    import torch

    torch.save(torch.nn.Linear(4, 3).state_dict(), d.inp / "weights.pt")
    return str(d.inp / "weights.pt")


_IDS = np.random.default_rng(0).integers(0, 9, size=(12, 4))

CASES += [
    # Data for a two-input ONNX model whose ids have one axis too many.
    Case(
        "onnx-input-shape-not-matching-data",
        lambda d: d.search(
            "--model",
            _two_input_onnx(d),
            "--data",
            d.npz(input_ids=_IDS[..., None], attention_mask=_IDS),
        ),  # fmt: skip
        ("--data", "input_ids has shape 12x4x1 but the model takes NxN", "reshape"),
    ),
    # Token ids saved as floats for a model that takes int64.
    Case(
        "onnx-input-dtype-not-castable",
        lambda d: d.search(
            "--model",
            _two_input_onnx(d),
            "--data",
            d.npz(input_ids=_IDS.astype("float32"), attention_mask=_IDS),
        ),  # fmt: skip
        ("input_ids has dtype float32 but the model takes int64", "astype"),
    ),
    # Too few rows to split into judging and calibration parts (no --train-data).
    Case(
        "data-too-few-rows-to-split",
        lambda d: d.search("--model", d.model(), "--data", d.npz(x_val=_rows(5))),
        ("--data", "5 rows are too few to split", "--train-data"),
    ),
    # A judging subset too small to judge anything by.
    Case(
        "judge-rows-too-few",
        lambda d: d.search("--model", d.model(), "--data", d.data(), "--judge-rows", "3"),
        ("--judge-rows 3", "10 or more"),
    ),
    # Calibration data twice: x_calib in --data and a --train-data file.
    Case(
        "data-calib-arrays-and-train-data",
        lambda d: d.search(
            "--model",
            d.model(),
            "--data",
            d.npz(x_val=_rows(12), x_calib=_rows(4)),
            "--train-data",
            d.npz("train.npz", x_val=_rows(12)),
        ),  # fmt: skip
        ("holds x_calib and --train-data is given", "give calibration data once"),
    ),
    # A torch.save file (a state dict): never unpickled, whatever its suffix.
    Case(
        "program-pickled-weights",
        lambda d: d.search("--model", _pickled(d), "--data", d.data()),
        ("weights.pt: a pickled file", "never loaded", "torch.jit.save", "torch.export.save"),
    ),
    # A .pt2 that is no archive at all.
    Case(
        "program-not-a-program-file",
        lambda d: d.search("--model", d.write("model.pt2", "not a program"), "--data", d.data()),
        ("model.pt2: not a TorchScript or torch.export program file", "torch.export.save"),
    ),
    # A TorchScript program given one of its two inputs.
    Case(
        "program-input-missing",
        lambda d: d.search("--model", _torchscript(d), "--data", d.npz(input_ids=_IDS)),
        ("missing array attention_mask for the model's input 'attention_mask'",),
    ),
    # A TorchScript program given inputs it cannot run (floats for token ids).
    Case(
        "program-inputs-it-cannot-run",
        lambda d: d.search(
            "--model",
            _torchscript(d),
            "--data",
            d.npz(input_ids=_rows(12), attention_mask=_rows(12)),
        ),  # fmt: skip
        ("pool.pt: the program does not run on --data's first rows", "forward()"),
    ),
]


class LeftBehind(AssertionError):
    """The one failure an xfail case expects: everything else about its error is right."""


def _snapshot(*folders: Path) -> set[str]:
    """Every file, except SQLite's own companions of a store that existed before (its
    write-ahead log and shared-memory index, present while a connection is open) and the
    lock files beside it: those are not outputs, and nothing in them is half-written."""
    return {
        str(p)
        for folder in folders
        if folder.exists()
        for p in folder.rglob("*")
        if not (
            p.name.endswith(("-wal", "-shm"))
            or (p.name.startswith(".") and p.name.endswith(".db.lock"))
        )
    }


def _params():
    for case in CASES:
        marks = []
        if case.xfail:  # only the files left behind may fail; a wrong message still fails
            marks = [pytest.mark.xfail(strict=True, raises=LeftBehind, reason=case.xfail)]
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: Case, tmp_path, tiny_onnx_files, monkeypatch, capsys
):
    cwd = tmp_path / "cwd"  # a relative path or the default runs/ would land here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(cli._DEBUG, "on", False)
    dirs = Dirs(tmp_path, tiny_onnx_files)
    argv = case.argv(dirs)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["autoaccel", *argv])

    with pytest.raises(SystemExit) as exited:
        cli.main()

    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert exited.value.code == 2, out.err
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert "Traceback" not in out.err + out.out
    for fragment in case.says:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    if (after := _snapshot(tmp_path)) != before:
        raise LeftBehind(f"bad input changed the files: {sorted(after ^ before)}")


def test_debug_shows_the_traceback_of_the_users_own_factory(monkeypatch, tmp_path):
    """`--debug` re-raises the one-line error with the factory's exception as its cause."""
    from autoaccel.errors import UserError

    monkeypatch.setitem(cli._DEBUG, "on", False)
    runs = str(tmp_path / "runs")
    argv = ["--debug", "search", "--workload", "support_workloads:broken", "--runs-dir", runs]
    monkeypatch.setattr(sys, "argv", ["autoaccel", *argv])
    with pytest.raises(UserError) as raised:
        cli.main()
    assert isinstance(raised.value.__cause__, FileNotFoundError)


def test_help_and_good_commands_still_exit_0(monkeypatch, capsys):
    for argv in (["search", "--help"], ["targets", "list"]):
        monkeypatch.setattr(sys, "argv", ["autoaccel", *argv])
        cli.main()  # returns: exit code 0
    assert "--budget" in capsys.readouterr().out


def test_catalogue_has_at_least_25_distinct_cases():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids) >= 25


# --- stores a person must act on (issue 20) -------------------------------------------------


def _newer_store(d: Dirs) -> str:
    """runs/ as an earlier search left it, its optuna.db since upgraded by a newer Optuna
    (a schema revision this Optuna does not know)."""
    import sqlite3

    study = d.store()
    with sqlite3.connect(d.runs / "optuna.db") as con:
        con.execute("update alembic_version set version_num = 'v9.9.0.a'")
    con.close()
    return study


STORE_CASES = [
    # --storage: a store a newer Optuna made: never downgraded or touched; upgrade Optuna.
    Case(
        "storage-made-by-newer-optuna",
        lambda d: d.search("--workload", "digits-cnn", "--study", _newer_store(d)),
        ("optuna.db", "made by a newer Optuna", "schema v9.9.0.a", "pip install -U optuna"),
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in STORE_CASES])
def test_store_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: Case, tmp_path, tiny_onnx_files, monkeypatch, capsys
):
    test_bad_input_is_one_line_exit_2_and_writes_nothing(
        case, tmp_path, tiny_onnx_files, monkeypatch, capsys
    )
