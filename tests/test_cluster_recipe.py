"""The cluster recipe (examples/cluster/, the paper config, docs/reproducing.md) cannot rot:
its files parse and are valid for Ray, every config submit.sh submits loads, every data path
stays inside the uploaded repository and is one the docs tell the user to create, and
submit.sh builds a `ray job submit` command that keeps the driver on the head node."""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meds3.config import load_config, to_dict
from meds3.eval import EvalConfig
from meds3.evolve import EvolveConfig
from meds3.evolve.config import LOOP_FIELDS
from meds3.rollout import RolloutConfig
from meds3.train import PolicyTrainConfig, PRMTrainConfig

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "examples" / "cluster"
PAPER = "examples/configs/paper/evolve_llama8b.yaml"
SUBMIT = CLUSTER / "submit.sh"
REPRODUCING = REPO / "docs" / "reproducing.md"

# What submit.sh submits for each job: its default config and the config class it loads into.
JOBS = {
    "rollout": ("examples/cluster/rollout_cluster.yaml", RolloutConfig),
    "evolve": (PAPER, EvolveConfig),
    "eval": ("examples/cluster/eval_cluster.yaml", EvalConfig),
    "policy": ("examples/cluster/policy_cluster.yaml", PolicyTrainConfig),
    "prm": ("examples/cluster/prm_cluster.yaml", PRMTrainConfig),
}
# Files the user makes before submitting (docs/reproducing.md, steps 2 and 3); nothing else
# relative may be named that the repository lacks.
USER_FILES = re.compile(r"^(seed_data/mix\.jsonl|data/eval/[\w.-]+\.jsonl)$")
HEAD_DISK = "/data/meds3/runs/"  # absolute paths: the head node's disk (cluster.yaml)
DATA_KEYS = ("seeds", "eval_datasets", "datasets", "trees", "adapter", "prm", "output_dir")


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def data_paths(config) -> list[tuple[str, str]]:
    """(key, path) of every file or folder a loaded config names, stage sections included
    (less the fields the evolve loop fills in itself)."""
    found = []

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif key in DATA_KEYS and value is not None and key not in LOOP_FIELDS.get(prefix.rstrip("."), ()):
                found.extend((f"{prefix}{key}", v) for v in (value if isinstance(value, list) else [value]))

    walk(to_dict(config), "")
    return found


@functools.cache
def upload_excluded(rel: str) -> bool:
    """Whether Ray's working_dir upload of the repository with runtime_env.yaml leaves ``rel`` out.

    Uses Ray's own matching (ray._private.runtime_env.packaging as of Ray 2.60): its default
    excludes, runtime_env.yaml's ``excludes`` and the .gitignore/.rayignore files on the way."""
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import (
        _get_excludes,
        get_excludes_from_ignore_files,
    )

    patterns = ray_constants.get_runtime_env_default_excludes() + read_yaml(CLUSTER / "runtime_env.yaml")["excludes"]
    parts = Path(rel).parts
    checks = [_get_excludes(REPO, patterns)]
    for i in range(len(parts)):
        checks += get_excludes_from_ignore_files(REPO.joinpath(*parts[:i]), include_gitignore=True)
    return any(check(REPO.joinpath(*parts[:i + 1])) for i in range(len(parts)) for check in checks)


def test_every_yaml_in_the_recipe_parses():
    files = sorted(CLUSTER.glob("*.yaml"))
    assert {f.name for f in files} >= {"cluster.yaml", "runtime_env.yaml", *(Path(c).name for c, _ in JOBS.values()
                                                                            if c.startswith("examples/cluster"))}
    for path in files:
        assert isinstance(read_yaml(path), dict), path


