"""MedS3 self-evolution: rollout -> training data -> policy and PRM -> evaluation, K times.

Directory layout under ``output_dir``::

    held_out.jsonl            seed questions kept out of every rollout (evaluated each iteration)
    contamination.json        the contamination check of the rollout pool (pairs, dropped ids)
    config.yaml               the loop's config
    iter0/eval/               the base policy, evaluated with PRM 1 (when eval_base)
    iter<k>/questions.jsonl   the seed questions iteration k searches
    iter<k>/rollout/          trees of policy k (policy 1 = the base model)
    iter<k>/policy/           policy k+1: a LoRA adapter on the base model
    iter<k>/prm/              PRM k+1
    iter<k>/eval/             policy k+1 evaluated (greedy, majority, P-VS with PRM k+1)
    report.json, report.md, report.csv, accuracy_by_iteration.png

Every stage directory gets a ``manifest.json`` when it finishes; a rerun skips those
stages, resumes the rollout or evaluation in progress and retrains an unfinished trainer.

Resume checks: ``split.json`` records the ids of the rollout pool and the held-out questions;
a rerun whose seeds, seed order or ``held_out`` give another split is refused (a question
that moved from the pool into the held-out set may have been trained on). Each manifest
records its stage's fingerprint (its settings, and the fingerprints of the stages it read);
a finished stage with other settings is refused, naming the keys. ``force`` starts what
differs afresh: the mismatching stage and, through the fingerprints, every stage after it
(the whole loop for a new split); old outputs are moved to ``superseded-<time>/`` folders.

Contamination check (``contamination`` section): before any search the rollout pool is
compared with every evaluation question (held-out split, ``eval_datasets``, extra files);
overlapping pool questions stop the run (``refuse``) or are left out of the pool (``drop``).
``split.json`` records the split before the drop; the check is deterministic, so a rerun
drops the same questions, and a changed drop shows in the rollout fingerprints (their ids).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any, Optional

from meds3.config import save_config
from meds3.data.loaders import save_questions
from meds3.data.question import MedQuestion
from meds3.evolve.config import LOOP_FIELDS, EvolveConfig
from meds3.evolve.report import eval_rows, write_report
from meds3.evolve.stages import StageResult, read_manifest, run_stage
from meds3.locks import locks_output
from meds3.results import EvalResult, RolloutResult
from meds3.tracking import Tracker, iteration_metrics
from meds3.train.common import TrainResult

logger = logging.getLogger(__name__)


def split_seeds(config: EvolveConfig) -> tuple[list[MedQuestion], list[MedQuestion]]:
    """The rollout pool and the held-out questions: the last ``held_out`` questions of the
    seed files (in file order) are held out, the rest are searched.

    Raises:
        DataError: a malformed seed file or an id in two files.
        ConfigError: a seed or evaluation file that does not exist, or fewer seed questions than
            ``held_out + 1``.
    """
    from meds3.config import ConfigError
    from meds3.rollout.runner import RolloutConfig, load_seed_questions

    for key in ("seeds", "eval_datasets"):
        for i, path in enumerate(getattr(config, key)):
            if not Path(path).is_file():
                raise ConfigError(f"{key}[{i}]: {path} does not exist")
    questions = load_seed_questions(RolloutConfig(seeds=list(config.seeds), seed_format=config.seed_format))
    if len(questions) <= config.held_out:
        raise ConfigError(f"held_out: {config.held_out} held-out questions leave none of the {len(questions)} "
                          "seed questions to search; lower held_out or add seeds")
    cut = len(questions) - config.held_out
    if cut < config.questions_per_iteration:
        logger.warning("questions_per_iteration: the pool holds %d questions (< %d): every iteration searches "
                       "all of them again (the pool wraps around)", cut, config.questions_per_iteration)
    return questions[:cut], questions[cut:]


def iteration_questions(pool: list[MedQuestion], k: int, per_iteration: int) -> list[MedQuestion]:
    """Iteration ``k``'s (1-based) questions: the next ``per_iteration`` of the pool,
    wrapping around when the pool is used up."""
    start = (k - 1) * per_iteration
    return [pool[(start + i) % len(pool)] for i in range(min(per_iteration, len(pool)))]


def _with(stage_config: Any, section: str, **values: Any) -> Any:
    """``stage_config`` with the loop's own fields set (others as the user configured)."""
    assert set(values) <= set(LOOP_FIELDS[section]), (section, values)
    return dataclasses.replace(stage_config, **values)


