#!/usr/bin/env bash
# One-command setup of dfine-mmdet's project-local virtual environment.
#
#   bash tools/setup_env.sh            # create/complete .venv (idempotent)
#   bash tools/setup_env.sh --check    # only report what is missing, install nothing
#
# Installs into <repo>/.venv: torch, MMEngine, MMCV (with compiled ops), MMDetection,
# MMDeploy (--no-deps, so it cannot replace the chosen MMEngine), ONNX, ONNX Runtime,
# pycocotools, MIM, the test tools, and this plugin (editable). Every step first checks
# whether it is already satisfied and skips it if so, so a second run takes seconds.
# Components that already import are kept (e.g. a CUDA torch you installed yourself),
# even when their version differs from the pins below; a note is printed.
#
# Environment overrides:
#   PYTHON=python3.11        interpreter used to create .venv (default: python3.11, else python3)
#   TORCH_INDEX_URL=URL      index for the torch install, e.g. https://download.pytorch.org/whl/cpu
#                            (default: PyPI, which gives a CUDA build on Linux x86_64)
#   MAX_JOBS=N               parallel compile jobs for MMCV's ops (default: nproc)
#   DFINE_VENV=DIR           venv location (default: <repo>/.venv)
set -Eeuo pipefail  # -E: the ERR trap below also fires inside functions

# ---- pinned stack (keep in sync with README "Supported matrix") -----------------------
TORCH_VERSION=2.13.0
TORCH_MIN=2.4           # onedl-mmdetection 3.5.1 declares torch>=2.4
TORCH_MAX_EXCL=2.14     # torch>=2.14 headers require C++20; onedl-mmcv builds with -std=c++17
MMENGINE_SPEC='onedl-mmengine==0.10.12'
MMCV_SPEC='onedl-mmcv==2.3.6'
MMDET_SPEC='onedl-mmdetection==3.5.1'
MMDEPLOY_SPEC='mmdeploy==1.3.1'
# import name -> pip requirement for everything else (installed only when the import fails)
EXTRA_PKGS=(
  # mmdeploy 1.3.1 runtime deps (mmdeploy itself goes in with --no-deps)
  'aenum:aenum' 'grpc:grpcio' 'multiprocess:multiprocess' 'prettytable:prettytable'
  'six:six' 'terminaltables:terminaltables' 'matplotlib:matplotlib'
  'onnx:onnx==1.23.2' 'onnxruntime:onnxruntime==1.31.1' 'openvino:openvino==2026.4.1'
  'pycocotools:pycocotools==2.0.11' 'faster_coco_eval:faster-coco-eval==1.8.0'
  'scipy:scipy' 'mim:onedl-mim==0.5.1' 'pytest:pytest==9.2.0'
  # lint / format (setup.cfg, .pre-commit-config.yaml; tests/test_tools/test_lint.py)
  'flake8:flake8==7.5.0' 'isort:isort==9.0.2' 'yapf:yapf==0.43.0'
)

# ---- helpers ----------------------------------------------------------------------------
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DFINE_VENV:-$ROOT/.venv}"
VPY="$VENV/bin/python"
CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1
T0=$SECONDS
STEP='start'

log()  { printf '[setup] %s\n' "$*"; }
note() { printf '[setup] note: %s\n' "$*"; }
die() {
  printf '[setup] ERROR (%s): %s\n' "$STEP" "$1" >&2
  shift
  local line
  for line in "$@"; do printf '[setup]   %s\n' "$line" >&2; done
  exit 1
}
on_err() {
  local rc=$?
  trap - ERR
  die "a command failed with exit code $rc (see its output above)" \
      "fix the cause, then re-run: bash tools/setup_env.sh (finished steps are skipped)"
}
trap on_err ERR
step() { STEP="$1"; log "$1 ..."; }
DIRTY=1  # the state must be (re)probed: nothing probed yet, or pip installed something since
pip_install() { DIRTY=1; log "pip install $*"; "$VPY" -m pip install --disable-pip-version-check "$@"; }

