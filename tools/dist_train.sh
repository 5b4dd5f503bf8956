#!/usr/bin/env bash
# Data-parallel training on one machine: tools/dist_train.sh CONFIG NUM_PROCESSES [train.py options]
# GPUs use NCCL; without CUDA the processes use gloo on CPU. PORT (default 29500) and PYTHON may be set.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCESSES [tools/train.py options]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="${PORT:-29500}" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
