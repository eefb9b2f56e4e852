"""``run_eval`` and ``meds3 eval``: exact accuracies on a scripted answer table, resume,
rescore with a PRM, outputs; then a small end-to-end run on tiny-random-llama."""

from __future__ import annotations

import json
import re

import pytest
from testing_utils import require_tiny_model

from meds3.cli import main
from meds3.config import ConfigError, load_config
from meds3.engines.types import GenerationResult, Sample
from meds3.eval import EvalConfig, n_grid, read_responses, run_eval

OPTIONS = {"A": "one", "B": "two", "C": "three", "D": "four"}
# question -> (gold, greedy answer, the 4 sampled answers, each sample's PRM score r_i)
TABLE = {
    "q1": ("A", "A", ["A", "B", "B", None], [0.9, 0.3, 0.3, 0.99]),
    "q2": ("C", "C", ["C", "C", "D", "D"], [0.2, 0.2, 0.5, 0.5]),
    "q3": ("B", "B", ["B", "B", "B", "A"], [0.6, 0.6, 0.6, 0.9]),
    "q4": ("D", None, [None, None, None, None], [0.5, 0.5, 0.5, 0.5]),
}


def text_of(ans):
    return "I am not sure." if ans is None else f"Reasoning.\n\nStep 2: The answer is {ans}."


def write_bench(path, table=None):
    """A benchmark file of the table's questions (``table`` default :data:`TABLE`); returns ``path``."""
    path.write_text("".join(json.dumps({"id": q, "question": f"Question {q}: which number?", "options": OPTIONS,
                                        "answer": gold}) + "\n" for q, (gold, *_) in (table or TABLE).items()))
    return path


class TableEngine:
    """Writes the table's answers (``table`` default :data:`TABLE`): sample j of a question gets
    its j-th answer; greedy (temperature 0) its greedy answer. Five tokens per response."""

    tokenizer = None

    def __init__(self, table=None):
        self.table = table or TABLE
        self.questions_seen: list[str] = []

    def generate(self, requests):
        out = []
        for req in requests:
            qid = re.search(r"Question (q\d+)\b", req.prompt).group(1)
            self.questions_seen.append(qid)
            _, greedy, sampled, _ = self.table[qid]
            answers = [greedy] if req.params.temperature == 0 else sampled[:req.n]
            out.append(GenerationResult(None, [1], [Sample(text_of(a), [1] * 5, "eos") for a in answers], 1, 1, 0))
        return out


class TableScorer:
    """PRM scores: root 0.1 (ignored), then r_i on every step."""

    def __init__(self, table=None):
        self.table = table or TABLE
        self.calls = 0

    def score(self, question, trajectories):
        self.calls += 1
        rs = self.table[question.id][3]
        return [[0.1] + [rs[i]] * (len(t) - 1) for i, t in enumerate(trajectories)]


class NoEngine:
    tokenizer = None

    def generate(self, requests):
        raise AssertionError("rescore must not generate")


@pytest.fixture
def bench(tmp_path):
    return write_bench(tmp_path / "mini.jsonl")


def config(bench, tmp_path, **kw):
    data = {"datasets": [str(bench)], "n": 4, "selectors": ["majority", "p-vs", "best-of-n-min"],
            "output_dir": str(tmp_path / "out"), **kw}
    return EvalConfig(**data)


def acc(rows, selector, n=None):
    [row] = [r for r in rows if r["selector"] == selector and (n is None or r["n"] == n)]
    return row["accuracy"]


