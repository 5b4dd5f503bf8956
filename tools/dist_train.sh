#!/usr/bin/env bash
# Data-parallel training through torchrun, on one machine or several:
#   tools/dist_train.sh CONFIG PROCESSES_PER_NODE [tools/train.py options]
# One machine:    tools/dist_train.sh CONFIG 8
# Several nodes:  run on every node, with the same MASTER_ADDR (node 0's address) and PORT:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 PORT=29500 tools/dist_train.sh CONFIG 8   # node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.1.1.1 PORT=29500 tools/dist_train.sh CONFIG 8   # node 1
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON (python).
# GPUs use NCCL; without CUDA the processes use gloo on CPU.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG PROCESSES_PER_NODE [tools/train.py options]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
TOOLS=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$(dirname "$TOOLS")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
