"""Benchmark evaluation: sample, score, select, tabulate, plot; resumable and rescorable.

Output directory:
- ``responses/<dataset>.<run>.jsonl``: one line per question, ``{"question_id",
  "responses": [Response...]}``; ``<run>`` is ``greedy`` or ``n<N>``, with ``.b<budget>``
  for a maximum thinking budget. PRM step scores are written into the responses once computed.
- ``results.json`` / ``results.csv`` / ``results.md``: accuracy per dataset, budget and
  selector; ``accuracy_vs_n.png``, ``accuracy_vs_budget.png``; ``config.yaml``.
- ``paper_report.{md,csv,json,png}``: the paper-style table (:mod:`meds3.eval.paper`).

A rerun generates only questions missing from the response files. ``rescore=True`` never
generates: it scores missing PRM step scores (when a PRM is given) and recomputes every table.
Questions are generated a chunk at a time and streamed: each question's line is appended (with
fsync) as soon as its responses are complete, so the file is in completion order and an
interrupted chunk keeps every question it finished; an unterminated last line (a write torn by a
crash) is cut off with a warning when a job starts, so its question is generated again. The job holds
the output folder's lock (:mod:`meds3.locks`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from meds3.config import save_config
from meds3.data.errors import DataError
from meds3.data.loaders import load_questions
from meds3.data.question import MedQuestion
from meds3.eval.config import EvalConfig
from meds3.eval.mcts_eval import mcts_rows, run_mcts
from meds3.eval.report import accuracy_rows, write_paper, write_plots, write_tables
from meds3.infer.api import load_scorer, score_many
from meds3.infer.sampler import Response, SamplerConfig, sample_responses
from meds3.infer.selectors import needs_prm
from meds3.io import append_lines, atomic_open, drop_torn_tail, remove_stale_temps
from meds3.locks import locks_output
from meds3.results import EvalResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One generation setting: greedy or N samples, at one maximum thinking budget."""

    kind: str  # "greedy" or "sample"
    n: int
    budget: Optional[int]

    @property
    def name(self) -> str:
        base = "greedy" if self.kind == "greedy" else f"n{self.n}"
        return base if self.budget is None else f"{base}.b{self.budget}"


def plan_runs(config: EvalConfig) -> list[Run]:
    """Every run of the job, budgets in config order, greedy before sampling."""
    runs = []
    for b in config.budgets:
        if config.greedy:
            runs.append(Run("greedy", 1, b))
        if config.selectors:
            runs.append(Run("sample", config.n, b))
    return runs


def sampler_config(config: EvalConfig, run: Run) -> SamplerConfig:
    """The sampling settings of one run (greedy: n=1, temperature 0)."""
    greedy = run.kind == "greedy"
    return SamplerConfig(n=run.n, temperature=0.0 if greedy else config.temperature,
                         top_p=1.0 if greedy else config.top_p,
                         max_new_tokens=config.max_new_tokens, seed=config.seed, adapter=config.adapter,
                         budget=config.budget_for(run.budget))


def load_datasets(config: EvalConfig) -> dict[str, list[MedQuestion]]:
    """Dataset name (file stem) -> its first ``limit`` questions.

    Raises:
        DataError: an unreadable file, or two files with the same stem.
    """
    out: dict[str, list[MedQuestion]] = {}
    for path in config.datasets:
        name = Path(path).name.split(".")[0]
        if name in out:
            raise DataError(path, None, f"another dataset file is also named {name!r}")
        qs = load_questions(path, format=config.dataset_format)
        out[name] = qs[: config.limit] if config.limit else qs
    return out


def response_path(output_dir: Path, dataset: str, run: Run) -> Path:
    """Where the responses of one dataset and run are saved."""
    return output_dir / "responses" / f"{dataset}.{run.name}.jsonl"


def read_responses(path: Path) -> dict[str, list[Response]]:
    """Question id -> responses, from a response file (missing file: empty).

    Raises:
        DataError: a malformed line (file and line named).
    """
    return read_records(path, lambda record: [Response.from_dict(r) for r in record["responses"]], "response")


