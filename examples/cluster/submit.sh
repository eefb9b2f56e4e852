#!/usr/bin/env bash
# Submit a meds3 job to the cluster of examples/cluster/cluster.yaml with `ray job submit`
# (docs/reproducing.md walks through the whole run).
#
#   bash examples/cluster/submit.sh [--dry-run] [--no-wait] [--config FILE] JOB [key=value ...]
#
#   JOB      default config                                 runs
#   rollout  examples/cluster/rollout_cluster.yaml          meds3 rollout --ray-address auto
#   evolve   examples/configs/paper/evolve_llama8b.yaml     meds3 evolve (the whole loop)
#   eval     examples/cluster/eval_cluster.yaml             meds3 eval --ray-address auto
#   policy   examples/cluster/policy_cluster.yaml           meds3 train policy (head GPU)
#   prm      examples/cluster/prm_cluster.yaml              meds3 train prm (head GPU)
#
# key=value overrides go to the meds3 command. --dry-run prints the command instead of running
# it (HF_TOKEN masked); --no-wait returns once the job is accepted (follow it with
# `ray job logs --follow ID`). Resubmitting the same job resumes it from its output_dir.
#
# Before submitting, the config is loaded here with the same meds3 code (a bad key fails now, not
# on the cluster) and its relative data files (seeds, eval sets) must exist in this repository:
# the job runs in a copy of it (runtime_env.yaml's working_dir). The job's runtime environment is
# runtime_env.yaml plus HF_TOKEN from this shell, so every node can download a gated model; Ray
# keeps the runtime environment with the job, so whoever can open the cluster's dashboard can
# read the token. No --entrypoint-num-gpus: the driver must run on the head node (see cluster.yaml).
#
# Environment: RAY_ADDRESS, the job server (default http://127.0.0.1:8265, as forwarded by
# `ray dashboard examples/cluster/cluster.yaml`); PYTHON, a Python with meds3's requirements
# (default python3); HF_TOKEN, a Hugging Face token (required for meta-llama models).
set -euo pipefail

usage() { sed -n '5,16p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "submit.sh: $*" >&2; exit 2; }

dry_run=0
no_wait=0
config=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=1; shift ;;
        --no-wait) no_wait=1; shift ;;
        --config) [[ $# -ge 2 ]] || die "--config needs a file"; config="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (options go before JOB; see --help)" ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
job="$1"
shift

case "$job" in
    rollout) default_config=examples/cluster/rollout_cluster.yaml; entry=(rollout); flags=(--ray-address auto) ;;
    evolve) default_config=examples/configs/paper/evolve_llama8b.yaml; entry=(evolve); flags=() ;;
    eval) default_config=examples/cluster/eval_cluster.yaml; entry=(eval); flags=(--ray-address auto) ;;
    policy) default_config=examples/cluster/policy_cluster.yaml; entry=(train policy); flags=() ;;
    prm) default_config=examples/cluster/prm_cluster.yaml; entry=(train prm); flags=() ;;
    *) die "unknown job '$job': one of rollout, evolve, eval, policy, prm" ;;
esac
config="${config:-$default_config}"

# Every path below is relative to the repository root, which is also the job's working_dir.
cd "$(dirname "$0")/../.."
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
PYTHON="${PYTHON:-python3}"

