"""Contamination check (meds3.data.overlap, ``meds3 data overlap``, the evolve hook) on hand-made overlaps."""

from __future__ import annotations

import json
import time

import pytest

from meds3.cli import main
from meds3.data.loaders import save_questions
from meds3.data.overlap import comparable_text, find_overlaps, normalize
from meds3.data.question import MedQuestion

STEM = ("A 34-year-old woman presents with fatigue, pallor and spoon-shaped nails. Her hemoglobin is 9.1 g/dL "
        "and the mean corpuscular volume is 71 fL. She reports heavy menstrual bleeding for the past year. "
        "Which of the following is the most likely diagnosis?")
OPTIONS = {"A": "Iron deficiency anemia", "B": "Vitamin B12 deficiency", "C": "Thalassemia minor",
           "D": "Anemia of chronic disease"}


def mc(qid, question=STEM, options=None, answer="A"):
    return MedQuestion(id=qid, question=question, options=dict(OPTIONS if options is None else options),
                       answer=answer)


EVAL = mc("e1")
OTHER = mc("e2", "A 67-year-old man with a long smoking history has a chronic productive cough for three months in "
                 "each of the past two years. Spirometry shows an FEV1/FVC ratio of 0.62. Which of the following "
                 "is the most appropriate initial treatment?",
           {"A": "Inhaled long-acting bronchodilator", "B": "Oral prednisone", "C": "Lung transplantation",
            "D": "Azithromycin"})
EXACT_COPY = mc("s_exact", "a 34 year old WOMAN presents with fatigue pallor, and spoon shaped nails!!  Her hemoglobin "
                           "is 9.1 g/dL and the mean corpuscular volume is 71 fL. She reports heavy menstrual "
                           "bleeding for the past year.\nWhich of the following is the most likely diagnosis")
REORDERED = mc("s_reordered", options={"A": "Anemia of chronic disease", "B": "Thalassemia minor",
                                       "C": "Iron deficiency anemia", "D": "Vitamin B12 deficiency"}, answer="C")
REWORDED = mc("s_reworded", "A 34-year-old female comes in with tiredness, pallor and spoon-shaped nails. Her "
                            "hemoglobin is 9.1 g/dL and the mean corpuscular volume is 71 fL. She describes heavy "
                            "menstrual bleeding for the past year. Which of the following is the most likely "
                            "diagnosis?",
              {"A": "Thalassemia minor", "B": "Iron deficiency anemia", "C": "Anemia of chronic disease",
               "D": "Vitamin B12 deficiency"}, answer="B")
DIFFERENT = mc("s_different", "A 5-year-old boy has a barking cough, inspiratory stridor and a low-grade fever "
                              "that began two days after a runny nose. Which of the following is the most likely "
                              "causal organism?",
               {"A": "Parainfluenza virus", "B": "Streptococcus pneumoniae", "C": "Haemophilus influenzae",
                "D": "Respiratory syncytial virus"})
# The same question with a fifth option (a 5-option release of a 4-option benchmark).
FIVE_OPTIONS = mc("s_five", options={**OPTIONS, "E": "Sideroblastic anemia 2.5"})
# A template sibling: the same words, other numbers (another answer): not a duplicate.
SIBLING = mc("s_sibling", STEM.replace("9.1", "12.8").replace("71 fL", "88 fL"))


def pairs_of(report):
    return {(p.seed_id, p.eval_id): (p.kind, p.score) for p in report.pairs}


def test_normalize_and_comparable_text():
    assert normalize("  Héllo,\tWORLD!  ﬁne—ok ") == "héllo world fine ok"
    assert normalize("Weight 81.4 kg, 1,000 mg.") == "weight 81.4 kg 1,000 mg"  # decimal points stay in numbers
    assert comparable_text(REORDERED) == comparable_text(EVAL)  # options sorted
    assert comparable_text(EXACT_COPY) == comparable_text(EVAL)


def test_hand_made_overlaps():
    seeds = [EXACT_COPY, REORDERED, REWORDED, DIFFERENT, SIBLING, FIVE_OPTIONS]
    report = find_overlaps([("seeds.jsonl", seeds)], [("eval.jsonl", [EVAL, OTHER])])
    found = pairs_of(report)
    assert found[("s_exact", "e1")] == ("exact", 1.0)
    assert found[("s_reordered", "e1")] == ("exact", 1.0)
    kind, score = found[("s_reworded", "e1")]
    assert kind == "near" and 0.5 <= score < 1.0
    assert found[("s_five", "e1")][0] == "near"
    assert set(found) == {("s_exact", "e1"), ("s_reordered", "e1"), ("s_reworded", "e1"), ("s_five", "e1")}
    assert report.seed_ids() == ["s_exact", "s_reordered", "s_reworded", "s_five"]
    assert report.by_eval_file() == {"eval.jsonl": {"exact": 2, "near": 2, "seed_questions": 4}}
    d = report.to_dict()
    assert d["seeds"] == {"seeds.jsonl": 6} and d["evals"] == {"eval.jsonl": 2}
    assert d["pairs"][0] == {"seed_file": "seeds.jsonl", "seed_id": "s_exact", "eval_file": "eval.jsonl",
                             "eval_id": "e1", "kind": "exact", "score": 1.0}
    assert "4 overlapping pair(s)" in report.summary()


