"""The local rollout's progress bar moves while trees grow: its live figures (nodes, rounds,
tokens/s) are redrawn after every engine round, not only when a tree is finished."""

from __future__ import annotations

import tqdm.auto
from scripted_engine import ScriptedEngine

from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.mcts import SearchConfig
from meds3.rollout import RolloutConfig, run_rollout


class RecordingBar:
    """Stands in for tqdm: records every redraw of the postfix and every tree counted."""

    events: list = []

    def __init__(self, *args, **kwargs):
        self.n = 0

    def set_postfix(self, refresh=True, **figures):
        if refresh:
            RecordingBar.events.append(("redraw", self.n, figures["nodes"], figures["rounds"]))

    def update(self, k=1):
        self.n += k
        RecordingBar.events.append(("tree", self.n))

    def close(self):
        pass


def test_the_bar_is_redrawn_every_round_before_the_first_tree_is_done(tmp_path, monkeypatch):
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    RecordingBar.events = []
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b"},
                                       answer="B") for i in range(3)])
    config = RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "out"), live_trees=3,
                           search=SearchConfig(max_nodes=8))
    summary = run_rollout(config, engine=ScriptedEngine(), progress=True)
    events = RecordingBar.events
    first_tree = next(i for i, e in enumerate(events) if e[0] == "tree")
    before = [e for e in events[:first_tree] if e[0] == "redraw"]
    assert len(before) >= 2  # the bar moved before any tree was finished
    assert [e[3] for e in before] == list(range(1, len(before) + 1))  # once per round
    assert before[-1][2] > before[0][2] > 0  # with growing node counts
    assert events.count(("tree", 3)) == 1 and summary["trees"] == 3
