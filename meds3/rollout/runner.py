"""The local rollout runner: seed questions -> forest search on one engine -> tree store."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from meds3.config import save_config
from meds3.data.loaders import load_questions
from meds3.data.prompts import PromptConfig
from meds3.data.question import MedQuestion
from meds3.engines.config import EngineConfig, build_engine_from
from meds3.io import atomic_write_json
from meds3.locks import locks_output
from meds3.mcts.config import SearchConfig
from meds3.mcts.forest import Forest, ForestStats
from meds3.mcts.node import Tree
from meds3.results import RolloutResult
from meds3.rollout.ray_config import RayConfig
from meds3.rollout.store import TreeStore

logger = logging.getLogger(__name__)


@dataclass
class RolloutConfig(EngineConfig):
    """A rollout job: which questions, which policy, where the trees go. The policy is the
    inherited :class:`~meds3.engines.config.EngineConfig` (``model``, ``backend``, ``engine``,
    ``adapter``)."""

    seeds: list[str] = field(default_factory=lambda: ["seed_data/clinical_calc.jsonl"])  # question files
    seed_format: str = "auto"  # loader format of the seed files
    limit: Optional[int] = None  # first N questions of the seed files (None: all)
    output_dir: str = "runs/rollout"  # tree shards, config and summary
    prm: Optional[str] = None  # PRM directory scoring new steps when search.prm_prior_weight > 0
    max_prompt_tokens: int = 1024  # room for the rendered question in the context-length check
    live_trees: int = 16  # trees searched at once; their requests share each engine call
    # "async": each tree advances when its own requests finish (the engine's stream; Ray actors
    # then stream their units through one forest); "rounds": one engine call per round of every
    # tree; "auto": async for every built-in backend (measured faster on transformers and vLLM,
    # docs/benchmarks.md). The same trees either way with a batch-invariant engine.
    schedule: str = "auto"
    flush_every: int = 8  # trees per shard write
    max_tree_attempts: int = 3  # trees stored per question before a failed one is not searched again
    max_engine_failures: int = 3  # consecutive rounds without a successful engine call before the job stops
    search: SearchConfig = field(default_factory=SearchConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    ray: RayConfig = field(default_factory=RayConfig)  # run on Ray actors when ray.enabled

    def __post_init__(self) -> None:
        from meds3.config import check_output_dir

        super().__post_init__()
        check_output_dir(self.output_dir)
        if not self.seeds:
            raise ValueError("seeds must list at least one question file")
        if self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.max_tree_attempts < 1 or self.max_engine_failures < 1:
            raise ValueError("max_tree_attempts and max_engine_failures must be >= 1")
        if self.live_trees < 1 or self.flush_every < 1:
            raise ValueError("live_trees and flush_every must be >= 1")
        if self.schedule not in ("auto", *Forest.SCHEDULES):
            raise ValueError(f"schedule must be one of auto, {', '.join(Forest.SCHEDULES)}, got {self.schedule!r}")
        self.engine_options()  # a search whose requests cannot fit engine.max_model_len fails at load

    def engine_options(self) -> dict[str, Any]:
        """``engine`` with ``max_model_len`` derived from the search (vLLM, when not set).

        Raises:
            ConfigError: the longest request cannot fit ``engine.max_model_len``.
        """
        from meds3.engines.lengths import check_fits, search_need, with_context

        context = check_fits({"rollout": search_need(self.search, self.max_prompt_tokens)}, self.engine, self.backend)
        return with_context(self.engine, self.backend, context)


def build_value_model(config: RolloutConfig):
    """The PRM scorer of the PRM prior (None when ``search.prm_prior_weight`` is 0).

    Raises:
        ValueError: a prior weight without ``prm``.
    """
    if config.search.prm_prior_weight <= 0:
        return None
    if not config.prm:
        raise ValueError("search.prm_prior_weight > 0 needs prm: the PRM directory that scores new steps")
    from meds3.train.scorer import PRMScorer

    return PRMScorer(config.prm)


def build_forest(config: RolloutConfig, engine, value_model=None) -> Forest:
    """The forest of a rollout job (local runner and Ray actors alike)."""
    return Forest(engine, config.search, config.prompt, live_trees=config.live_trees, adapter=config.adapter,
                  value_model=value_model if value_model is not None else build_value_model(config),
                  max_engine_failures=config.max_engine_failures, schedule=forest_schedule(config))


def forest_schedule(config: RolloutConfig) -> str:
    """The forest schedule of a job: ``config.schedule``, with ``auto`` resolved to ``async``:
    every built-in backend streams (the transformers engine's slot KV admits a request into the
    running batch copying only its own KV; vLLM and servers page their KV), and on this
    repository's CPU measurements (docs/benchmarks.md, "Search utilization") the async schedule
    was faster than rounds on both the transformers engine (1.08x) and vLLM (1.06x), with the
    same trees."""
    if config.schedule != "auto":
        return config.schedule
    return "async"


def rollout_fingerprint(config: RolloutConfig) -> dict[str, Any]:
    """The settings that shape a rollout's trees, checked when a job resumes: policy (model,
    adapter content hash, backend, output-shaping engine options), search, prompt and the PRM
    of the prior. Which questions (seeds, limit) and how fast (live_trees, ray) are left out:
    adding questions to a finished job is a legitimate resume."""
    from meds3.config import to_dict
    from meds3.resume import engine_key
    from meds3.rollout.shipping import dir_sha256

    adapter = config.adapter
    sha = dir_sha256(adapter) if adapter and Path(adapter).is_dir() else (f"(missing: {adapter})" if adapter else "")
    return {"model": config.model, "adapter_sha256": sha, "backend": config.backend,
            "engine": engine_key(config.engine), "search": to_dict(config.search), "prompt": to_dict(config.prompt),
            "prm": config.prm if config.search.prm_prior_weight > 0 else None,
            # the PRM's content: a PRM retrained in place (evolve --force) is another prior
            "prm_sha256": dir_sha256(config.prm) if config.search.prm_prior_weight > 0 and config.prm
            and Path(config.prm).is_dir() else ""}


def check_rollout_settings(config: RolloutConfig, force: bool = False) -> bool:
    """Record the job's :func:`rollout_fingerprint` in ``output_dir/fingerprint.json``, or
    compare it with the recorded one (:func:`meds3.resume.check_settings`).

    Returns:
        True when ``force`` moved a mismatching job's outputs aside.

    Raises:
        ConfigError: the folder's trees were searched with other settings (keys named), without ``force``.
    """
    from meds3.resume import FINGERPRINT, check_settings

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return check_settings(out / FINGERPRINT, rollout_fingerprint(config), "trees in it were searched", force,
                          defaults=rollout_fingerprint(RolloutConfig()))


def load_seed_questions(config: RolloutConfig) -> list[MedQuestion]:
    """The job's questions, in file order, ids unique across files.

    Raises:
        DataError: a malformed seed file, or an id in two files.
    """
    from meds3.data.errors import DataError

    questions: list[MedQuestion] = []
    owner: dict[str, str] = {}
    for path in config.seeds:
        for q in load_questions(path, format=config.seed_format):
            if q.id in owner:
                raise DataError(path, None, f"id {q.id!r} is also in {owner[q.id]}")
            owner[q.id] = path
            questions.append(q)
    return questions[: config.limit] if config.limit else questions


def summarize(trees: list[Tree]) -> dict[str, Any]:
    """Counts, correct-leaf rate per task type and domain, tokens per tree."""
    per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_domain: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in trees:
        ok = int(bool(t.correct_leaves()))
        for table, key in ((per_type, t.question.task_type), (per_domain, t.question.domain or "-")):
            table[key][0] += ok
            table[key][1] += 1
    n = len(trees)
    return {
        "trees": n,
        "complete": sum(t.status == "complete" for t in trees),
        "failed": sum(t.status == "failed" for t in trees),
        "with_correct_leaf": sum(bool(t.correct_leaves()) for t in trees),
        "nodes_per_tree": round(sum(len(t.nodes) for t in trees) / n, 2) if n else 0,
        "tokens_per_tree": round(sum(t.tokens for t in trees) / n, 1) if n else 0,
        "correct_leaf_rate_by_task_type": {k: round(a / b, 4) for k, (a, b) in sorted(per_type.items())},
        "correct_leaf_rate_by_domain": {k: round(a / b, 4) for k, (a, b) in sorted(per_domain.items())},
        "stop_reasons": dict(sorted(_count(t.stop_reason or t.status for t in trees).items())),
    }


def _count(items) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in items:
        out[x] += 1
    return dict(out)


@locks_output("rollout")
def run_rollout(config: RolloutConfig, engine=None, progress: bool = True, force: bool = False) -> RolloutResult:
    """Search every seed question not yet in the store; resumable. With ``config.ray.enabled``
    the job runs on Ray actors (:func:`meds3.rollout.ray_runner.run_ray_rollout`).

    Args:
        config: the job.
        engine: a ready engine (default: built from ``config.model``/``backend``/``engine``);
            local runs only.
        progress: show a progress bar.
        force: when the folder's trees were searched with other settings, move them aside
            (``superseded-<time>/``) and start afresh instead of refusing.

    Returns:
        The :class:`~meds3.results.RolloutResult` of every tree in the store (its ``to_dict()``
        is written to ``summary.json``).

    Raises:
        ValueError: an engine object given for a Ray job (each actor builds its own).
        ConfigError: the folder's trees were searched with other settings (without ``force``).
        DataError: a damaged tree shard (file and line named), before any search.
        EngineFailure: the engine failed persistently or fatally (local runs); finished trees
            are stored, the trees in progress are searched again by a rerun.
        OutputLocked: another job holds ``output_dir`` (:mod:`meds3.locks`; on Ray the driver holds it).
    """
    if config.ray.enabled:
        if engine is not None:
            raise ValueError("a Ray job builds one engine per actor; pass engine_factory to run_ray_rollout")
        from meds3.rollout.ray_runner import run_ray_rollout

        return run_ray_rollout(config, progress=progress, force=force)
    out, store, todo = open_job(config, force)
    if todo:
        if engine is None:
            engine = build_engine_from(config)
        from meds3.rollout.shipping import dir_sha256

        _search_into(build_forest(config, engine), todo, store, progress, dir_sha256(config.adapter))
    return close_job(out, store)


def open_job(config: RolloutConfig, force: bool = False) -> tuple[Path, TreeStore, list[MedQuestion]]:
    """Create the output folder, check the saved settings (with ``force``, move the outputs of
    other settings aside), save the config, open (and check) the store; returns the questions
    to search: those without a stored tree, and those whose newest tree failed with attempts
    left (``max_tree_attempts``).

    Raises:
        ConfigError: the folder's trees were searched with other settings (without ``force``).
        DataError: a damaged shard or seed file.
    """
    out = Path(config.output_dir)
    check_rollout_settings(config, force)
    save_config(config, out / "config.yaml")
    store = TreeStore(out / "trees", flush_every=config.flush_every, max_attempts=config.max_tree_attempts)
    questions = load_seed_questions(config)
    done = store.done_ids()
    todo = [q for q in questions if q.id not in done]
    stored = store.attempts()
    retried = [q.id for q in todo if q.id in stored]
    logger.info("rollout: %d questions, %d already in %s, %d to search (%d failed before: searched again)",
                len(questions), len(questions) - len(todo), out, len(todo), len(retried))
    return out, store, todo


def close_job(out: Path, store: TreeStore, extra: dict[str, Any] | None = None) -> RolloutResult:
    """Flush the store and write ``summary.json``: :func:`summarize` of every stored tree plus
    ``extra``, as the returned :class:`~meds3.results.RolloutResult` (``to_dict()``)."""
    store.close()
    attempts = store.attempts()
    summary = {**summarize(list(store.iter_trees())),
               "tree_attempts": {"retried": sum(n > 1 for n in attempts.values()), "given_up": store.given_up()},
               **(extra or {})}
    result = RolloutResult.from_dict(summary, output_dir=str(out))
    atomic_write_json(out / "summary.json", result.to_dict())
    return result


def _search_into(forest: Forest, todo: list[MedQuestion], store: TreeStore, progress: bool,
                 adapter_sha256: str = "") -> ForestStats:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="trees", unit="tree", disable=not progress, dynamic_ncols=True)

    def show(stats: ForestStats, refresh: bool = True) -> None:
        """The live figures; redrawn after every engine round, so the bar moves while the
        first trees are still growing (nodes and tokens/s), not only when a tree is stored."""
        bar.set_postfix(growing=stats.live_trees, nodes=stats.nodes + stats.live_nodes, rounds=stats.rounds,
                        tok_s=f"{stats.generated_tokens / stats.elapsed:.1f}",
                        trees_s=f"{stats.trees_done / stats.elapsed:.3f}",
                        correct=f"{stats.trees_with_correct / max(stats.trees_done, 1):.0%}", refresh=refresh)

    try:
        for tree in forest.run(todo, on_round=show):
            tree.adapter_sha256 = adapter_sha256
            store.add(tree)
            show(forest.stats, refresh=False)
            bar.update(1)
    finally:
        store.flush()  # an interrupted job keeps every tree it finished
        bar.close()
    return forest.stats