def read_records(path: Path, parse, what: str) -> dict[str, Any]:
    """Question id -> ``parse(record)`` for each JSON line of ``path`` (missing file: empty).

    An unterminated last line (a write torn by a crash, or one in progress) is not a record:
    it is skipped with a warning (:func:`meds3.io.drop_torn_tail` cuts it off before a resume).

    Raises:
        DataError: a malformed line (file and line named, ``what`` says which kind of record).
    """
    out: dict[str, Any] = {}
    if not path.exists():
        return out
    lines = path.read_bytes().split(b"\n")
    if lines.pop().strip():  # the bytes after the last newline
        logger.warning("%s:%d: unterminated last line ignored (an interrupted write; a resume generates "
                       "its question again)", path, len(lines) + 1)
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            out[record["question_id"]] = parse(record)
        except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise DataError(str(path), lineno, f"bad {what} record: {exc}") from exc
    return out


def _line(qid: str, responses: list[Response]) -> str:
    return json.dumps({"question_id": qid, "responses": [r.to_dict() for r in responses]}, ensure_ascii=False)


def write_responses(path: Path, records: dict[str, list[Response]]) -> None:
    """Rewrite a response file atomically (:func:`meds3.io.atomic_open`)."""
    with atomic_open(path) as f:
        for q, rs in records.items():
            f.write(_line(q, rs) + "\n")


def _check_resume(out: Path, config: EvalConfig, force: bool = False) -> bool:
    """A resumed run must generate with the settings its saved responses came from; True
    when ``force`` moved mismatching outputs aside."""
    return check_saved_settings(out / "generation.json", config.generation_key(), "saved responses were generated",
                                force, defaults=EvalConfig().generation_key())


def check_saved_settings(path: Path, key: dict[str, Any], what: str, force: bool = False,
                         defaults: dict[str, Any] | None = None) -> bool:
    """Record ``key`` in ``path`` on a first run; on a rerun, refuse other settings
    (:func:`meds3.resume.check_settings`; keys an older version did not record are accepted).

    Args:
        force: on a mismatch, move the folder's outputs to ``superseded-<time>/`` and start afresh.

    Returns:
        True when ``force`` moved the outputs aside.

    Raises:
        ConfigError: ``path`` holds settings that differ from ``key`` (the differing keys named).
    """
    from meds3.resume import check_settings

    return check_settings(path, key, what, force, defaults)


def plan_chunks(config: EvalConfig, out: Path, datasets: dict[str, list[MedQuestion]], runs: list[Run],
                chunk_size: int) -> list[tuple[str, Run, list[MedQuestion]]]:
    """Every missing response, as ``(dataset, run, questions)`` chunks of ``chunk_size`` questions
    (greedy chunks hold ``n`` times more, so every chunk carries about ``chunk_size * n``
    sequences), ordered so that the first questions of every dataset and run come first: a run
    stopped early has comparable partial results (the same first questions everywhere)."""
    todo: list[tuple[int, str, Run, list[MedQuestion]]] = []
    for name, qs in datasets.items():
        position = {q.id: i for i, q in enumerate(qs)}
        for run in runs:
            done = read_responses(response_path(out, name, run))
            missing = [q for q in qs if q.id not in done]
            size = chunk_size * (config.n if run.kind == "greedy" else 1)
            for k in range(0, len(missing), size):
                todo.append((position[missing[k].id], name, run, missing[k:k + size]))
    todo.sort(key=lambda t: t[0])  # stable
    return [(name, run, chunk) for _, name, run, chunk in todo]


def append_responses(path: Path, questions: list[MedQuestion], results: list[list[Response]]) -> None:
    """Append questions' responses (one line per question) and make them durable (fsync)."""
    append_lines(path, [_line(q.id, rs) for q, rs in zip(questions, results)])


class GenerationTally:
    """Running totals of generated responses for a progress bar's postfix."""

    def __init__(self) -> None:
        self.tokens = self.correct = self.answered = self.count = 0
        self.started = time.perf_counter()

    def add(self, responses: list[list[Response]]) -> int:
        flat = [r for rs in responses for r in rs]
        self.tokens += sum(r.num_tokens for r in flat)
        self.correct += sum(bool(r.correct) for r in flat)
        self.answered += sum(r.answer is not None for r in flat)
        self.count += len(flat)
        return len(flat)

    def postfix(self) -> dict[str, Any]:
        count = max(self.count, 1)
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return {"tokens": self.tokens, "tok_s": f"{self.tokens / seconds:.1f}",
                "tok_per_resp": f"{self.tokens / count:.0f}",
                "answered": f"{self.answered / count:.0%}", "correct": f"{self.correct / count:.0%}"}


