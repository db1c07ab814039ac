"""``tools/setup_env.sh`` (the README's setup command) and ``.ci/run``.

* ``--check`` against the project venv: everything the script installs is
  importable and the compiled MMCV ops run (the script's own final check).
* Failure paths, driven by a stand-in interpreter that prints the state the
  script probes (a shell script, so no venv is touched): wrong Python, torch
  too new for MMCV's C++17 build, no C++ compiler. Each must stop with exit
  code 1 and say what to do.
* ``.ci/run`` runs exactly the README's setup and test commands.
"""
import os
import os.path as osp
import re
import stat
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'setup_env.sh')


def run_setup(*args, env=None, timeout=300):
    return subprocess.run(['bash', SCRIPT, *args],
                          capture_output=True,
                          text=True,
                          timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def fake_python(path, lines):
    """An executable that ignores its arguments and prints ``lines`` (the
    probe's output)."""
    path.write_text('#!/bin/sh\ncat >/dev/null 2>&1\nprintf "%s\\n" ' +
                    ' '.join(f"'{ln}'" for ln in lines) + '\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def fake_venv(tmp_path, lines):
    (tmp_path / 'venv' / 'bin').mkdir(parents=True)
    fake_python(tmp_path / 'venv' / 'bin' / 'python', lines)
    return str(tmp_path / 'venv')


def test_check_mode_on_project_venv():
    venv = osp.join(ROOT, '.venv')
    if osp.realpath(sys.prefix) != osp.realpath(venv):
        import pytest
        pytest.skip(
            f'tests are not running from {venv} (sys.prefix={sys.prefix})')
    proc = run_setup('--check')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for expected in ('[setup] Python 3.', 'pip', 'torch', 'mmengine',
                     'with compiled ops', 'mmdet', 'mmdeploy',
                     'already installed from', '[setup] versions: torch'):
        assert expected in out, (expected, out)
    # the script refuses nothing and installs nothing in --check mode
    assert 'pip install' not in out, out
    seconds = int(re.search(r'done in (\d+) s', out).group(1))
    assert seconds < 60, out


def test_wrong_python_is_refused(tmp_path):
    py = fake_python(tmp_path / 'python3.9', ['3.9'])
    proc = run_setup(env=dict(PYTHON=py, DFINE_VENV=str(tmp_path / 'venv')))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("Python '3.9'" in proc.stderr
            and 'Python 3.10-3.12' in proc.stderr), proc.stderr
    assert 'PYTHON=python3.11 bash tools/setup_env.sh' in proc.stderr, (
        proc.stderr)
    assert not (tmp_path / 'venv').exists()


def test_missing_python_is_refused(tmp_path):
    proc = run_setup(
        env=dict(
            PYTHON=str(tmp_path / 'nope'), DFINE_VENV=str(tmp_path / 'v')))
    assert proc.returncode == 1
    assert ('interpreter found' in proc.stderr
            and 'Python 3.11' in proc.stderr), proc.stderr


def test_torch_too_new_is_refused(tmp_path):
    venv = fake_venv(tmp_path, [
        'python=3.11', 'pip=26.3', 'torch=2.14.1+cpu', 'torch_cuda=',
        'mmengine=0.10.12', 'mmcv=', 'mmcv_ops=0'
    ])
    proc = run_setup(env=dict(DFINE_VENV=venv))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr
    assert 'torch 2.14.1+cpu is too new' in err, err
    assert 'C++20' in err and 'c++17' in err and 'torch==2.13.0' in err, err
    # refused before installing anything
    assert 'pip install' not in proc.stdout


def test_torch_too_old_is_refused(tmp_path):
    venv = fake_venv(tmp_path,
                     ['python=3.11', 'pip=26.3', 'torch=2.3.1', 'mmcv_ops=0'])
    proc = run_setup(env=dict(DFINE_VENV=venv))
    assert proc.returncode == 1
    assert 'torch 2.3.1 is too old' in proc.stderr, proc.stderr


def test_missing_compiler_is_reported(tmp_path):
    venv = fake_venv(tmp_path, [
        'python=3.11', 'pip=26.3', 'torch=2.13.0+cpu', 'torch_cuda=',
        'mmengine=0.10.12', 'mmcv=', 'mmcv_ops=0', 'pyinclude=' + str(tmp_path)
    ])
    proc = run_setup(env=dict(DFINE_VENV=venv, CXX=str(tmp_path / 'no-g++')))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ('ERROR (MMCV (compiled ops)): no C/C++ compiler found'
            in proc.stderr), proc.stderr
    assert 'build-essential' in proc.stderr
    assert 'pip install' not in proc.stdout


def _command_lines(path):
    with open(path, encoding='utf-8') as f:
        return [
            ln.rstrip('\n') for ln in f if ln.strip()
            and not ln.startswith('#') and not ln.startswith('set ')
        ]


def test_ci_runs_exactly_the_readme_commands():
    ci = _command_lines(osp.join(ROOT, '.ci', 'run'))
    assert ci == ['bash tools/setup_env.sh', '.venv/bin/python -m pytest'], ci
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme_lines = [ln.strip() for ln in f]
    for line in ci:
        assert line in readme_lines, (
            f'README.md must show the line {line!r} on its own')