def test_exact_accuracies_resume_and_rescore(bench, tmp_path):
    engine = TableEngine()
    first = run_eval(config(bench, tmp_path, limit=2), engine=engine, progress=False)
    assert sorted(engine.questions_seen) == ["q1", "q1", "q2", "q2"]  # greedy + sampled, 2 questions
    assert {r["selector"] for r in first["results"]} == {"greedy", "majority"}  # no PRM yet: skipped

    engine = TableEngine()
    summary = run_eval(config(bench, tmp_path), engine=engine, progress=False)
    assert sorted(engine.questions_seen) == ["q3", "q3", "q4", "q4"]  # resumed: only the rest
    rows = summary["results"]
    assert acc(rows, "greedy") == 0.75
    assert acc(rows, "majority") == 0.5  # q1 votes B (wrong), q2 tie C-D -> C (seen first)
    [maj] = [r for r in rows if r["selector"] == "majority"]
    assert maj == {"dataset": "mini", "budget": None, "selector": "majority", "n": 4, "questions": 4,
                   "accuracy": 0.5, "ci_low": 0.0, "ci_high": 1.0, "correct": 2, "answered": 0.75,
                   "tokens_per_question": 20.0}

    scorer = TableScorer()
    summary = run_eval(config(bench, tmp_path), engine=NoEngine(), scorer=scorer, progress=False, rescore=True)
    assert scorer.calls == 4
    rows, vs_n = summary["results"], summary["accuracy_vs_n"]
    assert acc(rows, "p-vs") == 0.5  # q1 A (.9 > .6), q2 D (1.0 > .4) wrong, q3 B, q4 none
    assert acc(rows, "best-of-n-min") == 0.25  # q1 A right; q2 D, q3 A wrong
    assert n_grid(4) == [1, 2, 4]
    assert [acc(vs_n, "majority", n) for n in (1, 2, 4)] == [0.75, 0.75, 0.5]
    assert [acc(vs_n, "p-vs", n) for n in (1, 2, 4)] == [0.75, 0.75, 0.5]
    saved = read_responses(tmp_path / "out" / "responses" / "mini.n4.jsonl")
    assert saved["q1"][0].step_scores == [0.1, 0.9, 0.9] and len(saved) == 4

    run_eval(config(bench, tmp_path), engine=NoEngine(), scorer=scorer, progress=False, rescore=True)
    assert scorer.calls == 4  # scores already saved: not recomputed
    out = tmp_path / "out"
    for name in ("results.json", "results.csv", "results.md", "accuracy_vs_n.png", "accuracy_vs_budget.png",
                 "config.yaml"):
        assert (out / name).is_file(), name
    md = (out / "results.md").read_text()
    assert "| p-vs | 4 | 50.0 | 50.0 |" in md and "| greedy | 1 | 75.0 | 75.0 |" in md
    assert (out / "results.csv").read_text().splitlines()[0] == \
        "dataset,budget,selector,n,questions,accuracy,ci_low,ci_high,correct,answered,tokens_per_question"


def test_changed_generation_settings_are_refused(bench, tmp_path):
    run_eval(config(bench, tmp_path, limit=1, selectors=["majority"]), engine=TableEngine(), progress=False)
    with pytest.raises(ConfigError, match="temperature"):
        run_eval(config(bench, tmp_path, temperature=0.3), engine=TableEngine(), progress=False)


def test_config_errors_name_the_key(bench):
    with pytest.raises(ConfigError, match="unknown selector 'pvs'"):
        load_config(EvalConfig, None, ["selectors=[pvs]"])
    with pytest.raises(ConfigError, match="budgets: each must be >= 1"):
        load_config(EvalConfig, None, ["budgets=[0]"])
    with pytest.raises(ConfigError, match="unknown key 'nn'"):
        load_config(EvalConfig, None, ["nn=3"])
    cfg = load_config(EvalConfig, None, ["budgets=[null, 64]", "budget.min_thinking_tokens=8", "n=2"])
    assert cfg.budgets == [None, 64] and cfg.budget_for(64).max_thinking_tokens == 64


