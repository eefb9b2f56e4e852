"""Issue 15 item 6: damaged state (shards, tree lines, manifests) is a DataError naming the file
and line, raised before any work is done; a manifest without its summary is not a finished stage."""

from __future__ import annotations

import json
import signal

import pytest
from scripted_engine import ScriptedEngine

from meds3.data import save_questions
from meds3.data.errors import DataError
from meds3.data.question import MedQuestion
from meds3.evolve.stages import read_manifest, run_stage
from meds3.mcts import Forest, SearchConfig, Tree
from meds3.rollout import RolloutConfig, TreeStore, run_rollout
from meds3.train.data import iter_trees

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B",
                  task_type="multiple_choice") for i in range(3)]
SHARD = "trees-00000000000000000001-local-1-00000.jsonl"


def good_line(i: int = 0) -> dict:
    tree = next(Forest(ScriptedEngine(), SearchConfig(max_nodes=6), live_trees=1).run(QS[i:i + 1]))
    return tree.to_dict()


def self_parent() -> dict:
    d = good_line()
    d["nodes"][2]["parent"] = 2
    return d


def no_nodes() -> dict:
    d = good_line()
    del d["nodes"]
    return d


def empty_nodes() -> dict:
    d = good_line()
    d["nodes"] = []
    return d


BAD_LINES = {
    "binary": (b"\x00\xff\xfe garbage \x89PNG\n", r"line 2: not UTF-8 text"),
    "truncated": (json.dumps(good_line(1)).encode()[:200] + b"\n", r"line 2: not a JSON tree"),
    "no nodes": ((json.dumps(no_nodes()) + "\n").encode(), r"line 2: not a tree: field 'nodes' is missing"),
    "empty nodes": ((json.dumps(empty_nodes()) + "\n").encode(), r"line 2: not a tree: the tree has no nodes"),
    "own parent": ((json.dumps(self_parent()) + "\n").encode(), r"line 2: not a tree: node 2 is its own parent"),
    "not an object": (b"[1, 2]\n", r"line 2: not a tree: a tree is a JSON object"),
}


def write_shard(folder, bad: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SHARD).write_bytes((json.dumps(good_line(0)) + "\n").encode() + bad)


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_a_damaged_shard_is_a_data_error_naming_file_and_line_before_any_search(tmp_path, kind):
    bad, message = BAD_LINES[kind]
    write_shard(tmp_path / "out" / "trees", bad)
    with pytest.raises(DataError, match=rf"{SHARD}:{message}"):
        TreeStore(tmp_path / "out" / "trees")
    with pytest.raises(DataError, match=rf"{SHARD}:{message}"):
        list(iter_trees(str(tmp_path / "out")))
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, QS)
    engine = ScriptedEngine()
    with pytest.raises(DataError, match=SHARD):
        run_rollout(RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "out")), engine=engine,
                    progress=False)
    assert engine.calls == []


def test_tree_path_on_a_cyclic_tree_raises_instead_of_hanging():
    tree = Tree.from_dict(good_line())
    tree.nodes[1].parent, tree.nodes[2].parent = 2, 1  # a loop made in memory, past from_dict's check
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("Tree.path loops forever"))
    signal.alarm(5)
    try:
        with pytest.raises(ValueError, match="form a cycle"):
            tree.path(2)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("content, message", [
    (b"[]", r"manifest.json:line 1: a manifest is a JSON object, got list"),
    (b'"done"', r"manifest.json:line 1: a manifest is a JSON object, got str"),
    (b"\x89PNG\x00\xff", r"manifest.json: not UTF-8 text"),
])
def test_a_damaged_manifest_is_a_data_error(tmp_path, content, message):
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_manifest(tmp_path)
    with pytest.raises(DataError, match=message):
        run_stage("iter1/policy", tmp_path, lambda: {"ran": True})


def test_done_without_its_summary_is_not_a_finished_stage(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "done"}))
    result = run_stage("iter1/policy", tmp_path, lambda: {"ran": True})
    assert not result.skipped and result.summary == {"ran": True}


def test_evolve_reads_every_manifest_before_running_a_stage(tmp_path):
    from meds3.evolve import EvolveConfig, run

    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, [MedQuestion(id=f"s{i}", question=f"Q {i}?", options={"A": "a", "B": "b"}, answer="A",
                                       task_type="multiple_choice") for i in range(6)])
    out = tmp_path / "evolve"
    (out / "iter2" / "prm").mkdir(parents=True)
    (out / "iter2" / "prm" / "manifest.json").write_text("[]")
    with pytest.raises(DataError, match=r"iter2/prm/manifest.json:line 1"):
        run(EvolveConfig(output_dir=str(out), seeds=[str(seeds)], held_out=2, iterations=2), progress=False)
    assert not (out / "iter1").exists()  # no stage ran
