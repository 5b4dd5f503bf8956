#!/usr/bin/env bash
# Distributed evaluation through torchrun, on one machine or several:
#   tools/dist_test.sh CONFIG CHECKPOINT PROCESSES_PER_NODE [tools/test.py options]
# Several nodes: run on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set, as
# tools/dist_train.sh. Environment defaults: NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1
# PORT=29500 PYTHON=python. GPUs use NCCL; without CUDA the processes use gloo on CPU.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT PROCESSES_PER_NODE [tools/test.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
TOOLS=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$(dirname "$TOOLS")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
