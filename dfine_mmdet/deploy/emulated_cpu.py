"""Run an ONNX / OpenVINO graph on an emulated x86-64 CPU (QEMU user mode).

INT8 kernels are chosen at run time from the CPU's features (CPUID): with
VNNI or AMX, ``uint8 x int8`` products are summed in int32; without (AVX2
only, e.g. AMD Zen 3) they go through ``vpmaddubsw``, whose int16 pair sums
saturate (:mod:`.quantize`). ONNX Runtime (MLAS) picks its kernels from
CPUID and offers no switch that makes a VNNI machine run its AVX2 int8
kernels. QEMU's user mode does: ``qemu-x86_64 -cpu EPYC-Milan python
...`` runs the same Python and runtime binaries with an emulated CPUID and
emulated AVX2 (QEMU >= 7.2;
TCG has no AVX-512 and no VNNI), so the runtime takes the code path of that
CPU. It is slow (tens of seconds for a small graph), so it is meant for
checks, not timing.

OpenVINO also honours oneDNN's ``ONEDNN_MAX_CPU_ISA`` (e.g. ``AVX2``), which
makes it take the AVX2 int8 kernels natively, at full speed
(:func:`run_openvino_max_isa`); its results then equal those under QEMU.

:func:`run_on_cpu` writes the inputs to a temporary ``.npz``, runs this file
as a script under QEMU (the script imports only numpy and the runtime, not
``dfine_mmdet``), and reads the outputs back, together with the CPU
features that numpy detected inside the emulator
(``numpy._core._multiarray_umath.__cpu_features__``), so a caller can
verify that the emulated CPU really lacks VNNI.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

QEMU = 'qemu-x86_64'
#: AMD EPYC Zen 3 (Milan): AVX2 and FMA, no AVX-512, no VNNI
DEFAULT_CPU = 'EPYC-Milan'
#: numpy's names of the features that give int32 int8 dot products
VNNI_FEATURES = ('AVX512VNNI', 'AVX512_CLX', 'AVX512_ICL', 'AVX512_SPR',
                 'AVXVNNI', 'AVX_VNNI')


def qemu_path() -> Optional[str]:
    """Path of ``qemu-x86_64`` (``None`` when it is not installed; Debian /
    Ubuntu: ``apt-get install qemu-user``). Only on x86-64 hosts."""
    import platform
    if platform.machine().lower() not in ('x86_64', 'amd64'):
        return None
    return shutil.which(QEMU)


def run_on_cpu(model_file: str,
               inputs: Sequence[np.ndarray],
               cpu: str = DEFAULT_CPU,
               input_name: str = 'input',
               backend: str = 'onnxruntime',
               timeout: float = 3600) -> Tuple[List[List[np.ndarray]], Dict]:
    """Run ``model_file`` on each input array under an emulated ``cpu``.

    Args:
        model_file (str): ``.onnx`` (ONNX Runtime, CPU provider, or OpenVINO)
            or ``.xml`` (OpenVINO IR).
        inputs (Sequence[np.ndarray]): one array per run, fed as
            ``input_name``.
        cpu (str): a QEMU CPU model (``qemu-x86_64 -cpu help``), e.g.
            ``EPYC-Milan`` (Zen 3), ``Haswell-v4``, ``Skylake-Client``.
        backend (str): ``onnxruntime`` or ``openvino`` (FP32 inference
            precision, as the deploy configs).
        timeout (float): seconds for the whole emulated run.

    Returns:
        tuple: the outputs of each run (graph output order), and
        ``{'features': {name: bool}, 'vnni': bool}`` as seen by numpy inside
        the emulator.

    Raises:
        RuntimeError: no ``qemu-x86_64`` here, or the emulated run failed
            (its stderr is in the message).
    """
    qemu = qemu_path()
    if qemu is None:
        raise RuntimeError(f'{QEMU} not found: install QEMU user mode '
                           '(apt-get install qemu-user) to emulate a CPU')
    return _run_script([qemu, '-cpu', cpu], {}, model_file, inputs, input_name,
                       backend, timeout, f'emulated {cpu}')


def run_openvino_max_isa(
        model_file: str,
        inputs: Sequence[np.ndarray],
        isa: str = 'AVX2',
        input_name: str = 'input',
        timeout: float = 1800) -> Tuple[List[List[np.ndarray]], Dict]:
    """Run ``model_file`` in OpenVINO (FP32 inference precision) in a child
    process whose oneDNN kernels are capped at ``isa``
    (``ONEDNN_MAX_CPU_ISA``, e.g. ``AVX2``: no VNNI, no AVX-512). OpenVINO
    honours it (measured: its INT8 results then equal those on an emulated
    AVX2-only CPU); ONNX Runtime has no such switch (use
    :func:`run_on_cpu`). Fast: native speed. Returns as :func:`run_on_cpu`
    (``features`` are this CPU's: the cap does not change CPUID)."""
    return _run_script([], dict(ONEDNN_MAX_CPU_ISA=isa), model_file, inputs,
                       input_name, 'openvino', timeout,
                       f'ONEDNN_MAX_CPU_ISA={isa}')


def _run_script(prefix, env_extra, model_file, inputs, input_name, backend,
                timeout, where):
    """This file as a child script (``prefix``: e.g. the QEMU command)."""
    if backend not in ('onnxruntime', 'openvino'):
        raise ValueError(f'backend {backend!r}: expected onnxruntime or '
                         'openvino')
    if not osp.isfile(model_file):
        raise FileNotFoundError(f'model file not found: {model_file}')
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = osp.join(tmp, 'in.npz'), osp.join(tmp, 'out.npz')
        np.savez(src, *[np.ascontiguousarray(a) for a in inputs])
        env = dict(os.environ, OMP_NUM_THREADS='1', **env_extra)
        cmd = prefix + [
            sys.executable,
            osp.abspath(__file__), backend, model_file, input_name, src, dst
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0 or not osp.isfile(dst):
            err = '\n'.join(line for line in proc.stderr.splitlines()
                            if "TCG doesn't support" not in line)
            raise RuntimeError(f'{model_file} with {where} failed '
                               f'(exit {proc.returncode}): {err[-2000:]}')
        with np.load(dst) as data:
            info = json.loads(str(data['info']))
            outs = [[data[f'r{i}_o{j}'] for j in range(info['num_outputs'])]
                    for i in range(len(inputs))]
    info['vnni'] = any(info['features'].get(k) for k in VNNI_FEATURES)
    return outs, info


def _main(backend, model_file, input_name, src, dst):
    """Entry point inside the emulator: numpy and the runtime only."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    with np.load(src) as data:
        arrays = [data[f'arr_{i}'] for i in range(len(data.files))]
    if backend == 'onnxruntime':
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(
            model_file, opts, providers=['CPUExecutionProvider'])
        results = [sess.run(None, {input_name: a}) for a in arrays]
    else:
        import openvino as ov
        compiled = ov.Core().compile_model(
            model_file, 'CPU',
            dict(INFERENCE_PRECISION_HINT='f32', INFERENCE_NUM_THREADS=1))
        results = [[np.asarray(compiled(a)[o]) for o in compiled.outputs]
                   for a in arrays]
    out = {
        f'r{i}_o{j}': o
        for i, r in enumerate(results)
        for j, o in enumerate(r)
    }
    info = dict(
        features={
            k: bool(v)
            for k, v in __cpu_features__.items()
        },
        num_outputs=len(results[0]) if results else 0)
    np.savez(dst, info=np.array(json.dumps(info)), **out)


if __name__ == '__main__':
    _main(*sys.argv[1:6])