def test_cluster_yaml_is_a_valid_launcher_config_with_the_driver_on_a_gpu_head():
    # Ray's own checks of `ray up` (ray.autoscaler._private.util as of Ray 2.60).
    from ray.autoscaler._private.util import prepare_config, validate_config

    cluster = read_yaml(CLUSTER / "cluster.yaml")
    validate_config(prepare_config(dict(cluster)))
    head = cluster["available_node_types"][cluster["head_node_type"]]
    # No actor on the head (it advertises no CPU/GPU); its GPU is the driver's, used through CUDA.
    assert head["resources"] == {"CPU": 0, "GPU": 0}
    assert cluster["file_mounts"] == {"~/meds3": "."}
    assert any('pip install -e "$HOME/meds3[vllm]"' in c for c in cluster["setup_commands"])
    workers = [t for n, t in cluster["available_node_types"].items() if n != cluster["head_node_type"]]
    gpu_nodes = sum(t["max_workers"] for t in workers)
    for job, (config_path, cls) in JOBS.items():
        config = load_config(cls, REPO / config_path)
        for owner in (config, getattr(config, "rollout", None), getattr(config, "eval", None)):
            ray_cfg = getattr(owner, "ray", None)
            if ray_cfg is not None and ray_cfg.enabled:
                assert ray_cfg.address == "auto", job
                assert ray_cfg.num_workers * ray_cfg.num_gpus_per_worker <= gpu_nodes, job  # 1 GPU per worker


def test_runtime_env_is_a_valid_ray_runtime_env_shipping_the_repository():
    from ray.runtime_env import RuntimeEnv

    env = read_yaml(CLUSTER / "runtime_env.yaml")
    assert set(env) <= RuntimeEnv.known_fields
    RuntimeEnv(**env)
    assert (REPO / env["working_dir"]).resolve() == REPO  # submit.sh runs from the repository root
    assert {".git", ".venv", "runs"} <= set(env["excludes"])
    assert "HF_TOKEN" not in env.get("env_vars", {})  # submit.sh adds it from the shell, never a file


def test_the_upload_keeps_code_configs_and_user_files_and_fits_rays_limit():
    for rel in ["meds3/__init__.py", "meds3/__main__.py", *(c for c, _ in JOBS.values())]:
        assert not upload_excluded(rel), rel
    for rel in ["seed_data/mix.jsonl", "data/eval/medqa.jsonl"]:
        assert not upload_excluded(rel), rel
    assert upload_excluded(".venv/bin/python") and upload_excluded("runs/evolve/report.md")
    size = 0
    for root, dirs, files in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if not upload_excluded(str(rel_root / d))]
        size += sum((Path(root) / f).stat().st_size for f in files if not upload_excluded(str(rel_root / f)))
    assert size < 100 * 2**20  # Ray refuses over 512 MiB; the user's seed and eval files need the room


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_submitted_config_loads_and_names_only_paths_the_user_can_provide(job):
    config_path, cls = JOBS[job]
    config = load_config(cls, REPO / config_path)
    docs = REPRODUCING.read_text(encoding="utf-8")
    for key, value in data_paths(config):
        if value.startswith("/"):
            assert value.startswith(HEAD_DISK), f"{config_path}: {key}: {value} is not on the head node's disk"
            continue
        resolved = (REPO / value).resolve()
        assert not value.startswith("../") and resolved.is_relative_to(REPO), f"{config_path}: {key}: {value}"
        assert not upload_excluded(value), f"{config_path}: {key}: {value} is left out of the job's upload"
        if not resolved.exists():
            assert USER_FILES.match(value), f"{config_path}: {key}: {value} is in neither the repository nor the docs"
            assert value in docs, f"docs/reproducing.md does not tell the user to create {value}"


def test_submit_sh_defaults_are_the_tested_configs():
    text = SUBMIT.read_text(encoding="utf-8")
    defaults = dict(re.findall(r"^\s*(\w+)\) default_config=(\S+);", text, re.MULTILINE))
    assert defaults == {job: config for job, (config, _) in JOBS.items()}


def test_the_stage_configs_match_the_paper_loop():
    paper = load_config(EvolveConfig, REPO / PAPER)
    rollout = load_config(RolloutConfig, REPO / JOBS["rollout"][0])
    assert rollout.model == paper.base_model and rollout.seeds == paper.seeds
    assert rollout.search == paper.search_for(1)[0] and rollout.prompt == paper.search_for(1)[1]
    assert rollout.ray == paper.rollout.ray
    evaluation = load_config(EvalConfig, REPO / JOBS["eval"][0])
    assert evaluation.datasets == paper.eval_datasets and evaluation.ray == paper.eval.ray
    for field in ("n", "selectors", "greedy", "temperature", "top_p", "max_new_tokens", "budgets"):
        assert getattr(evaluation, field) == getattr(paper.eval, field), field
    for job, section in (("policy", paper.policy), ("prm", paper.prm)):
        stage = to_dict(load_config(JOBS[job][1], REPO / JOBS[job][0]))
        assert stage.pop("base_model") == paper.base_model
        assert stage.pop("trees") == [rollout.output_dir]
        loop = to_dict(section)
        for key in ("trees", "base_model", "output_dir"):
            loop.pop(key)
        stage.pop("output_dir")
        assert stage == loop, job


