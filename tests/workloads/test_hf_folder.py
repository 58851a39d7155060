"""A local Hugging Face model folder as a workload: task from config, pooling from the
sentence-transformers files, judging through ONNX, and a search from the command line."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support_hf import (
    image_classifier,
    image_folder,
    sentence_embedder,
    sentences,
    text_classifier,
)

from autoaccel.errors import UserError
from autoaccel.workloads import load_workload, workload_notes
from autoaccel.workloads.hf_folder import read_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    out = {
        "text": text_classifier(root / "tiny-bert"),
        "embed": sentence_embedder(root / "tiny-st"),
        "image": image_classifier(root / "tiny-vit"),
    }
    texts = sentences(40)
    labels = ["pos" if "good" in t or "great" in t else "neg" for t in texts]
    out["csv"] = root / "val.csv"
    pd.DataFrame({"review": texts, "sentiment": labels}).to_csv(out["csv"], index=False)
    a, b = sentences(30, 1), sentences(30, 2)
    out["pairs"] = root / "pairs.jsonl"
    pd.DataFrame({"text_a": a, "text_b": b, "score": np.arange(30.0)}).to_json(
        out["pairs"], orient="records", lines=True
    )
    out["images"] = image_folder(root / "images")
    return out


def _load(model: Path, data: Path, tmp_path: Path, **options):
    return load_workload(None, tmp_path / "cache", model, data, options=options)


def test_task_is_read_from_the_config_or_the_sentence_transformers_files(folders):
    assert read_folder(folders["text"], None).task == "text-classification"
    assert read_folder(folders["image"], None).task == "image-classification"
    st = read_folder(folders["embed"], None)
    assert (st.task, st.pooling, st.normalize) == ("sentence-embedding", "mean", True)


def test_bare_encoder_needs_task_and_then_pools_by_mean(folders, tmp_path):
    bare = Path(shutil.copytree(folders["embed"], tmp_path / "bare"))
    (bare / "modules.json").unlink()
    with pytest.raises(UserError, match="does not say the task .* give --task"):
        read_folder(bare, None)
    folder = read_folder(bare, "sentence-embedding")
    assert (folder.pooling, folder.normalize) == ("mean", False)


def test_a_head_of_another_task_is_refused_unless_its_encoder_is_judged(folders, tmp_path):
    """A token classifier judged as a text classifier would get a random pooler: refused,
    with the way out; as a sentence embedding its encoder's vectors are judged."""
    tagger = Path(shutil.copytree(folders["embed"], tmp_path / "tagger"))
    (tagger / "modules.json").unlink()
    config = json.loads((tagger / "config.json").read_text())
    config["architectures"] = ["BertForTokenClassification"]
    (tagger / "config.json").write_text(json.dumps(config))
    for task in (None, "text-classification"):
        with pytest.raises(UserError, match="a token classification model; .* --task sentence"):
            read_folder(tagger, task)
    assert read_folder(tagger, "sentence-embedding").task == "sentence-embedding"


def test_weights_a_task_needs_but_the_folder_lacks_are_refused(folders, tmp_path):
    """A bare encoder (no pooler, no classifier) given --task text-classification would be
    judged with layers at random initialisation: one line names them instead."""
    import torch
    from support_hf import _bert_config, copy_tokenizer
    from transformers import BertModel

    torch.manual_seed(0)
    bare = tmp_path / "bare-encoder"
    BertModel(_bert_config(), add_pooling_layer=False).save_pretrained(bare)
    copy_tokenizer(bare)
    labelled = tmp_path / "labelled.csv"
    texts = sentences(40)
    pd.DataFrame({"text": texts, "label": [i % 2 for i in range(40)]}).to_csv(labelled)
    wl = _load(bare, labelled, tmp_path, task="text-classification")
    with pytest.raises(UserError, match=r"lacks 4 weight\(s\) \(.*classifier.*start at random"):
        wl.torch_model()


