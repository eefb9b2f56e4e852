"""Benchmark evaluation: ``run_eval(EvalConfig)`` samples the policy on benchmark files,
scores responses with a PRM, compares selectors (and greedy), and writes tables and plots.

See ``docs/inference.md`` for the outputs and ``meds3 eval`` for the command.
"""

from meds3.eval.config import EvalConfig
from meds3.eval.report import accuracy_rows, markdown_table, n_grid, score_selector
from meds3.eval.runner import Run, plan_runs, read_responses, response_path, run_eval

__all__ = ["EvalConfig", "Run", "accuracy_rows", "markdown_table", "n_grid", "plan_runs", "read_responses",
           "response_path", "run_eval", "score_selector"]