# version_ge A B: true when version A >= version B (numeric dotted compare, local tags ignored)
version_ge() {
  local a="${1%%+*}" b="${2%%+*}"
  [[ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1)" == "$b" ]]
}

# One interpreter start reports the whole state as key=value lines (fast re-runs).
declare -A S
probe() {
  [[ $DIRTY == 1 ]] || return 0
  DIRTY=0
  S=()
  local line
  while IFS= read -r line; do
    [[ "$line" == *=* ]] && S["${line%%=*}"]="${line#*=}"
  done < <("$VPY" - "$ROOT" "${EXTRA_PKGS[@]}" <<'PY' 2>/dev/null || true
import importlib.metadata as md
import importlib.util
import os
import sys
import sysconfig

root, extras = sys.argv[1], sys.argv[2:]
print('python=%d.%d' % sys.version_info[:2])
print('pyinclude=' + sysconfig.get_paths()['include'])


def dist_version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return ''


print('pip=' + dist_version('pip'))
for name in ('setuptools', 'wheel', 'packaging', 'onedl-mmcv', 'onedl-mim'):
    print(f'dist_{name}=' + dist_version(name))
try:
    import torch
    print('torch=' + torch.__version__)
    print('torch_cuda=' + (torch.version.cuda or ''))
except Exception as exc:  # noqa: BLE001
    print('torch=')
    print('torch_err=' + repr(exc).replace('\n', ' '))
else:
    for mod in ('mmengine', 'mmcv', 'mmdet', 'mmdeploy'):
        try:
            m = importlib.import_module(mod)
            print(f'{mod}=' + getattr(m, '__version__', '?'))
        except Exception as exc:  # noqa: BLE001
            print(f'{mod}=')
            print(f'{mod}_err=' + repr(exc).replace('\n', ' '))
    try:
        import mmcv.ops  # noqa: F401  (loads the compiled mmcv._ext)
        print('mmcv_ops=1')
    except Exception as exc:  # noqa: BLE001
        print('mmcv_ops=0')
        print('mmcv_ops_err=' + repr(exc).replace('\n', ' ')[:300])
missing = [spec for item in extras
           for mod, spec in [item.split(':', 1)]
           if importlib.util.find_spec(mod) is None]
print('missing_extras=' + ' '.join(missing))
spec = importlib.util.find_spec('dfine_mmdet')
here = os.path.realpath(os.path.join(root, 'dfine_mmdet'))
ok = (spec is not None and spec.origin is not None and dist_version('dfine-mmdet') != ''
      and os.path.realpath(os.path.dirname(spec.origin)) == here)
print('plugin=' + ('1' if ok else '0'))
PY
  )
  return 0
}

# ---- 1. Python --------------------------------------------------------------------------
step 'checking Python'
if [[ ! -x "$VPY" ]]; then
  if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
  fi
  command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' interpreter found" \
    "install Python 3.11 (3.10-3.12 work; 3.11 is tested) and re-run, e.g. PYTHON=/path/to/python3.11 bash tools/setup_env.sh"
  PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
  BASE_PY="$PYTHON"
else
  probe
  PYVER="${S[python]:-}"
  BASE_PY="$VPY"
fi
case "$PYVER" in
  3.10|3.11|3.12) log "Python $PYVER ($BASE_PY)";;
  *) die "Python '${PYVER:-unknown}' from $BASE_PY is not supported" \
       "MMCV/MMDetection (onedl 2.3.6/3.5.1) support Python 3.10-3.12; this project is tested on 3.11" \
       "install python3.11, delete .venv if it was created with the wrong Python, then:" \
       "  PYTHON=python3.11 bash tools/setup_env.sh";;
esac
[[ "$PYVER" == 3.11 ]] || note "Python $PYVER is expected to work but only 3.11 is tested"

# ---- 2. virtual environment -------------------------------------------------------------
step "virtual environment $VENV"
if [[ -x "$VPY" ]]; then
  log "exists, reusing it"
else
  [[ $CHECK_ONLY == 1 ]] && die "$VENV does not exist" "run: bash tools/setup_env.sh"
  DIRTY=1
  "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed" \
    "on Debian/Ubuntu install the venv module: apt-get install python3.11-venv (or python3-venv)"
fi
probe
[[ -n "${S[python]:-}" ]] || die "$VPY does not run" "delete $VENV and re-run bash tools/setup_env.sh"

# ---- 3. pip -----------------------------------------------------------------------------
step 'pip'
if version_ge "${S[pip]:-0}" 24.0; then
  log "pip ${S[pip]} ok"
elif [[ $CHECK_ONLY == 1 ]]; then
  die "pip ${S[pip]:-?} is older than 24.0" "run: bash tools/setup_env.sh"
else
  pip_install -U 'pip>=24'
fi

# ---- 4. torch ---------------------------------------------------------------------------
step 'torch'
if [[ -z "${S[torch]:-}" ]]; then
  [[ $CHECK_ONLY == 1 ]] && die "torch is not installed (${S[torch_err]:-})" "run: bash tools/setup_env.sh"
  TORCH_ARGS=("torch==$TORCH_VERSION")
  [[ -n "${TORCH_INDEX_URL:-}" ]] && TORCH_ARGS+=(--index-url "$TORCH_INDEX_URL")
  log "installing torch $TORCH_VERSION (to use your own CUDA build, install it into .venv first; see README)"
  pip_install "${TORCH_ARGS[@]}"
  probe
  [[ -n "${S[torch]:-}" ]] || die "torch still does not import: ${S[torch_err]:-}" \
    "check the pip output above; on another machine set TORCH_INDEX_URL (see README)"
