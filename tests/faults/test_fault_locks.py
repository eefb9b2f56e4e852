"""Faults: two jobs on one output folder (issue 15, item 3).

One job per folder (``.meds3.lock``, flock), the second fails at once naming the holder's pid;
temporary files carry their writer's pid and are removed only once that process is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from scripted_engine import ScriptedEngine, slow_rollout_command
from test_eval import TableEngine, write_bench

from meds3.cli import main
from meds3.config import save_config
from meds3.data import save_questions
from meds3.data.question import MedQuestion
from meds3.eval import EvalConfig, run_eval
from meds3.io import hostname, temp_owner
from meds3.locks import LOCK_FILE, OutputLocked, output_lock
from meds3.mcts import SearchConfig
from meds3.rollout import RolloutConfig, TreeStore, run_rollout

QS = [MedQuestion(id=f"q{i}", question=f"Question {i}?", options={"A": "a", "B": "b", "C": "c"}, answer="B",
                  task_type="multiple_choice") for i in range(6)]


def rollout_config(tmp_path) -> RolloutConfig:
    seeds = tmp_path / "seeds.jsonl"
    save_questions(seeds, QS)
    return RolloutConfig(seeds=[str(seeds)], output_dir=str(tmp_path / "out"), live_trees=2, flush_every=1,
                         search=SearchConfig(max_nodes=6))


def wait_for_holder(lock: Path, pid: int, timeout: float = 120.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            holder = json.loads(lock.read_text())
            if holder.get("pid") == pid:
                return holder
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never took {lock}")


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid names no running process
    return proc.pid


def temp_name(target: str, pid: int, host: str | None = None) -> str:
    return f".{target}.{pid}@{host or hostname()}.0123abcd.tmp"


def test_second_rollout_on_a_busy_folder_fails_fast_naming_the_holder(tmp_path, capsys):
    config = rollout_config(tmp_path)
    out = Path(config.output_dir)
    out.mkdir(parents=True)
    save_config(config, tmp_path / "job.yaml")
    first = subprocess.Popen(slow_rollout_command(tmp_path / "job.yaml", 2.0),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        holder = wait_for_holder(out / LOCK_FILE, first.pid)
        assert holder["job"] == "rollout" and holder["host"] == hostname()
        # The first job's shard in progress (its write window is too short to hit by timing).
        in_progress = out / "trees" / temp_name("trees-1-local-x-00000.jsonl", first.pid)
        in_progress.parent.mkdir(exist_ok=True)
        in_progress.write_text('{"half": ')

        engine = ScriptedEngine()
        started = time.perf_counter()
        with pytest.raises(OutputLocked, match=rf"in use by pid {first.pid} on .*\(rollout started"):
            run_rollout(config, engine=engine, progress=False)
        assert time.perf_counter() - started < 5 and engine.calls == []  # fails fast, searches nothing
        assert main(["rollout", "--config", str(tmp_path / "job.yaml"), "--no-progress"]) == 2
        assert f"pid {first.pid}" in capsys.readouterr().err
        TreeStore(out / "trees")  # a reader opening the store while the job runs
        assert in_progress.exists()  # the first job's temp file survives
        assert first.poll() is None
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    # The holder is gone (SIGKILL): the kernel dropped its lock; the rerun resumes and cleans up.
    summary = run_rollout(config, engine=ScriptedEngine(), progress=False)
    assert summary["trees"] == len(QS)
    assert not in_progress.exists()  # its writer is gone: removed
    ids = [json.loads(line)["question"]["id"] for shard in (out / "trees").glob("trees-*.jsonl")
           for line in shard.read_text().splitlines()]
    assert sorted(ids) == sorted(q.id for q in QS)  # each question exactly once


def test_stale_temp_files_are_removed_only_when_their_process_is_gone(tmp_path):
    live = subprocess.Popen(["sleep", "60"])
    try:
        gone = dead_pid()
        names = {
            "dead": temp_name("trees-1-local-1-00000.jsonl", gone),
            "live": temp_name("trees-2-local-2-00000.jsonl", live.pid),
            "other_host": temp_name("trees-3-local-3-00000.jsonl", gone, host="another-node.cluster"),
            "unknown": ".tmp-local-abc.jsonl",  # no owner named: never removed
        }
        for name in names.values():
            (tmp_path / name).write_text('{"half": ')
        assert temp_owner(names["live"]) == (live.pid, hostname())
        TreeStore(tmp_path)
        assert {k for k, name in names.items() if (tmp_path / name).exists()} == {"live", "other_host", "unknown"}
        # Taking an output folder's lock sweeps the folder the same way.
        (tmp_path / temp_name("summary.json", gone)).write_text("{")
        with output_lock(tmp_path, "test"):
            pass
        assert not (tmp_path / temp_name("summary.json", gone)).exists()
        assert (tmp_path / names["live"]).exists()
    finally:
        live.kill()
        live.wait()


def test_nested_folders_and_same_thread_nesting_do_not_deadlock(tmp_path):
    errors: list[BaseException] = []

    def other_thread():
        try:
            with output_lock(tmp_path, "second"):
                pass
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    with output_lock(tmp_path, "evolve"):
        with output_lock(tmp_path / "iter1" / "rollout", "rollout"):  # a stage in a subfolder
            with output_lock(tmp_path, "evolve"):  # the same job nesting on its own folder
                pass
        t = threading.Thread(target=other_thread)
        t.start()
        t.join(30)
        assert len(errors) == 1 and isinstance(errors[0], OutputLocked)
        assert f"pid {os.getpid()}" in str(errors[0])
    with output_lock(tmp_path, "after"):  # released at the end of the with block
        pass


def test_lock_file_symlink_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(victim)
    with pytest.raises(Exception, match="lock file"):
        with output_lock(out, "rollout"):
            pass
    assert victim.read_text() == "keep"


def test_two_evals_on_one_folder_are_refused(tmp_path):
    bench = write_bench(tmp_path / "mini.jsonl")
    cfg = EvalConfig(datasets=[str(bench)], n=4, selectors=["majority"], output_dir=str(tmp_path / "out"))
    second: list[BaseException] = []

    class StartsASecondEval(TableEngine):
        def generate(self, requests):
            if not second:  # while the first eval generates, another one starts on the same folder
                def run_second():
                    try:
                        run_eval(cfg, engine=TableEngine(), progress=False)
                        second.append(AssertionError("the second eval ran"))
                    except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                        second.append(exc)

                t = threading.Thread(target=run_second)
                t.start()
                t.join(60)
            return super().generate(requests)

    summary = run_eval(cfg, engine=StartsASecondEval(), progress=False)
    assert isinstance(second[0], OutputLocked), second
    assert f"pid {os.getpid()}" in str(second[0]) and "(eval started" in str(second[0])
    assert {r["selector"] for r in summary["results"]} == {"greedy", "majority"}  # the first one finished
