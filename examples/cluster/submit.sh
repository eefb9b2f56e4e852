#!/usr/bin/env bash
# Submit the rollout job to a running cluster (started with: ray up examples/cluster/cluster.yaml).
# RAY_ADDRESS is the job server: http://127.0.0.1:8265 after `ray dashboard examples/cluster/cluster.yaml`.
# Rerunning this command resumes the job from the tree store in output_dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
ray job submit \
    --runtime-env examples/cluster/runtime_env.yaml \
    --submission-id "meds3-rollout-$(date +%Y%m%d-%H%M%S)" \
    -- python -m meds3 rollout --config examples/cluster/rollout_cluster.yaml --ray-address auto "$@"