class _Engines:
    """Builds the generation engine once and shares it between rollout and eval stages."""

    def __init__(self, config: EvolveConfig):
        self.config = config
        self.engine = None

    def get(self):
        if self.engine is None:
            from meds3.engines.config import build_engine_from

            self.engine = build_engine_from(self.config.engine_config())
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


@locks_output("evolve")
def run(config: EvolveConfig, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Run (or resume) the evolution loop, holding ``output_dir``'s lock (each stage also locks
    its own subfolder).

    Args:
        config: the loop.
        progress: progress bars in the stages.
        force: start afresh what was made with other settings (see the module docstring)
            instead of refusing.

    Returns:
        The report: one row per (policy, dataset, selector) with its accuracy, plus the
        stage summaries (also written to ``report.json``/``.md``/``.csv`` and a plot).

    Raises:
        ConfigError: a split or a stage made with other settings (without ``force``).
        DataError: a damaged manifest or seed file, before any stage runs.
    """
    from meds3.eval import run_eval
    from meds3.rollout import run_rollout
    from meds3.rollout.runner import rollout_fingerprint
    from meds3.train import train_policy, train_prm

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool, held_out = split_seeds(config)
    check_split(out, pool, held_out, force)
    pool, contamination = screen_pool(config, out, pool, held_out)
    for manifest in sorted(out.glob("iter*/*/manifest.json")):
        read_manifest(manifest.parent)  # why: a damaged manifest fails now, not after hours of earlier stages
    save_config(config, out / "config.yaml")
    eval_files = list(config.eval_datasets)
    if held_out:
        save_questions(out / "held_out.jsonl", held_out)
        eval_files.insert(0, str(out / "held_out.jsonl"))
    engines = _Engines(config)
    uses_ray = bool(getattr(getattr(config.rollout, "ray", None), "enabled", False))
    stages: list[StageResult] = []
    evals: list[tuple[str, StageResult]] = []
    adapter: Optional[str] = None  # policy k's adapter (None: the base model)
    prev_prm: Optional[str] = None  # PRM k (None before the first PRM is trained)
    tree_dirs: list[str] = []
    lineage: dict[str, str] = {}  # stage directory -> digest of its fingerprint (later stages record it)
    prm_stage: Optional[str] = None  # the directory of the stage that trained prev_prm
    tracker = Tracker(config.report_to, str(out / "tracking"))
    try:
        for k in range(1, config.iterations + 1):
            it = out / f"iter{k}"
            questions = iteration_questions(pool, k, config.questions_per_iteration)
            save_questions(it / "questions.jsonl", questions)
            search, prompt = config.search_for(k)
            if search.prm_prior_weight > 0 and prev_prm is None:
                logger.warning("iter%d: no PRM from iteration %d; searching without the PRM prior", k, k - 1)
                search = dataclasses.replace(search, prm_prior_weight=0.0)
            rollout_cfg = _with(config.rollout.with_engine(config.engine_config(adapter)), "rollout",
                                seeds=[str(it / "questions.jsonl")], output_dir=str(it / "rollout"), limit=None,
                                search=search, prompt=prompt, prm=prev_prm if search.prm_prior_weight > 0 else None)
            fp = {**rollout_fingerprint(rollout_cfg), "questions": [q.id for q in questions],
                  "prm_stage": lineage.get(prm_stage) if rollout_cfg.prm else None}
            lineage[str(it / "rollout")] = _digest(fp)
            rollout = run_stage(f"iter{k}/rollout", it / "rollout", lambda rollout_cfg=rollout_cfg: run_rollout(
                rollout_cfg, engine=None if uses_ray else engines.get(), progress=progress, force=force),
                inputs={"questions": len(questions), "adapter": adapter, "prm": rollout_cfg.prm},
                fingerprint=fp, force=force, read=partial(RolloutResult.from_dict, output_dir=rollout_cfg.output_dir))
            stages.append(rollout)
            # Newest first: where a cap on paths per question applies, the newest policy's paths win.
            tree_dirs = [str(it / "rollout"), *tree_dirs] if config.accumulate_trees else [str(it / "rollout")]
            policy_cfg = _with(config.policy, "policy", trees=list(tree_dirs), base_model=config.base_model,
                               output_dir=str(it / "policy"))
            fp = _train_fingerprint(policy_cfg, tree_dirs, lineage)
            lineage[str(it / "policy")] = _digest(fp)
            policy = run_stage(f"iter{k}/policy", it / "policy",
                               lambda cfg=policy_cfg, adapter=adapter: _train(train_policy, "policy", cfg, progress,
                                                                              adapter, engines),
                               inputs={"trees": tree_dirs}, fingerprint=fp, force=force,
                               read=partial(TrainResult.from_dict, kind="policy"))
            prm_cfg = _with(config.prm, "prm", trees=list(tree_dirs), base_model=config.base_model,
                            output_dir=str(it / "prm"))
            fp = _train_fingerprint(prm_cfg, tree_dirs, lineage)
            lineage[str(it / "prm")] = _digest(fp)
            prm = run_stage(f"iter{k}/prm", it / "prm",
                            lambda cfg=prm_cfg: _train(train_prm, "prm", cfg, progress, None, engines),
                            inputs={"trees": tree_dirs}, fingerprint=fp, force=force,
                            read=partial(TrainResult.from_dict, kind="prm"))
            stages += [policy, prm]
            _free_gpu_memory()
            prm_dir = None if prm.result.skipped else prm.result.output_dir  # PRM k+1 (None: nothing trained)
            prev_prm, prm_stage = prm_dir, str(it / "prm")
            resume = {"force": force, "prm_stage": lineage[prm_stage] if prm_dir else None}
            if k == 1 and config.eval_base:
                evals.append(("base", _evaluate(config, engines, eval_files, None, prm_dir,
                                                out / "iter0" / "eval", "iter0/eval", progress, run_eval, **resume)))
            if not policy.result.skipped:  # a policy stage with nothing to learn from keeps the previous policy
                adapter = policy.result.output_dir
            evals.append((f"iter{k}", _evaluate(config, engines, eval_files, adapter, prm_dir,
                                                it / "eval", f"iter{k}/eval", progress, run_eval, **resume)))
            if k == 1 and config.eval_base:
                tracker.log(iteration_metrics(eval_rows=eval_rows("base", evals[0][1])), step=0)
            tracker.log(iteration_metrics(rollout.result, eval_rows(f"iter{k}", evals[-1][1]),
                                          {"policy": policy.result, "prm": prm.result}), step=k)
    except BaseException:
        tracker.close()
        try:  # a dead engine may fail to close: never let that hide the error that stopped the loop
            engines.close()
        except Exception as exc:  # noqa: BLE001
            logger.error("could not close the generation engine after an error: %s", exc)
        raise
    engines.close()
    tracker.close()
    stages += [r for _, r in evals]
    report = write_report(out, evals, stages, config.eval.paper_columns, config.eval.paper_reference)
    if contamination is not None:
        from meds3.io import atomic_write_json

        report["contamination"] = contamination
        atomic_write_json(out / "report.json", report)
    return report


CONTAMINATION = "contamination.json"


def screen_pool(config: EvolveConfig, out: Path, pool: list[MedQuestion],
                held_out: list[MedQuestion]) -> tuple[list[MedQuestion], Optional[dict[str, Any]]]:
    """The contamination check of the rollout pool against every evaluation question: the
    held-out split, ``eval_datasets`` and ``contamination.against``. Writes
    ``out/contamination.json`` (settings, dropped ids, every pair) when it runs.

    Returns:
        ``(pool, summary)``: the pool without the overlapping questions under ``drop`` (the
        pool as given otherwise), and what ``contamination.json`` holds but the pairs
        (``None`` when the check is off).

    Raises:
        ConfigError: overlapping pool questions under ``refuse`` (the first ids named, with how to
            drop them), or a ``drop`` that leaves no question to search.
        DataError: an unreadable evaluation file.
    """
    from meds3.config import ConfigError
    from meds3.data.loaders import load_questions
    from meds3.data.overlap import find_overlaps
    from meds3.io import atomic_write_json

    cfg = config.contamination
    if not cfg.check:
        return pool, None
    evals: list[tuple[str, list[MedQuestion]]] = []
    if held_out:
        evals.append((str(out / "held_out.jsonl"), list(held_out)))
    for i, path in enumerate(cfg.against):
        if not Path(path).is_file():
            raise ConfigError(f"contamination.against[{i}]: {path} does not exist")
    for path in dict.fromkeys([*config.eval_datasets, *cfg.against]):
        fmt = config.eval.dataset_format if path in config.eval_datasets else "auto"
        evals.append((str(path), list(load_questions(path, format=fmt))))
    report = find_overlaps([("seed pool", pool)], evals, ngram=cfg.ngram, threshold=cfg.threshold)
    flagged = report.seed_ids()
    dropped = flagged if cfg.action == "drop" else []
    summary = {"action": cfg.action, "ngram": cfg.ngram, "threshold": cfg.threshold, "pool": len(pool),
               "flagged": len(flagged), "dropped": dropped, "by_eval_file": report.by_eval_file()}
    atomic_write_json(out / CONTAMINATION, {**summary, "pairs": [p.to_dict() for p in report.pairs]})
    if not flagged:
        return pool, summary
    first = ", ".join(f"{p.seed_id} ({p.kind} {p.score:.2f} of {p.eval_file}:{p.eval_id})" for p in report.pairs[:5])
    if cfg.action == "refuse":
        raise ConfigError(f"contamination: {len(flagged)} seed question(s) of the rollout pool duplicate evaluation "
                          f"questions, e.g. {first}; every pair is in {out / CONTAMINATION}. Remove them from the "
                          "seeds, or set contamination.action=drop to search without them")
    gone = set(dropped)
    kept = [q for q in pool if q.id not in gone]
    if not kept:
        raise ConfigError(f"contamination: every one of the {len(pool)} pool questions duplicates an evaluation "
                          f"question (e.g. {first}); nothing is left to search")
    logger.warning("contamination: dropped %d of %d pool question(s) that duplicate evaluation questions, e.g. %s "
                   "(all in %s)", len(dropped), len(pool), first, out / CONTAMINATION)
    if len(kept) < config.questions_per_iteration:
        logger.warning("questions_per_iteration: after the drop the pool holds %d questions (< %d): the pool "
                       "wraps around", len(kept), config.questions_per_iteration)
    return kept, summary


def _train(trainer, kind: str, cfg, progress: bool, fallback_adapter: Optional[str],
           engines: "_Engines") -> TrainResult:
    """Run a trainer, or record why there was nothing to train on (no correct trajectory for
    the policy, no finished trajectory at all for the PRM): small searches with weak models
    can end that way, and the loop then goes on with the previous policy (``fallback_adapter``
    as the result's ``output_dir``) or without a PRM. With ``release_engine`` the generation
    engine is closed first, so training has its memory."""
    from meds3.train import NoTrainingData

    if engines.config.releases_engine():
        engines.close()
        _free_gpu_memory()
    try:
        return trainer(cfg, progress=progress)
    except NoTrainingData as exc:
        logger.warning("%s; nothing to train", exc)
        return TrainResult.skip(kind, exc.reason, fallback_adapter)


def _free_gpu_memory() -> None:
    """Hand the trainers' cached CUDA memory back before an engine needs it."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # torch is a dependency; this guards odd installs only
        pass


def _evaluate(config: EvolveConfig, engines: _Engines, files: list[str], adapter: Optional[str], prm: Optional[str],
              directory: Path, name: str, progress: bool, run_eval, force: bool = False,
              prm_stage: Optional[str] = None) -> StageResult:
    eval_cfg = _with(config.eval.with_engine(config.engine_config(adapter)), "eval", datasets=list(files), prm=prm,
                     output_dir=str(directory))
    # With release_engine, run_eval builds its own engine and closes it before PRM scoring;
    # on Ray (eval.ray.enabled) every actor builds one and closes it before the driver scores.
    own = config.releases_engine() or eval_cfg.ray.enabled
    if own:
        engines.close()
    from meds3.config import to_dict

    settings = {k: v for k, v in to_dict(eval_cfg).items() if k not in ("output_dir", "ray", "chunk_size", "engine")}
    fp = {"generation": eval_cfg.generation_key(), "config": settings, "prm_stage": prm_stage}
    return run_stage(name, directory, lambda: run_eval(eval_cfg, engine=None if own else engines.get(),
                                                       progress=progress, force=force),
                     inputs={"datasets": files, "adapter": adapter, "prm": prm}, fingerprint=fp, force=force,
                     read=partial(EvalResult.from_dict, output_dir=str(directory)))


def _digest(fingerprint: dict[str, Any]) -> str:
    """A short content hash of a stage fingerprint (what later stages record of it)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _train_fingerprint(cfg: Any, tree_dirs: list[str], lineage: dict[str, str]) -> dict[str, Any]:
    """A training stage's settings (its config but the output folder) and the fingerprints of
    the rollout stages whose trees it reads."""
    from meds3.config import to_dict

    # where losses are reported does not change what is trained: a resume may change it
    return {"config": {k: v for k, v in to_dict(cfg).items() if k not in ("output_dir", "report_to", "logging_dir")},
            "trees": {d: lineage.get(d) for d in tree_dirs}}


def check_split(out: Path, pool: list[MedQuestion], held_out: list[MedQuestion], force: bool = False) -> None:
    """Record the ids of the rollout pool and the held-out questions in ``out/split.json``, or
    check that a rerun splits the seeds the same way.

    Raises:
        ConfigError: another split (naming what changed, and the questions that moved from the
            pool into the held-out set: they may have been searched and trained on), without
            ``force``; with it, the loop's outputs are moved to ``superseded-<time>/``.
        DataError: a damaged ``split.json``.
    """
    from meds3.config import ConfigError
    from meds3.io import atomic_write_json
    from meds3.resume import SUPERSEDED, move_aside, read_settings

    path = out / "split.json"
    current = {"pool": [q.id for q in pool], "held_out": [q.id for q in held_out]}
    if path.exists():
        saved = read_settings(path)
        if saved == current:
            return
        changed = [k for k in ("pool", "held_out") if saved.get(k) != current[k]]
        message = f"{out}: the seeds split differently from the saved run ({', '.join(changed)} changed)"
        leaked = [qid for qid in current["held_out"] if qid in set(saved.get("pool") or [])]
        if leaked:
            message += (f"; {len(leaked)} question(s) now held out were in the rollout pool and may have been "
                        f"searched and trained on (test contamination), e.g. {', '.join(leaked[:5])}")
        message += ("; restore seeds, their order and held_out, use a new output_dir, or rerun with --force to "
                    f"start the loop afresh (old outputs are moved to {SUPERSEDED}<time>/)")
        if not force:
            raise ConfigError(message)
        logger.warning("%s; --force: old outputs moved to %s", message.split(";")[0], move_aside(out))
    atomic_write_json(path, current)