def test_cls_pooling_without_normalize_is_what_the_embedder_returns(tmp_path):
    import torch

    folder = read_folder(sentence_embedder(tmp_path / "cls", "cls", normalize=False), None)
    assert (folder.pooling, folder.normalize) == ("cls", False)
    pairs = tmp_path / "texts.csv"
    pd.DataFrame({"text": sentences(12)}).to_csv(pairs, index=False)
    wl = _load(folder.path, pairs, tmp_path)
    inputs = wl.tokenize((["good day"],))
    tensors = [torch.from_numpy(inputs[n]) for n in wl.input_names]
    with torch.no_grad():
        hidden = wl.torch_model().model(*tensors)[0]
        assert torch.allclose(wl.torch_model()(*tensors), hidden[:, 0])
    assert wl.metric == "teacher_cosine"  # no pairs to rate: agreement with the fp32 model


def test_text_classifier_is_judged_the_same_through_its_onnx_export(folders, tmp_path):
    import onnxruntime as ort

    from autoaccel.builder.onnx_export import export_onnx

    wl = _load(
        folders["text"], folders["csv"], tmp_path, text_column="review", label_column="sentiment"
    )
    assert (wl.output_kind, wl.metric, wl.onnx_model_type) == ("logits", "accuracy", "bert")
    export_onnx(wl.torch_model(), wl, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    teacher = wl.evaluate(wl.teacher_predict)
    assert wl.evaluate(lambda x: session.run(None, x)[0]) == pytest.approx(teacher)
    judged = set(wl.judge.texts())
    assert len(wl.judge) == 32 and not judged & set(wl.train.texts())
    assert wl.latency_inputs(3)["input_ids"].shape == (3, wl.seq_len)
    batches = wl.training_batches()
    assert sum(len(b[1]) for b in batches) == len(wl.train)  # labels travel with the rows
    assert any("judging on 32 rows of val.csv" in n for n in workload_notes(wl))


def test_pair_classification_feeds_segment_ids(folders, tmp_path):
    data = tmp_path / "nli.csv"
    a, b = sentences(20, 1), sentences(20, 2)
    pd.DataFrame({"premise": a, "hypothesis": b, "label": [i % 2 for i in range(20)]}).to_csv(
        data, index=False
    )
    wl = _load(folders["text"], data, tmp_path, text_column="premise,hypothesis")
    assert wl.input_names == ("input_ids", "attention_mask", "token_type_ids")
    segments = wl.tokenize(wl.judge.inputs)["token_type_ids"]
    assert segments.max() == 1  # the second text of each pair is marked
    assert 0 <= wl.evaluate(wl.teacher_predict)["accuracy"] <= 1


def test_judge_rows_judges_a_fixed_subset_of_a_table_each_class_in_its_share(folders, tmp_path):
    cols = {"text_column": "review", "label_column": "sentiment"}
    full = _load(folders["text"], folders["csv"], tmp_path, **cols)
    wl = _load(folders["text"], folders["csv"], tmp_path, judge_rows=12, **cols)
    assert len(full.judge) == 32 and len(wl.judge) == 12
    assert set(wl.judge.texts()) <= set(full.judge.texts())
    assert wl.train.texts() == full.train.texts()  # the rows left out train nothing
    share = np.unique(full.judge.labels, return_counts=True)[1] * 12 / 32
    assert np.abs(np.unique(wl.judge.labels, return_counts=True)[1] - share).max() < 1
    assert any("--judge-rows 12: 12 of those 32 judging rows" in n for n in workload_notes(wl))
    assert wl.fingerprint() != full.fingerprint()


def test_sentence_pairs_are_judged_by_spearman_with_the_score(folders, tmp_path):
    wl = _load(folders["embed"], folders["pairs"], tmp_path)
    assert (wl.output_kind, wl.metric) == ("embedding", "spearman")
    figures = wl.evaluate(wl.teacher_predict)
    assert -1 <= figures["spearman"] <= 1 and figures["teacher_cosine"] == pytest.approx(1.0)
    assert not set(wl.judge.texts()) & set(wl.train.texts())
    assert wl.training_batches()[0][1] is None


def test_images_of_mixed_sizes_are_prepared_by_the_image_processor(folders, tmp_path):
    wl = _load(folders["image"], folders["images"], tmp_path)
    assert wl.pixels("judge").shape[1:] == (3, 16, 16) and len(wl.judge) == 10
    assert 0 <= wl.evaluate(wl.teacher_predict)["accuracy"] <= 1
    assert wl.training_batches()[0][0]["pixel_values"].shape[1:] == (3, 16, 16)


def test_unknown_architecture_is_refused(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForTimeTravel"]})
    )
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="'BertForTimeTravel', which transformers .* not know"):
        read_folder(folder, None)


