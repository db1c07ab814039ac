"""``import dfine_mmdet`` registers the plugin into MMDetection's registries,
and the docs/components.md's table lists exactly what is registered.

Everything is collected in a fresh interpreter that only runs
``import dfine_mmdet``, so modules imported by other tests cannot hide a
missing import line in a subpackage ``__init__.py``.
"""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
README = osp.join(ROOT, 'docs',
                  'components.md')  # the table moved out of README.md
TABLE_START = '<!-- registered-components:start -->'
TABLE_END = '<!-- registered-components:end -->'

COLLECT = r'''
import json, sys, warnings
warnings.simplefilter('ignore')
import mmengine.registry as mme_reg
import mmdet.registry as mmdet_reg
from mmengine.registry import Registry
import dfine_mmdet

def walk(module):
    out = []
    for reg_name, reg in vars(module).items():
        if not isinstance(reg, Registry):
            continue
        for name, obj in reg.module_dict.items():
            mod = getattr(obj, '__module__', '') or ''
            if mod.split('.')[0] == 'dfine_mmdet':
                out.append([reg_name, reg.scope, name, mod])
    return out

print(json.dumps(dict(
    mmdet=walk(mmdet_reg), mmengine=walk(mme_reg),
    modules=sorted(m for m in sys.modules
                   if m.split('.')[0] == 'dfine_mmdet'))))
'''


@pytest.fixture(scope='module')
def collected():
    proc = subprocess.run([sys.executable, '-c', COLLECT],
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, (
        f'import dfine_mmdet failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def readme_table():
    """Rows ``(registry, name, module)`` of README's registered-components
    table."""
    with open(README, encoding='utf-8') as f:
        text = f.read()
    assert TABLE_START in text and TABLE_END in text, (
        f'README.md must keep the table between {TABLE_START} and {TABLE_END}')
    body = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    rows = []
    for line in body.splitlines():
        cells = [
            c.strip().strip('`') for c in line.strip().strip('|').split('|')
        ]
        if len(cells) < 3 or cells[0] in ('Registry', '') or set(
                cells[0]) <= set('-: '):
            continue
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_readme_table_parses():
    rows = readme_table()
    keys = [(r, n) for r, n, _ in rows]
    assert len(keys) == len(
        set(keys)), f'duplicate rows in README table: {keys}'
    for reg, name, module in rows:
        assert re.fullmatch(r'[A-Z_]+', reg), f'bad registry cell {reg!r}'
        assert module.startswith(
            'dfine_mmdet.'), f'{name}: module cell {module!r}'


def test_every_readme_component_is_registered(collected):
    registered = {(r, n): m for r, scope, n, m in collected['mmdet']}
    missing = [(r, n) for r, n, _ in readme_table()
               if (r, n) not in registered]
    assert not missing, (
        'README.md lists components that `import dfine_mmdet` does not '
        f'register in mmdet.registry: {missing}')
    wrong_module = [(r, n, m, registered[(r, n)])
                    for r, n, m in readme_table() if registered[(r, n)] != m]
    assert not wrong_module, (
        f'README module column differs from the class module: {wrong_module}')


def test_every_registered_component_is_in_readme(collected):
    listed = {(r, n) for r, n, _ in readme_table()}
    unlisted = [(r, n, m) for r, scope, n, m in collected['mmdet']
                if (r, n) not in listed]
    assert not unlisted, (
        'add these rows to the "Registered components" table in README.md '
        f'(registry | name | module | concept): {unlisted}')


def test_components_use_the_mmdet_scope(collected):
    for reg, scope, name, module in collected['mmdet']:
        assert scope == 'mmdet', (reg, name, scope)
    # registering into mmengine's root registries would bypass
    # default_scope='mmdet'
    assert not collected['mmengine'], (
        'register plugin classes with mmdet.registry, not mmengine.registry: '
        f'{collected["mmengine"]}')


def _registering_modules():
    """Plugin modules whose source registers something (mmdet registries or
    mmdeploy rewriters)."""
    pattern = re.compile(
        r'\.register_module\(|register_rewriter\(|register_symbolic\(')
    found = []
    pkg_root = osp.join(ROOT, 'dfine_mmdet')
    for dirpath, _, files in __import__('os').walk(pkg_root):
        for fname in files:
            if not fname.endswith('.py'):
                continue
            path = osp.join(dirpath, fname)
            with open(path, encoding='utf-8') as f:
                if not pattern.search(f.read()):
                    continue
            rel = osp.relpath(path, ROOT)[:-3].replace(osp.sep, '.')
            found.append(
                rel[:-len('.__init__')] if rel.endswith('.__init__') else rel)
    return sorted(found)


def test_import_dfine_mmdet_imports_every_registering_module(collected):
    imported = set(collected['modules'])
    mmdeploy_present = 'dfine_mmdet.deploy' in imported
    expected = [
        m for m in _registering_modules()
        if mmdeploy_present or not m.startswith('dfine_mmdet.deploy')
    ]
    not_imported = [m for m in expected if m not in imported]
    assert not not_imported, (
        'these modules register components but `import dfine_mmdet` never '
        'imports them; add an import line to their package __init__.py: '
        f'{not_imported}')