def _generate(config: EvalConfig, out: Path, datasets: dict[str, list[MedQuestion]], runs: list[Run],
              engine: Any, progress: bool) -> Any:
    """Generate every missing response in this process; returns the engine (built here if needed)."""
    from tqdm import tqdm

    chunks = plan_chunks(config, out, datasets, runs, config.chunk_size)
    total = sum(len(chunk) * run.n for _, run, chunk in chunks)
    if not total:
        return engine
    if engine is None:
        from meds3.engines.config import build_engine_from

        engine = build_engine_from(config)
    bar = tqdm(total=total, desc="eval", unit="resp", disable=not progress)
    tally = GenerationTally()
    for name, run, chunk in chunks:
        save = _question_saver(response_path(out, name, run), chunk, bar, tally, f"{name}.{run.name}")
        sample_responses(engine, chunk, sampler_config(config, run), config.prompt, progress=False,
                         on_question=save)
    bar.close()
    return engine


def _question_saver(path: Path, chunk: list[MedQuestion], bar: Any, tally: GenerationTally,
                    label: str) -> Callable[[int, list[Response]], None]:
    """The ``on_question`` hook of one chunk: append the finished question's line, then count it."""

    def save(index: int, responses: list[Response]) -> None:
        # Durable before it is counted: a question on the bar is one a resume skips.
        append_responses(path, [chunk[index]], [responses])
        bar.update(tally.add([responses]))
        bar.set_postfix(run=label, **tally.postfix())

    return save


def _drop_stale_scores(out: Path, prm: Optional[str], datasets: dict[str, list[MedQuestion]], runs: list[Run],
                       precision: str = "auto") -> None:
    """Saved step scores are kept only while the PRM that made them is unchanged: its content
    hash (and a precision other than ``auto``) is recorded in ``scores.json``; when the PRM
    directory changed (retrained in place, e.g. an evolve stage forced to rerun) or the scorer's
    precision did, every saved score is dropped and scored again."""
    from meds3.io import atomic_write_json
    from meds3.rollout.shipping import dir_sha256

    if not prm or not Path(prm).is_dir():
        return
    current = {"prm_sha256": dir_sha256(prm)}
    if precision != "auto":  # files written before the option have no key: they mean auto
        current["prm_precision"] = precision
    path = out / "scores.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if saved is not None and saved != current:
        logger.warning("%s: the PRM or its precision changed since its step scores were saved; "
                       "scoring every response again", out)
        for run in runs:
            for name in datasets:
                rpath = response_path(out, name, run)
                records = read_responses(rpath)
                if any(r.step_scores is not None for rs in records.values() for r in rs):
                    for rs in records.values():
                        for r in rs:
                            r.step_scores = None
                    write_responses(rpath, records)
    if saved != current:
        atomic_write_json(path, current)


def _score(out: Path, datasets: dict[str, list[MedQuestion]], runs: list[Run], scorer: Any, progress: bool) -> None:
    """Add PRM step scores to every saved sampled response that lacks them."""
    from tqdm import tqdm

    for run in runs:
        if run.kind != "sample":
            continue
        for name, qs in datasets.items():
            path = response_path(out, name, run)
            records = read_responses(path)
            by_id = {q.id: q for q in qs}
            todo = [qid for qid, rs in records.items() if qid in by_id and any(r.step_scores is None for r in rs)]
            if not todo:
                continue
            bar = tqdm(total=len(todo), desc=f"PRM {name}.{run.name}", unit="q", disable=not progress)
            for k in range(0, len(todo), 8):  # 8 questions per scorer call, saved after each
                group = todo[k:k + 8]
                score_many(scorer, [(by_id[qid], records[qid]) for qid in group])
                write_responses(path, records)
                bar.update(len(group))
            bar.close()


