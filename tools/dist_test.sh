#!/usr/bin/env bash
# Multi-process evaluation: bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [extra test.py args]
set -euo pipefail
CONFIG=$1
CKPT=$2
NPROC=$3
shift 3
PORT=${PORT:-29500}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON=${PYTHON:-$( [ -x "$HERE/../.venv/bin/python" ] && echo "$HERE/../.venv/bin/python" || echo python3 )}
exec "$PYTHON" -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$HERE/test.py" "$CONFIG" "$CKPT" --launcher pytorch "$@"