def test_threshold_and_ngram_are_configurable():
    evals = [("eval.jsonl", [EVAL])]
    strict = find_overlaps([("s", [REWORDED, EXACT_COPY])], evals, threshold=1.01)  # exact duplicates only
    assert pairs_of(strict) == {("s_exact", "e1"): ("exact", 1.0)}
    score = pairs_of(find_overlaps([("s", [REWORDED])], evals))[("s_reworded", "e1")][1]
    assert not find_overlaps([("s", [REWORDED])], evals, threshold=score + 0.01).found
    long_grams = find_overlaps([("s", [REWORDED])], evals, ngram=13)
    assert pairs_of(long_grams)[("s_reworded", "e1")][1] < score  # longer grams: a changed word breaks more
    with pytest.raises(ValueError, match="ngram"):
        find_overlaps([], evals, ngram=0)


def test_short_questions():
    short_eval = MedQuestion(id="e_short", question="Dose of aspirin?", answer="81 mg", task_type="exact")
    long_eval = MedQuestion(id="e_long", question="What is the usual first-line treatment of strep throat?",
                            answer="penicillin", task_type="exact")
    seeds = [MedQuestion(id="s_copy", question="dose of ASPIRIN", answer="x", task_type="exact"),
             MedQuestion(id="s_other", question="Dose of ibuprofen?", answer="x", task_type="exact"),
             MedQuestion(id="s_inside", question="First-line treatment of strep throat?", answer="x",
                         task_type="exact"),
             MedQuestion(id="s_contains", question="In adults, what is the usual dose of aspirin for pain?",
                         answer="x", task_type="exact"),
             MedQuestion(id="s_empty", question="?!", answer="x", task_type="exact"),
             MedQuestion(id="s_one_word", question="Aspirin?", answer="x", task_type="exact"),  # exact copies only
             MedQuestion(id="s_short_contains", question="Usual dose of aspirin?", answer="x", task_type="exact")]
    found = pairs_of(find_overlaps([("s", seeds)], [("e", [short_eval, long_eval])]))
    assert found == {("s_copy", "e_short"): ("exact", 1.0), ("s_inside", "e_long"): ("near", 1.0),
                     ("s_contains", "e_short"): ("near", 1.0), ("s_short_contains", "e_short"): ("near", 1.0)}


def test_inverted_index_scales_and_skips_boilerplate():
    import random

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    tail = " Which of the following is the most likely diagnosis?"

    def q(prefix, i):
        return MedQuestion(id=f"{prefix}{i}", question=" ".join(rng.choice(vocab) for _ in range(30)) + tail,
                           answer="x", task_type="exact")

    evals = [q("e", i) for i in range(3000)]
    seeds = [q("s", i) for i in range(3000)] + [mc("s_copy", evals[7].question, {})]
    start = time.time()
    report = find_overlaps([("s", seeds)], [("e", evals)])
    assert time.time() - start < 20  # all 9e6 pairs compared one by one would take minutes
    assert pairs_of(report) == {("s_copy", "e7"): ("exact", 1.0)}


@pytest.fixture
def files(tmp_path):
    seeds, clean, evals = tmp_path / "seeds.jsonl", tmp_path / "clean.jsonl", tmp_path / "eval.jsonl"
    save_questions(seeds, [EXACT_COPY, REWORDED, DIFFERENT])
    save_questions(clean, [DIFFERENT])
    save_questions(evals, [EVAL, OTHER])
    return seeds, clean, evals