else
  log "torch ${S[torch]} found in the venv (cuda: ${S[torch_cuda]:-none})"
fi
TV="${S[torch]}"
if ! version_ge "$TV" "$TORCH_MIN"; then
  die "torch $TV is too old (need >= $TORCH_MIN, tested $TORCH_VERSION)" \
    "install a supported torch into .venv, e.g. .venv/bin/pip install torch==$TORCH_VERSION, then re-run"
fi
if version_ge "$TV" "$TORCH_MAX_EXCL" && [[ "${S[mmcv_ops]:-0}" != 1 ]]; then
  die "torch $TV is too new for MMCV's compiled ops" \
    "torch >= $TORCH_MAX_EXCL headers require C++20 (pytorch/pytorch#178150: '#error C++20 or later compatible compiler is required to use ATen')" \
    "but onedl-mmcv 2.3.6's setup.py compiles its ops with -std=c++17, so the build fails." \
    "Install torch < $TORCH_MAX_EXCL into .venv (tested: $TORCH_VERSION), e.g." \
    "  .venv/bin/pip install torch==$TORCH_VERSION   (add --index-url https://download.pytorch.org/whl/cuXXX for a CUDA build)" \
    "then re-run bash tools/setup_env.sh"
fi
[[ "${TV%%+*}" == "$TORCH_VERSION" ]] || note "torch $TV differs from the tested $TORCH_VERSION"

# ---- 5. MMEngine ------------------------------------------------------------------------
step 'MMEngine'
if [[ -n "${S[mmengine]:-}" ]]; then
  log "mmengine ${S[mmengine]} already importable, keeping it"
else
  [[ $CHECK_ONLY == 1 ]] && die "mmengine does not import" "run: bash tools/setup_env.sh"
  pip_install "$MMENGINE_SPEC"
fi

# ---- 6. MMCV with compiled ops ----------------------------------------------------------
step 'MMCV (compiled ops)'
probe
if [[ "${S[mmcv_ops]:-0}" == 1 ]]; then
  log "mmcv ${S[mmcv]} with compiled ops already importable, keeping it"
