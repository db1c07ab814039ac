#!/usr/bin/env bash
# Converted D-FINE checkpoint -> ONNX (and TensorRT engine) via MMDeploy.
#
#   tools/deploy.sh CHECKPOINT [VARIANT] [TARGET] [extra tools/deploy.py args]
#
#   VARIANT: n s m l x                                   (default: n)
#   TARGET:  ort | ort-dynamic | ov | ov-dynamic (OpenVINO) |
#            trt | trt-dynamic | trt-fp16 | trt-fp16-dynamic
#            (default: ort; trt* use --device cuda:0)
#
# Examples:
#   tools/deploy.sh dfine_n_coco_mmdet.pth n ort --img demo.jpg --check
#   tools/deploy.sh dfine_s_coco_mmdet.pth s trt-fp16
# Output: work_dirs/deploy/dfine_<variant>_<target>/end2end.onnx (+ .engine / .xml)
# PYTHON=/path/to/python picks the interpreter (default: python on PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CKPT="${1:?usage: tools/deploy.sh CHECKPOINT [VARIANT] [TARGET] [args...]}"
VARIANT="${2:-n}"
TARGET="${3:-ort}"
shift $(( $# < 3 ? $# : 3 ))

case "$TARGET" in
  ort)              CFG=detection_onnxruntime_static-640x640.py ;;
  ort-dynamic)      CFG=detection_onnxruntime_dynamic-batch-640x640.py ;;
  ov)               CFG=detection_openvino_static-640x640.py ;;
  ov-dynamic)       CFG=detection_openvino_dynamic-batch-640x640.py ;;
  trt)              CFG=detection_tensorrt_static-640x640.py ;;
  trt-dynamic)      CFG=detection_tensorrt_dynamic-batch-640x640.py ;;
  trt-fp16)         CFG=detection_tensorrt-fp16_static-640x640.py ;;
  trt-fp16-dynamic) CFG=detection_tensorrt-fp16_dynamic-batch-640x640.py ;;
  *) echo "unknown TARGET '$TARGET'" >&2; exit 2 ;;
esac
DEVICE=cpu
[[ "$TARGET" == trt* ]] && DEVICE="${DEPLOY_DEVICE:-cuda:0}"

exec "${PYTHON:-python}" "$ROOT/tools/deploy.py" \
  "$ROOT/configs/deploy/$CFG" \
  "$ROOT/configs/dfine/dfine_hgnetv2_${VARIANT}_coco.py" \
  "$CKPT" \
  --work-dir "work_dirs/deploy/dfine_${VARIANT}_${TARGET}" \
  --device "$DEVICE" "$@"
