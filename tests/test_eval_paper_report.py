"""The paper-style report (meds3.eval.paper): column order, unweighted mean, bootstrap intervals,
quoted reference rows, CSV/JSON round trip, and the files an eval run writes."""

from __future__ import annotations

import csv
import json

import pytest
from test_eval import TableEngine, TableScorer, write_bench

from meds3.eval import EvalConfig, run_eval
from meds3.eval.paper import (
    M1_COLUMNS,
    MEDS3_COLUMNS,
    PAPER_COLUMNS,
    load_reference,
    mean_ci,
    order_columns,
    paper_markdown,
    paper_table,
    write_paper_report,
)


def row(dataset, correct, questions, selector="majority", **kw):
    return {"dataset": dataset, "budget": None, "selector": selector, "n": 4, "questions": questions,
            "accuracy": round(correct / questions, 4), "correct": correct, "answered": 1.0,
            "tokens_per_question": 10.0, **kw}


# medqa 60%, pubmedqa 80%, zeta 40%, alpha 70%: unweighted mean 62.5 (weighted would differ)
ROWS = [row("zeta", 4, 10), row("pubmedqa", 40, 50), row("alpha", 7, 10), row("medqa", 6, 10)]
REFERENCE = [{"name": "m1-7B", "source": "m1 Table 1", "values": {"medqa": 99.0, "pubmedqa": 98.0}}]


def test_column_order():
    assert order_columns(["zeta", "pubmedqa", "alpha", "medqa"]) == ["medqa", "pubmedqa", "alpha", "zeta"]
    assert order_columns(["nejm", "medqa", "medmcqa"], "m1") == ["medmcqa", "medqa", "nejm"]
    assert order_columns(["b", "medqa", "a"], ["b", "meds3"]) == ["b", "medqa", "a"]
    assert PAPER_COLUMNS[:len(MEDS3_COLUMNS)] == MEDS3_COLUMNS and set(M1_COLUMNS) <= set(PAPER_COLUMNS)
    assert len(PAPER_COLUMNS) == len(set(PAPER_COLUMNS))
    table = paper_table(ROWS)
    assert table["columns"] == ["medqa", "pubmedqa", "alpha", "zeta", "mean"]
    md = paper_markdown(table)
    assert "| policy | selector | medqa (n=10) | pubmedqa (n=50) | alpha (n=10) | zeta (n=10) | mean |" in md
    with pytest.raises(ValueError, match="unknown column order"):
        order_columns(["medqa"], "nope")


def test_mean_is_unweighted_and_cis_bracket_and_are_seeded():
    table = paper_table(ROWS)
    [r] = table["rows"]
    assert [r["cells"][d]["accuracy"] for d in ("medqa", "pubmedqa", "alpha", "zeta")] == [60.0, 80.0, 70.0, 40.0]
    assert r["mean"]["accuracy"] == 62.5 and r["mean"]["datasets"] == 4
    assert r["answered"] == 100.0 and r["tokens_per_answer"] == 10.0
    for cell in [*r["cells"].values(), r["mean"]]:
        assert cell["ci_low"] <= cell["accuracy"] <= cell["ci_high"]
        assert cell["ci_low"] < cell["ci_high"]
    # the mean's interval is narrower than a single 10-question dataset's
    assert r["mean"]["ci_high"] - r["mean"]["ci_low"] < r["cells"]["medqa"]["ci_high"] - r["cells"]["medqa"]["ci_low"]
    assert paper_table(ROWS) == table and paper_table(ROWS, seed=7) == paper_table(ROWS, seed=7)  # seeded
    assert mean_ci([(6, 10), (40, 50)], seed=1) == mean_ci([(6, 10), (40, 50)], seed=1)
    assert mean_ci([]) == (0.0, 0.0)
    assert mean_ci([(5, 5), (0, 5)]) == (0.5, 0.5)  # no spread at 0% and 100%


def test_rows_per_policy_and_selector():
    rows = [{**r, "policy": "base"} for r in ROWS] + [{**r, "policy": "iter1", "selector": "p-vs", "budget": 64}
                                                        for r in ROWS[:2]]  # zeta 40, pubmedqa 80
    table = paper_table(rows)
    assert [(r["policy"], r["selector"]) for r in table["rows"]] == [("base", "majority"), ("iter1", "p-vs@64")]
    assert table["rows"][1]["mean"]["accuracy"] == 60.0 and table["rows"][1]["mean"]["datasets"] == 2