README = Path(__file__).parents[2] / "README.md"


def _readme_example() -> tuple[str, str]:
    """The Python block and the first command of the README's Hugging Face section."""
    section = README.read_text().split("### Your own Hugging Face model, no Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()[0]
    return code, command


def test_readme_example_searches_a_csv_from_the_command_line(tmp_path, monkeypatch, capsys):
    """The README's worked example as written (its model and CSV, its command), with a tiny
    space and budget: `--model FOLDER --data reviews.csv` with named columns, end to end."""
    from autoaccel import cli

    code, command = _readme_example()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    space = tmp_path / "space.yaml"
    space.write_text("version: 1\ntechniques:\n  quantize:\n    mode: [none, int8_dynamic]\n")
    argv = shlex.split(command)
    argv += ["--space", str(space), "--budget", "2", "--measure-seconds", "0.03"]
    argv += ["--targets", "cpu-local", "--no-isolate"]  # the last of an option counts
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setitem(cli._DEBUG, "on", True)
    cli.main()
    out = " ".join(capsys.readouterr().out.split())
    assert "judging on 160 rows of reviews.csv; 40 other rows calibrate and train" in out
    assert (tmp_path / "runs" / "tiny-bert-space" / "recommendation.json").exists()
    import optuna

    study = optuna.load_study(study_name="tiny-bert-space", storage="sqlite:///runs/optuna.db")
    assert study.user_attrs["workload_spec"]["options"] == {
        "text_column": "review",
        "label_column": "sentiment",
    }
    assert len(study.trials) == 2


@pytest.mark.slow
def test_minilm_folder_scores_pairs_as_the_minilm_workload_does(tmp_path):
    """The bundled all-MiniLM-L6-v2 folder, given minilm's WordSim-353 and Lee pairs as
    files, scores exactly `--workload minilm`'s figures (Lee at minilm's 128 tokens)."""
    from autoaccel.workloads.minilm import MiniLMWorkload, model_dir
    from autoaccel.workloads.minilm_data import judging_data, training_sentences

    data = judging_data()
    (pairs, human), (i, j, lee_human), lee = data["wordsim353"], data["lee_pairs"], data["lee"]
    ws, lee_csv, train = tmp_path / "ws.csv", tmp_path / "lee.csv", tmp_path / "train.csv"
    pd.DataFrame({"text_a": [p[0] for p in pairs], "text_b": [p[1] for p in pairs]}).assign(
        score=human
    ).to_csv(ws, index=False)
    pd.DataFrame({"text_a": [lee[k] for k in i], "text_b": [lee[k] for k in j]}).assign(
        score=lee_human
    ).to_csv(lee_csv, index=False)
    pd.DataFrame({"text": list(training_sentences())}).to_csv(train, index=False)
    minilm = MiniLMWorkload(tmp_path / "cache")
    expected = minilm.evaluate(minilm.teacher_predict)
    for path, figure, length in (
        (ws, "wordsim353_spearman", None),
        (lee_csv, "lee_spearman", 128),
    ):
        wl = _load(model_dir(), path, tmp_path, train_data=str(train), max_length=length)
        assert wl.evaluate(wl.teacher_predict)["spearman"] == expected[figure]


def test_a_one_channel_image_model_gets_grey_pixels(folders, tmp_path):
    """A model of num_channels 1 (digits, X-rays) is fed its images in greyscale: RGB
    pixels made its processor raise ("mean must have 3 elements")."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    names = {0: "circle", 1: "square"}
    config = ViTConfig(image_size=16, patch_size=8, num_channels=1, hidden_size=32,
                       num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       id2label=names, label2id={v: k for k, v in names.items()})  # fmt: skip
    grey = tmp_path / "grey-vit"
    ViTForImageClassification(config).save_pretrained(grey)
    ViTImageProcessor(
        size={"height": 16, "width": 16}, image_mean=[0.5], image_std=[0.5]
    ).save_pretrained(grey)
    wl = _load(grey, folders["images"], tmp_path)
    assert wl.latency_inputs(1)["pixel_values"].shape == (1, 1, 16, 16)
    assert any("to 1x16x16" in n for n in workload_notes(wl))
