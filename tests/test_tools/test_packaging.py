"""``setup.py`` packages every plugin module, and a regular (non-editable)
install works.

Builds a wheel from this checkout (no network:
``--no-build-isolation --no-deps``), checks that it contains every ``.py``
file of ``dfine_mmdet``, installs it into a scratch ``--target`` directory and
imports the plugin from there in a subprocess.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PKG = osp.join(ROOT, 'dfine_mmdet')


def _source_files():
    out = set()
    for dirpath, dirnames, files in os.walk(PKG):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        for f in files:
            if f.endswith('.py'):
                out.add(
                    osp.relpath(osp.join(dirpath, f),
                                ROOT).replace(os.sep, '/'))
    return out


def test_every_package_dir_has_init():
    for dirpath, dirnames, files in os.walk(PKG):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        if any(f.endswith('.py') for f in files):
            assert '__init__.py' in files, (
                f'{osp.relpath(dirpath, ROOT)} has modules but no '
                '__init__.py, so setuptools.find_packages() leaves it out of '
                'the wheel')


def test_wheel_contains_plugin_and_regular_install_imports(tmp_path):
    # build from a copy: an in-tree build would leave build/ and a stale
    # build/lib behind
    src, wheel_dir = tmp_path / 'src', tmp_path / 'wheel'
    shutil.copytree(
        PKG,
        src / 'dfine_mmdet',
        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    for name in ('setup.py', 'README.md', 'MANIFEST.in', 'LICENSE'):
        if osp.exists(osp.join(ROOT, name)):
            shutil.copy(osp.join(ROOT, name), src / name)
    proc = subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '--disable-pip-version-check', '-w',
        str(wheel_dir),
        str(src)
    ],
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheels = list(wheel_dir.glob('dfine_mmdet-*.whl'))
    assert len(wheels) == 1, list(wheel_dir.iterdir())
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    missing = sorted(_source_files() - names)
    assert not missing, f'wheel lacks {missing}'
    assert not [
        n for n in names if n.startswith(('tests/', 'tools/', 'configs/'))
    ], names

    target = tmp_path / 'site'
    proc = subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
        '--disable-pip-version-check', '--target',
        str(target),
        str(wheels[0])
    ],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    code = ('import sys; sys.path.insert(0, sys.argv[1]); import dfine_mmdet; '
            'print(dfine_mmdet.__file__, dfine_mmdet.__version__)')
    proc = subprocess.run(
        [sys.executable, '-c', code, str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    path, version = proc.stdout.split()[-2:]
    assert path.startswith(str(target)), path
    import dfine_mmdet
    assert version == dfine_mmdet.__version__


def test_plugin_does_not_depend_on_distribution_names():
    """The plugin imports ``mmdet``/``mmcv``/``mmengine`` modules only; it
    never asks which distribution provides them (onedl-* forks or OpenMMLab's
    packages)."""
    import re
    forbidden = re.compile(
        r'importlib[._]metadata|pkg_resources|get_distribution|'
        r'metadata\.version\(|is_installed\(|get_installed_path\(')
    offenders = []
    for rel in sorted(_source_files()):
        with open(osp.join(ROOT, rel), encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                code = line.split('#', 1)[0]
                if forbidden.search(code):
                    offenders.append(f'{rel}:{lineno}: {line.strip()}')
    assert not offenders, offenders
