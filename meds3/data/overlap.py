"""Contamination check: seed questions that duplicate evaluation questions.

Two questions are compared on their *comparable text*: the question stem followed by the
texts of its options **sorted** (option letters dropped), so a copy with its options
reordered compares equal. The supporting context (PubMedQA abstracts) and the answer are
not part of it. Text is normalized by :func:`normalize` (Unicode NFKC, lowercase,
punctuation to spaces except inside numbers, whitespace collapsed).

* **exact** duplicates: equal normalized comparable texts (found by hashing).
* **near** duplicates: word ``n``-gram overlap. The score of a pair is the overlap
  coefficient ``|A & B| / min(|A|, |B|)`` of the two n-gram sets (how much of the shorter
  question the longer one contains), flagged at ``score >= threshold``. The default
  ``n = 5`` (with threshold 0.5) still finds a stem with a few words changed (every changed
  word breaks at most ``n`` grams; with the 8- to 13-grams used for web-scale contamination
  a reworded vignette loses most of its grams: 0.75 at 5, 0.53 at 13 in the tests), while
  a 5-word sequence shared by unrelated questions is rare once the boilerplate grams below
  are discounted. A question with fewer than ``n``
  words is one gram of all its words: it is a near duplicate of any question containing
  those words in that order (score 1.0); one of fewer than 3 words ("Hypertension?") only
  of an exact copy.
* Numbers must match for a near duplicate: the numbers of the shorter question's stem, in
  order, must occur one after another among the longer one's (options left out: a copy with
  an option more or less is still a near duplicate). Template siblings (the generated
  calculator seeds: "weight 81.4 kg" vs "weight 70.2 kg") ask for different answers and are
  not flagged. Exact duplicates compare numbers as text anyway.

Near duplicates are found with an inverted index from n-gram to evaluation questions:
each seed question counts, per evaluation question, the grams they share, and only
candidates whose bound can reach the threshold are scored exactly -- never all seed x
evaluation pairs. Grams held by more than ``max(100, 1%)`` of the evaluation questions
(boilerplate such as "which of the following is the most likely") do not generate
candidates; they still count in the exact score.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from meds3.data.question import MedQuestion

DEFAULT_NGRAM = 5
DEFAULT_THRESHOLD = 0.5
MIN_SHORT_WORDS = 3  # a question of fewer words is checked for exact duplicates only

# Punctuation and symbols become spaces, except a '.' or ',' between digits (81.4 stays one word).
_PUNCT = re.compile(r"(?<!\d)[.,]|[.,](?!\d)|[^\w\s.,]|_")
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*$")


def normalize(text: str) -> str:
    """Unicode NFKC, lowercase, punctuation and symbols to spaces (a decimal point or comma
    between digits is kept), whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return " ".join(_PUNCT.sub(" ", text).split())


def comparable_text(question: MedQuestion) -> str:
    """The normalized text two questions are compared on: the stem, then the option texts sorted."""
    options = sorted(normalize(t) for t in (question.options or {}).values())
    return " ".join([normalize(question.question), *[o for o in options if o]]).strip()