@locks_output("eval")
def run_eval(config: EvalConfig, engine: Any = None, scorer: Any = None, progress: bool = True,
             rescore: bool = False, engine_factory: Any = None, on_unit_done: Any = None,
             force: bool = False) -> EvalResult:
    """Evaluate the policy on every dataset, run and selector; resumable.

    With ``config.ray.enabled`` the responses are generated on Ray actors
    (:func:`meds3.eval.ray_eval.generate_on_ray`); scoring, PRM-guided MCTS and the tables stay
    in this process. Either way the response files are the same, so a job can move between
    the two at any point.

    Args:
        config: the job.
        engine: a ready engine (default: built from the config when something is missing);
            local generation only.
        scorer: a PRM scorer (object with ``score``); default: loaded from ``config.prm``.
        progress: show progress bars.
        rescore: generate nothing; add missing PRM scores and recompute the tables.
        engine_factory: Ray only: ``factory(config) -> engine`` run in each actor.
        on_unit_done: Ray only: ``hook(job, result)`` after each stored unit.
        force: when the saved responses were generated with other settings (``generation.json``),
            move the folder's outputs to ``superseded-<time>/`` and start afresh instead of refusing.

    Returns:
        An :class:`~meds3.results.EvalResult`: the table rows and the accuracy-vs-N rows (each
        with dataset, budget, selector, n, questions, accuracy, correct, answered,
        tokens_per_question), the folder, and the Ray scheduling figures when it ran on Ray now.

    Raises:
        DataError: unreadable benchmark or response files.
        ConfigError: the output directory holds responses generated with other settings.
        OutputLocked: another job holds ``output_dir`` (on Ray the driver holds it).
    """
    out = Path(config.output_dir)
    (out / "responses").mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out / "responses")
    for path in sorted((out / "responses").glob("*.jsonl")):
        drop_torn_tail(path)  # appends must start on a fresh line
    if _check_resume(out, config, force):
        (out / "responses").mkdir(parents=True, exist_ok=True)  # moved aside with the old outputs
    save_config(config, out / "config.yaml")
    datasets = load_datasets(config)
    runs = plan_runs(config)
    ray_summary = None
    if config.ray.enabled and not rescore:
        if engine is not None:
            raise ValueError("a Ray evaluation builds one engine per actor; pass engine_factory to run_eval")
        from meds3.eval.ray_eval import generate_on_ray

        ray_summary = generate_on_ray(config, out, plan_chunks(config, out, datasets, runs, config.ray.unit_size),
                                      progress, engine_factory, on_unit_done)
    elif not rescore:
        built = _generate(config, out, datasets, runs, engine, progress)
        if engine is None and built is not None:
            built.close()
    # The selectors' registry says whether step scores are read; PRM-guided MCTS always needs them.
    wants_prm = config.mcts or any(needs_prm(name) for name in config.selectors)
    scorer = scorer if scorer is not None else load_scorer(config.prm, config.prm_precision) if wants_prm else None
    if scorer is not None:
        _drop_stale_scores(out, config.prm, datasets, runs, config.prm_precision)
        _score(out, datasets, runs, scorer, progress)
    if config.mcts and scorer is None:
        logger.warning("mcts: no PRM given; PRM-guided MCTS skipped (give prm=...)")
    elif config.mcts and not rescore:
        built = run_mcts(config, out, datasets, engine, scorer, progress, force)
        if engine is None and built is not None:
            built.close()
    saved = {}
    for name, qs in datasets.items():
        records = {run: read_responses(response_path(out, name, run)) for run in runs}
        # Compare runs on the same questions: those every run has answered.
        common = [q.id for q in qs if all(q.id in rec for rec in records.values())]
        if len(common) < len(qs):
            logger.warning("%s: %d of %d questions have responses in every run; the tables use those",
                           name, len(common), len(qs))
        for run in runs:
            saved[(name, run)] = [records[run][qid] for qid in common]
    rows, vs_n = accuracy_rows(saved, config.selectors)
    rows += mcts_rows(out, datasets, config.mcts_search.max_nodes)
    result = EvalResult(str(out), rows, vs_n, ray_summary)
    write_tables(out, result.to_dict())
    write_plots(out, rows, vs_n)
    write_paper(out, rows, config.paper_columns, config.paper_reference, config.adapter or config.model)
    return result