@pytest.mark.slow
@require_tiny_model
def test_cli_end_to_end_on_tiny_model(bench, tmp_path, capsys):
    out = tmp_path / "tiny"
    args = ["eval", "--config", "examples/configs/eval_tiny.yaml", f"datasets=[{bench}]", f"output_dir={out}",
            "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| greedy | 1 |" in printed and "| majority | 2 |" in printed
    rows = json.loads((out / "results.json").read_text())["results"]
    assert {(r["selector"], r["budget"]) for r in rows} == {("greedy", None), ("majority", None),
                                                           ("greedy", 4), ("majority", 4)}
    forced = read_responses(out / "responses" / "mini.n2.b4.jsonl")
    assert all(r.forced_stop and r.thinking_tokens == 4 for rs in forced.values() for r in rs)
    assert main(args + ["--rescore"]) == 0  # no generation, same tables
    assert json.loads((out / "results.json").read_text())["results"] == rows


class StreamTableEngine(TableEngine):
    """:class:`TableEngine` as a streaming engine that finishes one request per poll, the most
    recently submitted first (so questions complete out of order); the poll numbered
    ``fail_at`` raises, as an engine dying mid-chunk would."""

    def __init__(self, table=None, fail_at=None):
        super().__init__(table)
        self.queue, self.next_ticket, self.polls, self.fail_at = [], 0, 0, fail_at

    def submit(self, requests):
        tickets = list(range(self.next_ticket, self.next_ticket + len(requests)))
        self.next_ticket += len(requests)
        self.queue += zip(tickets, requests)
        return tickets

    def poll(self):
        if not self.queue:
            return []
        self.polls += 1
        if self.polls == self.fail_at:
            self.queue = []
            raise RuntimeError("engine died")
        ticket, req = self.queue.pop()
        return [(ticket, self.generate([req])[0])]

    def pending(self):
        return len(self.queue)


class RecordingBar:
    """Stands in for tqdm: records each update with the lines saved for the run it names."""

    def __init__(self, out):
        self.out, self.updates, self.total = out, [], None

    def __call__(self, total=None, **kwargs):
        self.total = total
        return self

    def update(self, k):
        self.updates.append([k])

    def set_postfix(self, run, **tally):
        lines = (self.out / "responses" / f"{run}.jsonl").read_text().splitlines()
        self.updates[-1] += [run, [json.loads(line)["question_id"] for line in lines], tally["tokens"]]

    def close(self):
        pass


def test_progress_moves_per_question_and_each_line_is_saved_first(bench, tmp_path, monkeypatch):
    bar = RecordingBar(tmp_path / "out")
    monkeypatch.setattr("tqdm.tqdm", bar)
    run_eval(config(bench, tmp_path, selectors=["majority"]), engine=StreamTableEngine(), progress=True)
    assert bar.total == 4 + 16
    assert bar.updates == [
        [1, "mini.greedy", ["q4"], 5], [1, "mini.greedy", ["q4", "q3"], 10],
        [1, "mini.greedy", ["q4", "q3", "q2"], 15], [1, "mini.greedy", ["q4", "q3", "q2", "q1"], 20],
        [4, "mini.n4", ["q4"], 40], [4, "mini.n4", ["q4", "q3"], 60],
        [4, "mini.n4", ["q4", "q3", "q2"], 80], [4, "mini.n4", ["q4", "q3", "q2", "q1"], 100]]


def test_a_resume_after_a_crash_mid_chunk_neither_loses_nor_duplicates(bench, tmp_path):
    cfg = config(bench, tmp_path, selectors=["majority"])
    with pytest.raises(RuntimeError, match="engine died"):
        run_eval(cfg, engine=StreamTableEngine(fail_at=3), progress=False)
    out = tmp_path / "out" / "responses"
    assert list(read_responses(out / "mini.greedy.jsonl")) == ["q4", "q3"]  # finished before the crash: kept
    assert not (out / "mini.n4.jsonl").exists()

    engine = StreamTableEngine()
    summary = run_eval(cfg, engine=engine, progress=False)
    assert engine.questions_seen == ["q2", "q1", "q4", "q3", "q2", "q1"]  # greedy: only the lost two
    for name in ("mini.greedy", "mini.n4"):
        ids = [json.loads(line)["question_id"] for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert sorted(ids) == ["q1", "q2", "q3", "q4"], name  # each question exactly once
    assert acc(summary["results"], "greedy") == 0.75 and acc(summary["results"], "majority") == 0.5
