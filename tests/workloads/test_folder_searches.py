"""Issue 17's acceptance on tiny models built from configs (random weights, nothing
downloaded): a search on a BERT-style text classifier, a ViT image classifier and a
DistilBERT sentence encoder, each from a folder and ordinary data files, trains a
layer-dropping student and prunes its heads and FFN, and the trial completes."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest
from support_hf import (
    image_classifier,
    image_folder,
    sentence_embedder,
    sentences,
    text_classifier,
)

import autoaccel

SPACE = """
version: 1
description: a student that is then pruned, on every trial
techniques:
  runtime:
    backend: [onnxruntime]
  distill:
    mode: [student]
    layers: [1]
    steps: [12]
  prune:
    mode: [structured]
    amount: [0.5]
    heads: [0.5]
    finetune_steps: [6]
"""


def _bert(root):
    texts = sentences(60)
    labels = ["pos" if "good" in t or "great" in t else "neg" for t in texts]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(root / "rows.csv", index=False)
    return text_classifier(root / "bert"), root / "rows.csv", {}


def _vit(root):
    return image_classifier(root / "vit"), image_folder(root / "images", per_class=10), {}


def _distilbert(root):
    a, b = sentences(40, 1), sentences(40, 2)
    frame = pd.DataFrame({"text_a": a, "text_b": b, "score": np.arange(40.0)})
    frame.to_json(root / "pairs.jsonl", orient="records", lines=True)
    folder = sentence_embedder(root / "distilbert", kind="distilbert")
    return folder, root / "pairs.jsonl", {"task": "sentence-embedding"}


@pytest.mark.parametrize("make", [_bert, _vit, _distilbert], ids=["bert", "vit", "distilbert"])
def test_a_folder_search_trains_a_student_and_prunes_its_heads(tmp_path, make):
    model, data, options = make(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    result = autoaccel.search(
        model=str(model),
        data=str(data),
        workload_options=options,
        space=str(space),
        budget=1,
        runs_dir=runs,
        measure_seconds=0.02,
        targets=["cpu-local"],
        isolate=False,
    )
    notes = " ".join(result.recommendation.get("notes", []))
    assert "distill" not in notes and "prune" not in notes  # nothing said not to apply
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs / 'optuna.db'}")
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    recipe = trial.user_attrs["recipe"]
    assert recipe["distill.mode"] == "student" and recipe["prune.mode"] == "structured"
    built = " ".join(trial.user_attrs["result"]["notes"])
    assert "1 of 2 layers" in built or "1 layer" in built, built
    assert "trained" in built or "steps" in built, built
    assert json.loads((runs / result.study / "recommendation.json").read_text())["frontier"]