def test_no_path_in_the_recipe_leaves_the_repository():
    files = [*CLUSTER.iterdir(), REPO / PAPER, REPRODUCING]
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not re.search(r"(^|[\s\[\"'=(,])\.\./", line), f"{path.relative_to(REPO)}:{n}: {line.strip()}"


def test_submit_sh_is_valid_bash_and_never_asks_ray_for_entrypoint_resources():
    subprocess.run(["bash", "-n", str(SUBMIT)], check=True)
    code = [line for line in SUBMIT.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "--entrypoint-" in line]  # it would move the driver off the head


def run_submit(*args: str, token: str | None = "hf_test_secret") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "RAY_ADDRESS")}
    env["PYTHON"] = sys.executable
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run(["bash", str(SUBMIT), *args], capture_output=True, text=True, env=env, cwd="/",
                          timeout=60, check=False)


@pytest.mark.parametrize("job", sorted(JOBS))
def test_submit_dry_run_prints_the_ray_job_submit_command(job):
    result = run_submit("--dry-run", job, "output_dir=/data/meds3/runs/dry")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip()
    assert "ray job submit --runtime-env-json '{\"working_dir\": \".\"" in command
    assert f"-- python -m meds3 {'train ' if job in ('policy', 'prm') else ''}{job} --config {JOBS[job][0]}" in command
    assert command.endswith("output_dir=/data/meds3/runs/dry")
    assert ("--ray-address auto" in command) == (job in ("rollout", "eval"))
    assert '"HF_TOKEN": "***"' in command and "hf_test_secret" not in result.stdout + result.stderr
    assert "--entrypoint-" not in command


def test_submit_refuses_a_gated_model_without_hf_token():
    result = run_submit("--dry-run", "evolve", token=None)
    assert result.returncode != 0 and "HF_TOKEN" in result.stderr and "meta-llama/" in result.stderr


def test_submit_refuses_bad_configs_and_missing_data_before_calling_ray():
    outside = run_submit("--config", "../evolve.yaml", "evolve")
    assert outside.returncode != 0 and "inside this repository" in outside.stderr
    bad_key = run_submit("rollout", "search.no_such_key=1")
    assert bad_key.returncode != 0 and "no_such_key" in bad_key.stderr
    missing = run_submit("rollout", "seeds=[seed_data/not_built.jsonl]")
    assert missing.returncode != 0 and "seed_data/not_built.jsonl" in missing.stderr
    assert "ray job submit" not in missing.stdout


def test_loading_every_submitted_config_imports_neither_torch_nor_transformers_models():
    """submit.sh loads the config before every submission; that check must take a second, not the
    10 s or more of importing torch and transformers' trainer integrations on a cold start (the
    report_to check once did that for every config with a trainer section)."""
    code = """
import sys
from meds3.config import load_config
from meds3.evolve import EvolveConfig
from meds3.eval import EvalConfig
from meds3.rollout import RolloutConfig
from meds3.train import PolicyTrainConfig, PRMTrainConfig
classes = {"RolloutConfig": RolloutConfig, "EvolveConfig": EvolveConfig, "EvalConfig": EvalConfig,
           "PolicyTrainConfig": PolicyTrainConfig, "PRMTrainConfig": PRMTrainConfig}
for path, name in %r:
    load_config(classes[name], path, ["report_to=tensorboard"] if name.endswith("TrainConfig") else [])
print(sorted(m for m in ("torch", "transformers.modeling_utils") if m in sys.modules))
""" % [(c, cls.__name__) for c, cls in JOBS.values()]
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