@dataclass
class OverlapPair:
    """One seed question that duplicates one evaluation question."""

    seed_file: str
    seed_id: str
    eval_file: str
    eval_id: str
    kind: str  # "exact" or "near"
    score: float  # 1.0 for exact; the n-gram overlap coefficient for near

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OverlapReport:
    """Every flagged (seed, evaluation) pair, and what was compared."""

    pairs: list[OverlapPair] = field(default_factory=list)
    seed_counts: dict[str, int] = field(default_factory=dict)  # seed file -> questions compared
    eval_counts: dict[str, int] = field(default_factory=dict)  # evaluation file -> questions compared
    ngram: int = DEFAULT_NGRAM
    threshold: float = DEFAULT_THRESHOLD

    @property
    def found(self) -> bool:
        return bool(self.pairs)

    def seed_ids(self) -> list[str]:
        """Ids of the flagged seed questions, each once, in the order of the pairs."""
        return list(dict.fromkeys(p.seed_id for p in self.pairs))

    def by_eval_file(self) -> dict[str, dict[str, int]]:
        """Per evaluation file: flagged pairs by kind and the number of distinct seed questions."""
        out: dict[str, dict[str, int]] = {}
        for path in self.eval_counts:
            mine = [p for p in self.pairs if p.eval_file == path]
            out[path] = {"exact": sum(p.kind == "exact" for p in mine), "near": sum(p.kind == "near" for p in mine),
                         "seed_questions": len({(p.seed_file, p.seed_id) for p in mine})}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"ngram": self.ngram, "threshold": self.threshold, "seeds": dict(self.seed_counts),
                "evals": dict(self.eval_counts), "by_eval_file": self.by_eval_file(),
                "flagged_seed_ids": self.seed_ids(), "pairs": [p.to_dict() for p in self.pairs]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def summary(self, max_pairs: int = 10) -> str:
        """A few lines: totals, counts per evaluation file, the first ``max_pairs`` pairs."""
        lines = [f"compared {sum(self.seed_counts.values())} seed questions ({len(self.seed_counts)} file(s)) "
                 f"with {sum(self.eval_counts.values())} evaluation questions ({len(self.eval_counts)} file(s)); "
                 f"{self.ngram}-grams, threshold {self.threshold}: {len(self.pairs)} overlapping pair(s), "
                 f"{len(self.seed_ids())} seed question(s)"]
        for path, c in self.by_eval_file().items():
            lines.append(f"  {path}: {c['exact']} exact, {c['near']} near ({c['seed_questions']} seed questions)")
        for p in self.pairs[:max_pairs]:
            lines.append(f"  {p.kind:5s} {p.score:.2f}  {p.seed_file}:{p.seed_id}  ~  {p.eval_file}:{p.eval_id}")
        if len(self.pairs) > max_pairs:
            lines.append(f"  ... {len(self.pairs) - max_pairs} more")
        return "\n".join(lines)


def _grams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _numbers(words: Iterable[str]) -> tuple[str, ...]:
    return tuple(w for w in words if _NUMBER.match(w))


def _numbers_match(shorter: tuple[str, ...], longer: tuple[str, ...]) -> bool:
    """Whether ``shorter``'s numbers occur, in order and one after another, among ``longer``'s."""
    n = len(shorter)
    return any(longer[i:i + n] == shorter for i in range(len(longer) - n + 1))


class _Item:
    __slots__ = ("file", "id", "key", "words", "grams", "numbers")

    def __init__(self, file: str, question: MedQuestion, n: int):
        text = comparable_text(question)
        self.file, self.id = file, str(question.id)
        self.key = hashlib.sha1(text.encode("utf-8")).hexdigest()
        self.words = text.split()
        self.grams = _grams(self.words, n)
        self.numbers = _numbers(normalize(question.question).split())  # the stem's: options may differ


Files = Sequence[tuple[str, Sequence[MedQuestion]]]


