"""The MiniLM judging split: `minilm-search` sees one fixed half of the judging texts, the
held-out half is disjoint from it, and `minilm` (all pairs) is exactly what it was."""

from __future__ import annotations

import numpy as np
import pytest

from autoaccel.workloads import load_workload
from autoaccel.workloads.minilm import MiniLMWorkload
from autoaccel.workloads.minilm_data import _word_halves, judging_data, split_data


def _texts(data: dict) -> dict[str, set[str]]:
    words = {t: {w for pair in data[t][0] for w in pair} for t in ("wordsim353", "simlex999")}
    return {"lee": set(data["lee"]), **words}


def test_halves_are_disjoint_in_texts_and_cover_every_rated_word_pair():
    full, search, hold = judging_data(), split_data("search"), split_data("holdout")
    a, b = _texts(search), _texts(hold)
    for task in a:
        assert a[task] and b[task] and not a[task] & b[task], task
    assert len(search["lee"]) == len(hold["lee"]) == len(full["lee"]) // 2
    n = len(search["lee"])
    assert len(search["lee_pairs"][0]) == len(hold["lee_pairs"][0]) == n * (n - 1) // 2
    for task in ("wordsim353", "simlex999"):
        pairs, scores = full[task]
        got = sorted(search[task][0] + hold[task][0])
        assert got == sorted(pairs)  # every pair in exactly one half
        assert len(search[task][1]) + len(hold[task][1]) == len(scores)
        assert abs(len(search[task][0]) - len(hold[task][0])) <= 0.02 * len(pairs)  # balanced


def test_split_keeps_each_pair_with_its_own_human_score():
    full = judging_data()
    i, j, human = full["lee_pairs"]
    by_docs = {(full["lee"][a], full["lee"][b]): h for a, b, h in zip(i, j, human, strict=True)}
    for split in ("search", "holdout"):
        data = split_data(split)
        a, b, h = data["lee_pairs"]
        for x, y, score in zip(a, b, h, strict=True):
            assert by_docs[(data["lee"][x], data["lee"][y])] == score
        for task in ("wordsim353", "simlex999"):
            scores: dict = {}  # wordsim353 rates ("money", "cash") twice
            for pair, score in zip(*full[task], strict=True):
                scores.setdefault(pair, []).append(score)
            assert all(s in scores[p] for p, s in zip(*data[task], strict=True))


def test_word_halves_follow_connected_components_deterministically():
    pairs = [("a", "b"), ("b", "c"), ("x", "y"), ("c", "d"), ("p", "q"), ("q", "r")]
    mask = _word_halves(pairs)
    # components {a,b,c,d}: 3 pairs -> search; {p,q,r}: 2 -> holdout; {x,y}: 1 -> holdout
    assert mask.tolist() == [True, True, False, True, False, False]
    assert (_word_halves(list(pairs)) == mask).all()


def test_search_workload_embeds_only_its_own_half(tmp_path):
    """A candidate judged by `minilm-search` never sees a held-out text (nor scores on one)."""
    seen: list[str] = []
    workload = load_workload("minilm-search", tmp_path)
    assert isinstance(workload, MiniLMWorkload) and workload.split == "search"
    rng = np.random.default_rng(0)

    def record_embed(predict, texts):
        seen.extend(texts)
        return rng.standard_normal((len(texts), 4)).astype(np.float32)

    workload.embed = record_embed
    workload.teacher_embeddings = lambda texts=None, tag="": rng.standard_normal(
        (200 if texts is None else len(texts), 4)
    ).astype(np.float32)
    scores = workload.evaluate(lambda inputs: None)
    assert set(scores) >= {"task_quality", "lee_spearman", "teacher_cosine"}
    held = split_data("holdout")
    assert not set(seen) & set(held["lee"])
    search = split_data("search")
    search_words = _texts(search)["wordsim353"] | _texts(search)["simlex999"]
    words = {t for t in seen if " " not in t and t not in search["polarity"]}
    assert words == search_words


def test_names_and_fingerprints_keep_minilm_unchanged(tmp_path):
    full = MiniLMWorkload(tmp_path)
    assert full.name == "minilm" and full.split == "all"
    assert set(full.identity()) == {"model", "package_version", "max_length", "protocol"}
    assert split_data("all") is judging_data()
    search = load_workload("minilm-search", tmp_path)
    hold = MiniLMWorkload(tmp_path, split="holdout")
    assert (search.name, hold.name) == ("minilm-search", "minilm-holdout")
    prints = {w.fingerprint() for w in (full, search, hold)}
    assert len(prints) == 3  # no cached figure crosses splits
    with pytest.raises(ValueError, match="split"):
        MiniLMWorkload(tmp_path, split="train")


def test_minilm_can_be_judged_by_teacher_agreement_instead_of_task_quality(tmp_path):
    from autoaccel.errors import UserError
    from autoaccel.workloads.minilm import MiniLMWorkload

    workload = MiniLMWorkload(tmp_path)
    workload.choose_metric(None)
    assert workload.metric == "task_quality"
    workload.choose_metric("teacher_cosine")
    assert workload.metric == "teacher_cosine"
    assert "existing index stays valid" in workload.metric_description
    with pytest.raises(UserError, match="reports task_quality, teacher_cosine"):
        MiniLMWorkload(tmp_path).choose_metric("cosine")