def test_cli_exit_codes_and_json(files, tmp_path, capsys):
    seeds, clean, evals = files
    assert main(["data", "overlap", str(clean), "--against", str(evals)]) == 0
    assert "0 overlapping pair(s)" in capsys.readouterr().out
    out = tmp_path / "report" / "overlap.json"
    assert main(["data", "overlap", str(seeds), str(clean), "--against", str(evals), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"{evals}: 1 exact, 1 near (2 seed questions)" in text and "s_exact" in text
    report = json.loads(out.read_text())
    assert report["flagged_seed_ids"] == ["s_exact", "s_reworded"]
    assert report["seeds"] == {str(seeds): 3, str(clean): 1} and report["ngram"] == 5
    assert main(["data", "overlap", str(seeds), "--against", str(evals), "--threshold", "2"]) == 1  # exact only
    assert "1 overlapping pair(s)" in capsys.readouterr().out
    assert main(["data", "overlap", str(seeds), "--against", str(evals), "--ngram", "0"]) == 2
    assert main(["data", "overlap", str(seeds), "--against", str(tmp_path / "none.jsonl")]) == 2


# ---- the evolve hook -------------------------------------------------------------------------

def _evolve_config(tmp_path, seeds, **contamination):
    from meds3.config import from_dict
    from meds3.evolve import EvolveConfig

    path = tmp_path / "seeds.jsonl"
    save_questions(path, seeds)
    data = {"output_dir": str(tmp_path / "evolve"), "iterations": 1, "base_model": "tiny-random-llama",
            "seeds": [str(path)], "questions_per_iteration": 2, "held_out": 1, "release_engine": False,
            "eval_base": False, "contamination": contamination}
    return from_dict(EvolveConfig, data)


def _seeds():
    # The pool: s_exact, s_reworded, s_different, sibling; the held-out split: e1 (EVAL).
    return [EXACT_COPY, REWORDED, DIFFERENT, SIBLING, EVAL]


def test_evolve_hook_refuses_naming_ids(tmp_path):
    from meds3.config import ConfigError
    from meds3.evolve.loop import screen_pool, split_seeds

    config = _evolve_config(tmp_path, _seeds(), action="refuse")
    pool, held = split_seeds(config)
    out = tmp_path / "evolve"
    out.mkdir()
    with pytest.raises(ConfigError, match=r"2 seed question\(s\).*s_exact \(exact 1\.00 of .*held_out\.jsonl:e1\), "
                                          r"s_reworded \(near .*contamination\.action=drop"):
        screen_pool(config, out, pool, held)
    assert json.loads((out / "contamination.json").read_text())["flagged"] == 2
    off = _evolve_config(tmp_path, _seeds(), check=False)
    assert screen_pool(off, out, pool, held) == (pool, None)


def test_evolve_hook_drops_and_checks_extra_files(tmp_path, files):
    from meds3.evolve.loop import screen_pool, split_seeds

    _, _, evals = files
    other_copy = mc("s_other_copy", OTHER.question, OTHER.options)
    config = _evolve_config(tmp_path, [other_copy, *_seeds()], action="drop", against=[str(evals)])
    pool, held = split_seeds(config)
    out = tmp_path / "evolve"
    out.mkdir()
    kept, summary = screen_pool(config, out, pool, held)
    assert [q.id for q in kept] == ["s_different", "s_sibling"]
    assert summary["dropped"] == ["s_other_copy", "s_exact", "s_reworded"]
    saved = json.loads((out / "contamination.json").read_text())
    assert saved["dropped"] == summary["dropped"] and len(saved["pairs"]) == 5  # s_exact, s_reworded match twice
    assert screen_pool(config, out, pool, held)[1] == summary  # deterministic: a rerun drops the same


def test_evolve_run_drops_then_resumes(tmp_path, monkeypatch):
    """The loop with stub stages: the dropped questions are never searched, and a rerun with the
    same config skips every finished stage."""
    import meds3.engines
    import meds3.eval
    import meds3.rollout
    import meds3.train
    from meds3.evolve import run

    searched = []

    def rollout(cfg, engine=None, progress=True, force=False):
        from meds3.data.loaders import load_questions

        searched.append([q.id for q in load_questions(cfg.seeds[0])])
        return {"trees": len(searched[-1])}

    class Engine:
        def close(self):
            pass

    monkeypatch.setattr(meds3.engines, "build_engine", lambda *a, **k: Engine())
    monkeypatch.setattr(meds3.rollout, "run_rollout", rollout)
    monkeypatch.setattr(meds3.train, "train_policy", lambda cfg, progress=True: {"adapter_dir": None})
    monkeypatch.setattr(meds3.train, "train_prm", lambda cfg, progress=True: {"skipped": "stub"})
    monkeypatch.setattr(meds3.eval, "run_eval", lambda cfg, engine=None, progress=True, force=False: {"results": []})
    config = _evolve_config(tmp_path, _seeds(), action="drop")
    report = run(config, progress=False)
    assert searched == [["s_different", "s_sibling"]]
    assert report["contamination"]["dropped"] == ["s_exact", "s_reworded"]
    out = tmp_path / "evolve"
    assert json.loads((out / "report.json").read_text())["contamination"]["dropped"] == ["s_exact", "s_reworded"]
    assert json.loads((out / "split.json").read_text())["pool"][:2] == ["s_exact", "s_reworded"]  # before the drop
    again = run(config, progress=False)
    assert searched == [["s_different", "s_sibling"]] and all(s["skipped"] for s in again["stages"])
    # Settings that drop other questions change iteration 1's questions: refused like any change.
    from meds3.config import ConfigError

    with pytest.raises(ConfigError, match="questions"):
        run(_evolve_config(tmp_path, _seeds(), action="drop", threshold=1.01), progress=False)
    assert len(searched) == 1