def find_overlaps(seeds: Files, evals: Files,
                  ngram: int = DEFAULT_NGRAM, threshold: float = DEFAULT_THRESHOLD) -> OverlapReport:
    """Seed questions that duplicate evaluation questions, exactly or nearly (see the module docstring).

    Args:
        seeds: ``(file name, questions)`` per seed file.
        evals: ``(file name, questions)`` per evaluation file.
        ngram: word n-gram size of the near-duplicate check (>= 1).
        threshold: overlap coefficient at which a pair is a near duplicate, in (0, 1];
            above 1 turns the near-duplicate check off (exact duplicates only).

    Returns:
        The report; a seed question with both an exact and a near match to the same
        evaluation question is listed once, as exact. Pairs are in seed order.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    report = OverlapReport(ngram=ngram, threshold=threshold)
    items_e: list[_Item] = []
    for path, qs in evals:
        report.eval_counts[path] = report.eval_counts.get(path, 0) + len(qs)
        items_e += [_Item(path, q, ngram) for q in qs]
    exact: dict[str, list[int]] = defaultdict(list)
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)  # gram -> evaluation questions holding it
    for j, e in enumerate(items_e):
        exact[e.key].append(j)
        for g in e.grams:
            index[g].append(j)
    common = max(100, len(items_e) // 100)  # grams above this document frequency make no candidates
    short_index: dict[int, dict[tuple[str, ...], set[int]]] = {}  # length L -> L-gram -> evals (short seeds)
    short_evals: dict[int, dict[tuple[str, ...], list[int]]] = defaultdict(lambda: defaultdict(list))
    for j, e in enumerate(items_e):  # evaluation questions shorter than n words, by length and words
        if MIN_SHORT_WORDS <= len(e.words) < ngram:
            short_evals[len(e.words)][tuple(e.words)].append(j)

    for path, qs in seeds:
        report.seed_counts[path] = report.seed_counts.get(path, 0) + len(qs)
        for q in qs:
            s = _Item(path, q, ngram)
            flagged: dict[int, tuple[str, float]] = {j: ("exact", 1.0) for j in exact.get(s.key, ())}
            if threshold <= 1 and s.words:
                scores: dict[int, float] = {}
                if len(s.words) < ngram:  # a short seed: near any evaluation question containing its words
                    L = len(s.words)
                    if L not in short_index:
                        built: dict[tuple[str, ...], set[int]] = defaultdict(set)
                        for j, e in enumerate(items_e):
                            for g in _grams(e.words, L):
                                built[g].add(j)
                        short_index[L] = built
                    for j in short_index[L].get(tuple(s.words), ()) if L >= MIN_SHORT_WORDS else ():
                        scores[j] = 1.0
                else:
                    counts: Counter[int] = Counter()
                    frequent = 0
                    for g in s.grams:
                        posting = index.get(g)
                        if not posting:
                            continue
                        if len(posting) > common:
                            frequent += 1
                            continue
                        counts.update(posting)
                    for j, shared in counts.items():
                        e = items_e[j]
                        denom = min(len(s.grams), len(e.grams))
                        if (shared + frequent) / denom < threshold:
                            continue  # not even every common gram shared would reach the threshold
                        score = len(s.grams & e.grams) / denom
                        if score >= threshold:
                            scores[j] = score
                for L, by_words in short_evals.items():  # short evaluation questions this seed contains
                    if L <= len(s.words):
                        for g in _grams(s.words, L):
                            for j in by_words.get(g, ()):
                                scores[j] = 1.0
                for j, score in scores.items():
                    e = items_e[j]
                    shorter, longer = (s, e) if len(s.words) <= len(e.words) else (e, s)
                    if j not in flagged and _numbers_match(shorter.numbers, longer.numbers):
                        flagged[j] = ("near", round(score, 4))
            for j in sorted(flagged):
                kind, score = flagged[j]
                e = items_e[j]
                report.pairs.append(OverlapPair(s.file, s.id, e.file, e.id, kind, score))
    return report


def check_files(seed_paths: Sequence[str | os.PathLike], eval_paths: Sequence[str | os.PathLike],
                ngram: int = DEFAULT_NGRAM, threshold: float = DEFAULT_THRESHOLD,
                format: str = "auto") -> OverlapReport:
    """:func:`find_overlaps` of question files, each read with :func:`meds3.data.load_questions`.

    Raises:
        DataError: a missing or malformed file.
    """
    from meds3.data.loaders import load_questions

    def load(paths):
        return [(str(p), list(load_questions(p, format=format))) for p in paths]

    return find_overlaps(load(seed_paths), load(eval_paths), ngram=ngram, threshold=threshold)
