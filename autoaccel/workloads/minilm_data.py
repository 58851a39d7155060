"""The gensim text files MiniLM is judged and trained on, and the split between them.

Data split (all files from `gensim.test.utils.datapath`, fixed, no randomness):

- judging only: `lee.cor` + `similarities0-1.txt` (document similarity, 1225 pairs),
  `wordsim353.tsv` and `simlex999.txt` (word similarity), and `pang_lee_polarity.cor`
  (200 held-out texts for agreement with the fp32 teacher's embeddings);
- training / calibration only: sentences of `lee_background.cor` (never any judging text).

Splits (`MiniLMWorkload(split=...)`), for checking a search's winner on data it never saw:

- `all` (the `minilm` workload): every pair above;
- `search` (`minilm-search`) and `holdout`: two disjoint halves of the judging *texts*, fixed
  and deterministic, so a candidate judged on one half never embeds a text of the other.
  Lee: the even-numbered documents vs the odd-numbered ones, each half judged on the 300
  pairs inside it (the 625 pairs across halves count only in `all`). WordSim-353 and
  SimLex-999: each task's word graph (a word is a node, a rated pair an edge) is cut into its
  connected components, which are dealt, largest first, to whichever half has fewer pairs so
  far; so no word of a task is in both halves and every pair is in one (search / holdout:
  wordsim 177 / 176, simlex 500 / 499 pairs). A word rated in both tasks may fall in
  different halves of the two.
  Teacher agreement (`pang_lee_polarity`) is a side figure no search selects on; every split
  reports it on all 200 texts.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

SPLITS = ("all", "search", "holdout")


def read_lines(name: str, encoding: str = "utf-8") -> list[str]:
    """The stripped, non-empty lines of one of gensim's test-data files."""
    from gensim.test.utils import datapath

    with open(datapath(name), encoding=encoding) as f:
        return [line.strip() for line in f.read().splitlines() if line.strip()]


def _read_pairs(name: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Word pairs and human scores of a `# comment` + `w1<TAB>w2<TAB>score` file."""
    pairs, scores = [], []
    for line in read_lines(name):
        if line.startswith("#"):
            continue
        w1, w2, score = line.split("\t")[:3]
        pairs.append((w1, w2))
        scores.append(float(score))
    return pairs, np.asarray(scores)


@functools.cache
def judging_data() -> dict[str, Any]:
    """Everything `evaluate` judges on; read once per process (small text files)."""
    lee = read_lines("lee.cor", encoding="latin-1")  # one document has a latin-1 pound sign
    from gensim.test.utils import datapath

    sims = np.loadtxt(datapath("similarities0-1.txt"), delimiter="\t")
    if sims.shape != (len(lee), len(lee)):
        raise ValueError(f"lee similarities {sims.shape} do not match {len(lee)} documents")
    i, j = np.triu_indices(len(lee), k=1)
    polarity = [
        line.split(" ", 1)[1].strip() if line.startswith("__label__") else line
        for line in read_lines("pang_lee_polarity.cor", encoding="latin-1")
    ]
    return {
        "lee": lee,
        "lee_pairs": (i, j, sims[i, j]),
        "wordsim353": _read_pairs("wordsim353.tsv"),
        "simlex999": _read_pairs("simlex999.txt"),
        "polarity": polarity,
    }


def _word_halves(pairs: list[tuple[str, str]]) -> np.ndarray:
    """True for the pairs in the `search` half: connected components of the word graph dealt,
    largest first (ties: alphabetically first word), to the half with fewer pairs so far."""
    parent: dict[str, str] = {}

    def root(w: str) -> str:
        while parent.setdefault(w, w) != w:
            parent[w] = parent[parent[w]]
            w = parent[w]
        return w

    for w1, w2 in pairs:
        parent[root(w1)] = root(w2)
    members: dict[str, list[int]] = {}
    for k, (w1, _) in enumerate(pairs):
        members.setdefault(root(w1), []).append(k)
    first = {r: min(w for k in ks for w in pairs[k]) for r, ks in members.items()}
    search = np.zeros(len(pairs), dtype=bool)
    counts = [0, 0]  # pairs in search, holdout
    for r in sorted(members, key=lambda r: (-len(members[r]), first[r])):
        half = 0 if counts[0] <= counts[1] else 1
        search[members[r]] = half == 0
        counts[half] += len(members[r])
    return search


@functools.cache
def split_data(split: str) -> dict[str, Any]:
    """The judging data of one split (see the module docstring); `all` is `judging_data()`."""
    if split not in SPLITS:
        raise ValueError(f"unknown MiniLM split {split!r}; use one of {SPLITS}")
    data = judging_data()
    if split == "all":
        return data
    keep = [k for k in range(len(data["lee"])) if k % 2 == (0 if split == "search" else 1)]
    i, j, human = data["lee_pairs"]
    sims = np.full((len(data["lee"]),) * 2, np.nan)
    sims[i, j] = human
    a, b = np.triu_indices(len(keep), k=1)
    out = {
        "lee": [data["lee"][k] for k in keep],
        "lee_pairs": (a, b, sims[np.asarray(keep)[a], np.asarray(keep)[b]]),
        "polarity": data["polarity"],
    }
    for task in ("wordsim353", "simlex999"):
        pairs, scores = data[task]
        mask = _word_halves(pairs) == (split == "search")
        out[task] = ([p for p, m in zip(pairs, mask, strict=True) if m], scores[mask])
    return out


def judging_texts() -> list[str]:
    """Every text `evaluate` embeds (for checking that training never sees them)."""
    data = judging_data()
    words = {w for task in ("wordsim353", "simlex999") for pair in data[task][0] for w in pair}
    return data["lee"] + data["polarity"] + sorted(words)


@functools.cache
def training_sentences() -> tuple[str, ...]:
    """Sentences of lee_background.cor, minus any that appear inside a judging text."""
    docs = read_lines("lee_background.cor")
    sentences = [s.strip() for d in docs for s in re.split(r"(?<=[.!?])\s+", d)]
    judging = [t for t in judging_texts() if " " in t]  # documents and reviews, not words
    return tuple(s for s in sentences if len(s.split()) >= 3 and not any(s in t for t in judging))