else
  [[ $CHECK_ONLY == 1 ]] && die "mmcv.ops does not import: ${S[mmcv_ops_err]:-${S[mmcv_err]:-}}" \
    "run: bash tools/setup_env.sh"
  CXX_BIN="${CXX:-g++}"; CC_BIN="${CC:-gcc}"
  command -v "$CXX_BIN" >/dev/null 2>&1 && command -v "$CC_BIN" >/dev/null 2>&1 || die \
    "no C/C++ compiler found ('$CC_BIN' / '$CXX_BIN'); MMCV's ops are compiled from source" \
    "install one (Debian/Ubuntu: apt-get install build-essential; any gcc/g++ >= 9 with C++17) and re-run," \
    "or point CC/CXX at your compiler"
  [[ -f "${S[pyinclude]}/Python.h" ]] || die "Python headers missing (${S[pyinclude]}/Python.h)" \
    "install them (Debian/Ubuntu: apt-get install python3.11-dev) and re-run"
  BUILD_REQS=()
  version_ge "${S[dist_setuptools]:-0}" 80 || BUILD_REQS+=('setuptools>=80')
  [[ -n "${S[dist_wheel]:-}" ]] || BUILD_REQS+=(wheel)
  version_ge "${S[dist_packaging]:-0}" 24.2 || BUILD_REQS+=('packaging>=24.2')
  command -v ninja >/dev/null 2>&1 || [[ -x "$VENV/bin/ninja" ]] || BUILD_REQS+=(ninja)
  (( ${#BUILD_REQS[@]} )) && pip_install "${BUILD_REQS[@]}"
  JOBS="${MAX_JOBS:-$(nproc)}"
  log "building $MMCV_SPEC against torch $TV with MMCV_WITH_OPS=1 MAX_JOBS=$JOBS"
  log "(compiling from source takes ~15 min on 2 cores; pip reuses its cached wheel on later installs)"
  # PATH: torch's cpp_extension finds the venv's ninja only when the venv's bin dir is on PATH.
  PATH="$VENV/bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS="$JOBS" \
    pip_install --no-build-isolation "$MMCV_SPEC"
  probe
  if [[ "${S[mmcv_ops]:-0}" != 1 ]]; then
    # An installed/cached wheel built against another torch fails to load its _ext: rebuild.
    log "mmcv.ops still fails (${S[mmcv_ops_err]:-}); rebuilding without pip's wheel cache"
    PATH="$VENV/bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS="$JOBS" \
      pip_install --no-build-isolation --no-cache-dir --force-reinstall --no-deps "$MMCV_SPEC"
    probe
    [[ "${S[mmcv_ops]:-0}" == 1 ]] || die "mmcv.ops does not import after a clean build: ${S[mmcv_ops_err]:-}" \
      "read the compiler errors above; a 'C++20 or later' error means torch is too new (use torch < $TORCH_MAX_EXCL)"
  fi
fi

# ---- 7. MMDetection ---------------------------------------------------------------------
step 'MMDetection'
if [[ -n "${S[mmdet]:-}" ]]; then
  log "mmdet ${S[mmdet]} already importable, keeping it"
else
  [[ $CHECK_ONLY == 1 ]] && die "mmdet does not import: ${S[mmdet_err]:-}" "run: bash tools/setup_env.sh"
  if [[ -z "${S[dist_onedl-mmcv]:-}" ]]; then
    # mmcv came from another distribution: do not let pip pull onedl-mmcv over it.
    pip_install --no-deps "$MMDET_SPEC"
    pip_install matplotlib numpy pycocotools scipy shapely six terminaltables tqdm
  else
    pip_install "$MMDET_SPEC"
  fi
fi

# ---- 8. MMDeploy, ONNX, ONNX Runtime, COCO tools, MIM, test tools -----------------------
step 'MMDeploy and the other Python packages'
probe
if [[ -n "${S[mmdeploy]:-}" ]]; then
  log "mmdeploy ${S[mmdeploy]} already importable, keeping it"
else
  [[ $CHECK_ONLY == 1 ]] && die "mmdeploy does not import: ${S[mmdeploy_err]:-}" "run: bash tools/setup_env.sh"
  # --no-deps: mmdeploy 1.3.1 requires the 'mmengine' distribution (and protobuf<=3.20.2), which would
  # replace onedl-mmengine; its runtime deps are listed in EXTRA_PKGS instead.
  pip_install --no-deps "$MMDEPLOY_SPEC"
  note "pip may now report 'mmdeploy 1.3.1 requires mmengine' / 'protobuf<=3.20.2': expected and harmless" \
       "(onedl-mmengine provides the mmengine module; the ONNX export path works with the newer protobuf)"
fi
if [[ -n "${S[missing_extras]:-}" ]]; then
  [[ $CHECK_ONLY == 1 ]] && die "missing packages: ${S[missing_extras]}" "run: bash tools/setup_env.sh"
  # shellcheck disable=SC2086  # word splitting of the requirement list is intended
  pip_install ${S[missing_extras]}
else
  log "onnx, onnxruntime, pycocotools, faster-coco-eval, scipy, mim, pytest, flake8, isort, yapf: all importable"
fi

# ---- 9. the plugin ----------------------------------------------------------------------
step 'dfine_mmdet (editable install of this checkout)'
probe
if [[ -z "${S[dist_onedl-mim]:-}" ]]; then
  note "the 'mim' module is not from onedl-mim; 'mim train mmdetection' needs onedl-mim with onedl-mmdetection"
fi
if [[ "${S[plugin]:-0}" == 1 ]]; then
  log "dfine_mmdet already installed from $ROOT"
else
  [[ $CHECK_ONLY == 1 ]] && die "dfine_mmdet is not installed from $ROOT" "run: bash tools/setup_env.sh"
  pip_install --no-build-isolation --no-deps -e "$ROOT"
fi

# ---- 10. final import check -------------------------------------------------------------
step 'final import check'
"$VPY" - <<'PY' || die "the final import check failed (traceback above)" \
  "re-run bash tools/setup_env.sh; if it persists, delete .venv and run it again"
import warnings
warnings.simplefilter('ignore')
import torch
import mmcv
import mmcv.ops
import mmengine
import mmdet
import mmdeploy
import onnx
import onnxruntime
import dfine_mmdet

boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
_, keep = mmcv.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
assert keep.tolist() == [0, 2], keep  # the compiled CPU op runs
print('[setup] versions: torch %s | mmengine %s | mmcv %s (ops ok) | mmdet %s | mmdeploy %s | '
      'onnx %s | onnxruntime %s | dfine_mmdet %s' % (
          torch.__version__, mmengine.__version__, mmcv.__version__, mmdet.__version__,
          mmdeploy.__version__, onnx.__version__, onnxruntime.__version__,
          dfine_mmdet.__version__))
PY
log "done in $((SECONDS - T0)) s. Run the tests with: .venv/bin/python -m pytest"