# Check the job here and print its runtime environment as JSON: the real one, then one with
# HF_TOKEN masked for display.
env_lines=$("$PYTHON" - "$job" "$config" "$dry_run" ${flags[@]+"${flags[@]}"} -- ${@+"$@"} <<'PY'
import json
import os
import sys
from pathlib import Path

job, config, dry_run, *rest = sys.argv[1:]
split = rest.index("--")
flags, overrides = rest[:split], rest[split + 1:]


def fail(message):
    sys.exit(f"submit.sh: {message}")


try:
    import yaml

    from meds3.config import ConfigError, load_config
except ImportError as exc:
    fail(f"{exc}; run with the Python environment that has meds3's requirements (pip install -e .), "
         "or set PYTHON=/path/to/python")

repo = Path.cwd().resolve()
path = Path(config)
if path.is_absolute() or not (repo / path).resolve().is_relative_to(repo):
    fail(f"config {config}: give a path inside this repository, relative to its root; "
         "the job runs in an uploaded copy of the repository and sees nothing outside it")
if not path.is_file():
    fail(f"config {config} does not exist")

if job == "rollout":
    from meds3.rollout import RolloutConfig as cls
elif job == "evolve":
    from meds3.evolve import EvolveConfig as cls
elif job == "eval":
    from meds3.eval import EvalConfig as cls
elif job == "policy":
    from meds3.train import PolicyTrainConfig as cls
else:
    from meds3.train import PRMTrainConfig as cls
as_flags = ["ray.enabled=true", "ray.address=auto"] if "--ray-address" in flags else []
try:
    cfg = load_config(cls, config, [*as_flags, *overrides])
except (ConfigError, ValueError) as exc:
    fail(f"{config}: {exc}")

model = getattr(cfg, "base_model", None) or getattr(cfg, "model", "")
if model.startswith("meta-llama/") and not os.environ.get("HF_TOKEN"):
    fail(f"{model} is a gated Hugging Face model and HF_TOKEN is not set: export HF_TOKEN=hf_... "
         "(a token of an account that accepted the model's license) and submit again; every node "
         "downloads the weights with it")

data_keys = {"rollout": ["seeds"], "evolve": ["seeds", "eval_datasets"], "eval": ["datasets"]}.get(job, [])
missing = []
for key in data_keys:
    for name in getattr(cfg, key):
        p = Path(name)
        if p.is_absolute():
            continue  # a path on the head node
        if not (repo / p).resolve().is_relative_to(repo):
            fail(f"{config}: {key}: {name} is outside the repository, so the job cannot read it; "
                 "place the file inside it (docs/reproducing.md)")
        if not p.is_file():
            missing.append(f"{key}: {name}")
if missing:
    message = (f"{config} names files that do not exist (docs/reproducing.md says how to make them):\n  "
               + "\n  ".join(missing))
    if dry_run != "1":
        fail(message)
    print(f"submit.sh: warning: {message}", file=sys.stderr)

env = yaml.safe_load(Path("examples/cluster/runtime_env.yaml").read_text(encoding="utf-8")) or {}
env_vars = dict(env.get("env_vars") or {})
if os.environ.get("HF_TOKEN"):
    env_vars["HF_TOKEN"] = os.environ["HF_TOKEN"]
print(json.dumps({**env, "env_vars": env_vars}))
shown = {k: ("***" if k == "HF_TOKEN" else v) for k, v in env_vars.items()}
print(json.dumps({**env, "env_vars": shown}))
PY
)
{ IFS= read -r runtime_env; IFS= read -r runtime_env_shown; } <<<"$env_lines"

submission_id="meds3-$job-$(date +%Y%m%d-%H%M%S)"
entrypoint=(python -m meds3 "${entry[@]}" --config "$config" ${flags[@]+"${flags[@]}"} ${@+"$@"})
options=(--submission-id "$submission_id")
[[ $no_wait == 1 ]] && options+=(--no-wait)

# One word as the shell reads it back: bare when safe, else in single quotes.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"
    elif [[ $1 != *"'"* ]]; then printf "'%s'" "$1"
    else printf '%q' "$1"; fi
}

if [[ $dry_run == 1 ]]; then
    line="RAY_ADDRESS=$(quote "$RAY_ADDRESS")"
    for word in ray job submit --runtime-env-json "$runtime_env_shown" "${options[@]}" -- "${entrypoint[@]}"; do
        line+=" $(quote "$word")"
    done
    echo "$line"
    exit 0
fi
command -v ray >/dev/null || die "the ray command is not on PATH (pip install 'ray[default]' at the cluster's version)"
echo "submit.sh: submitting $submission_id to $RAY_ADDRESS" >&2
exec ray job submit --runtime-env-json "$runtime_env" "${options[@]}" -- "${entrypoint[@]}"