def test_reference_rows_are_quoted_and_kept_apart(tmp_path):
    path = tmp_path / "ref.yaml"
    path.write_text("rows:\n  - name: m1-7B\n    source: m1 Table 1\n    values: {medqa: 99.0, pubmedqa: 98.0}\n"
                    "  - name: empty\n    source: not copied yet\n    values: {medqa: null}\n")
    assert load_reference(path)[0] == REFERENCE[0]
    table = paper_table(ROWS, reference=path)
    assert table["rows"] == paper_table(ROWS)["rows"]  # computed rows and means untouched
    ref, empty = table["reference"]
    assert ref["label"] == "m1-7B (quoted: m1 Table 1)" and ref["cells"] == {"medqa": {"accuracy": 99.0},
                                                                            "pubmedqa": {"accuracy": 98.0}}
    assert ref["mean"]["accuracy"] is None  # quoted values for 2 of 4 columns: no mean
    assert empty["cells"] == {}
    assert paper_table(ROWS[1:2] + ROWS[3:], reference=REFERENCE)["reference"][0]["mean"]["accuracy"] == 98.5
    md = paper_markdown(table)
    assert "| m1-7B (quoted: m1 Table 1) | | 99.0 | 98.0 | - | - | - | - | - |" in md
    assert md.index("quoted, not computed here") > md.index("| policy | majority |")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  source: y\n  values: {medqa: 101}\n")
    with pytest.raises(ValueError, match="percentage"):
        load_reference(bad)
    bad.write_text("- name: x\n  values: {}\n")
    with pytest.raises(ValueError, match="source"):
        load_reference(bad)


def test_example_reference_file_loads_with_no_invented_numbers():
    refs = load_reference("examples/configs/reference/m1_table1.yaml")
    assert refs and all(set(r["values"]) == set(M1_COLUMNS) for r in refs)
    assert all(v is None for r in refs for v in r["values"].values())


def test_csv_and_json_round_trip(tmp_path):
    table = write_paper_report(tmp_path, ROWS, reference=REFERENCE)
    assert json.loads((tmp_path / "paper_report.json").read_text()) == table
    with open(tmp_path / "paper_report.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    computed = {ln["dataset"]: ln for ln in lines if ln["kind"] == "computed"}
    assert list(computed) == table["columns"]
    [r] = table["rows"]
    for d in table["columns"][:-1]:
        for k in ("accuracy", "ci_low", "ci_high"):
            assert float(computed[d][k]) == r["cells"][d][k]
    assert float(computed["mean"]["accuracy"]) == 62.5
    assert float(computed["mean"]["ci_low"]) == r["mean"]["ci_low"]
    quoted = [ln for ln in lines if ln["kind"] == "quoted"]
    assert [(q["policy"], q["source"], q["dataset"], float(q["accuracy"])) for q in quoted] == \
        [("m1-7B", "m1 Table 1", "medqa", 99.0), ("m1-7B", "m1 Table 1", "pubmedqa", 98.0)]
    assert (tmp_path / "paper_report.md").is_file()


def test_eval_run_writes_the_paper_report(tmp_path):
    bench = write_bench(tmp_path / "medqa.jsonl")
    cfg = EvalConfig(datasets=[str(bench)], n=4, selectors=["majority", "p-vs"], output_dir=str(tmp_path / "out"),
                     paper_reference="examples/configs/reference/m1_table1.yaml")
    run_eval(cfg, engine=TableEngine(), scorer=TableScorer(), progress=False)
    out = tmp_path / "out"
    for name in ("paper_report.md", "paper_report.csv", "paper_report.json", "paper_report.png"):
        assert (out / name).is_file(), name
    table = json.loads((out / "paper_report.json").read_text())
    assert table["columns"] == ["medqa", "mean"]
    by_selector = {r["selector"]: r for r in table["rows"]}
    assert by_selector["greedy"]["cells"]["medqa"]["accuracy"] == 75.0
    assert by_selector["majority"]["mean"]["accuracy"] == 50.0  # one dataset: mean = its accuracy
    assert by_selector["majority"]["answered"] == 75.0 and by_selector["majority"]["tokens_per_answer"] == 20.0
    assert {r["policy"] for r in table["rows"]} == {cfg.model}
    assert [r["label"] for r in table["reference"]][0].startswith("m1-7B-23K (quoted: ")


def test_evolve_report_writes_one_paper_row_per_iteration_policy(tmp_path):
    from meds3.evolve.report import write_report
    from meds3.evolve.stages import StageResult

    def stage(name, rows):
        return StageResult(name, tmp_path / name, {"results": rows}, False, 1.0)

    evals = [("base", stage("iter0/eval", ROWS)),
             ("iter1", stage("iter1/eval", [row("medqa", 8, 10), row("pubmedqa", 45, 50)]))]
    write_report(tmp_path, evals, [s for _, s in evals], ["pubmedqa"], REFERENCE)
    table = json.loads((tmp_path / "paper_report.json").read_text())
    assert table["columns"] == ["pubmedqa", "alpha", "medqa", "zeta", "mean"]  # the rest alphabetically
    assert [(r["policy"], r["selector"], r["mean"]["accuracy"]) for r in table["rows"]] == \
        [("base", "majority", 62.5), ("iter1", "majority", 85.0)]
    assert table["reference"][0]["label"] == "m1-7B (quoted: m1 Table 1)"
    for name in ("report.md", "paper_report.md", "paper_report.csv", "paper_report.png"):
        assert (tmp_path / name).is_file(), name
