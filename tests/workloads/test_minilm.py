"""The MiniLM workload: the real bundled model judged on gensim's human-rated data, offline."""

from __future__ import annotations

import numpy as np
import pytest

from autoaccel.workloads.minilm import MiniLMWorkload, model_dir
from autoaccel.workloads.minilm_data import judging_texts


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> MiniLMWorkload:
    return MiniLMWorkload(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def teacher_scores(workload) -> dict[str, float]:
    return workload.evaluate(workload.teacher_predict)


def test_teacher_scores_are_plausible_and_agree_with_itself(workload, teacher_scores):
    s = teacher_scores
    assert 0.4 < s["lee_spearman"] < 0.7
    assert 0.6 < s["wordsim353_spearman"] < 0.85
    assert 0.3 < s["simlex999_spearman"] < 0.6
    mean = np.mean([s["lee_spearman"], s["wordsim353_spearman"], s["simlex999_spearman"]])
    assert s["task_quality"] == pytest.approx(mean)
    assert s[workload.metric] == s["task_quality"]
    assert s["teacher_cosine"] > 0.999
    assert s["teacher_cosine"] == min(s["teacher_cosine_reviews"], s["teacher_cosine_words"])
    assert s["teacher_recall_at_10"] == 1.0
    folder = workload.cache_dir / "workloads"
    reviews = folder / f"minilm-{workload.fingerprint()}-teacher.npy"
    assert np.load(reviews).shape == (200, 384)
    words = np.load(folder / f"minilm-{workload.fingerprint()}-teacher-words.npy")
    assert words.shape[1] == 384 and words.shape[0] > 1000  # WordSim-353 + SimLex-999 words


def test_random_embeddings_score_far_below_the_teacher(workload, teacher_scores):
    rng = np.random.default_rng(0)

    def noise(inputs):
        return rng.standard_normal((len(inputs["input_ids"]), 384)).astype(np.float32)

    s = workload.evaluate(noise)
    assert s["task_quality"] < teacher_scores["task_quality"] - 0.35
    assert abs(s["task_quality"]) < 0.15
    assert s["teacher_cosine"] < 0.2
    assert s["teacher_recall_at_10"] < 0.3


def test_evaluate_rejects_a_predict_that_drops_rows(workload):
    with pytest.raises(ValueError, match="shape"):
        workload.evaluate(lambda inputs: np.zeros((1, 384), dtype=np.float32))


def test_evaluate_fails_on_non_finite_embeddings(workload):
    def broken(inputs):
        return np.full((len(inputs["input_ids"]), 384), np.nan, dtype=np.float32)

    with pytest.raises(ValueError, match="non-finite"):
        workload.evaluate(broken)


def test_latency_inputs_are_full_max_length_int64(workload):
    one = workload.latency_inputs(1)
    assert set(one) == set(workload.input_names)
    for name in workload.input_names:
        assert one[name].shape == (1, 128) and one[name].dtype == np.int64
    assert one["attention_mask"].all()  # real tokens throughout: no padding to skip
    four = workload.latency_inputs(4)
    assert four["input_ids"].shape == (4, 128)
    assert (four["input_ids"] == one["input_ids"]).all()


def test_calibration_batches_are_fixed_training_sentences(workload):
    batches = workload.calibration_inputs()
    assert len(batches) == 8
    for batch in batches:
        assert batch["input_ids"].shape == (8, 128) and batch["input_ids"].dtype == np.int64
        assert batch["attention_mask"].sum(axis=1).min() > 3  # CLS + SEP + real words
    assert len({b["input_ids"].tobytes() for b in batches}) == 8  # distinct sentences
    again = workload.calibration_inputs()
    assert all(
        (a["input_ids"] == b["input_ids"]).all() for a, b in zip(batches, again, strict=True)
    )


def test_no_training_text_equals_or_is_contained_in_a_judging_text(workload):
    training = workload.training_texts()
    judging = judging_texts()
    assert len(training) > 2000 and len(judging) > 1500
    judged = set(judging)
    assert not [t for t in training if t in judged]
    blob = "\n".join(judging)
    assert not [t for t in training if t in blob]


def test_identity_separates_protocol_settings(workload, tmp_path):
    ident = workload.identity()
    assert ident["max_length"] == 128 and ident["protocol"] and ident["package_version"]
    assert MiniLMWorkload(tmp_path).fingerprint() == workload.fingerprint()
    assert MiniLMWorkload(tmp_path, max_length=64).fingerprint() != workload.fingerprint()


def test_onnx_export_keeps_the_mask_and_dynamic_axes(workload, tmp_path):
    import onnxruntime as ort
    import torch

    model = workload.torch_model()
    example = workload.latency_inputs(1)  # all-ones mask: the trace must not bake it in
    path = tmp_path / "minilm.onnx"
    axes = {**workload.dynamic_axes, "embedding": {0: "batch"}}
    torch.onnx.export(
        model,
        tuple(torch.from_numpy(example[n]) for n in workload.input_names),
        str(path),
        input_names=list(workload.input_names),
        output_names=["embedding"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = workload.tokenize(["bushfires near Sydney", "a cat", "the minister said today"])
    assert batch["attention_mask"].min() == 0  # padded, shorter than the export's 128
    got = session.run(None, batch)[0]
    np.testing.assert_allclose(got, workload.teacher_predict(batch), atol=1e-4)


def test_wrapper_reproduces_sentence_transformers(workload):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(model_dir()), device="cpu")
    reference.max_seq_length = workload.max_length
    texts = ["tiger", "A new blaze near Goulburn has closed the Hume Highway.", judging_texts()[0]]
    want = reference.encode(texts, convert_to_numpy=True)
    got = workload.teacher_predict(workload.tokenize(texts))
    assert (np.sum(want * got, axis=1) > 0.999).all()
