"""Every command the pages show is run by a test or by CI.

The table between ``<!-- command-tests:start -->`` and
``<!-- command-tests:end -->`` in docs/testing.md maps command prefixes to
the tests that run them (see that page). Checked here:

* every command of README.md, projects_readme.md, docs/**/*.md and
  configs/**/README.md (shell-block lines, and inline code that starts like a
  command) starts with a prefix of the table, or is on a page the table says is
  run from top to bottom;
* every test file (and ``::test`` function) a row names exists, and, for a
  script command, names the script it runs;
* a ``CI`` row's command is a line of ``.ci/run``; a ``not run here`` row gives
  its reason;
* every row is used by some page.

Plus the two commands no other test runs: ``source .venv/bin/activate`` and
``bash tools/dist_test.sh``.
"""
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
from markdown_utils import (ROOT, code_spans, doc_pages, normalize, options,
                            page_commands, read, table_rows)

MARKERS = ('<!-- command-tests:start -->', '<!-- command-tests:end -->')
TABLE_PAGE = 'docs/testing.md'


def _scripts_of(prefixes):
    """``tools/`` scripts a row says run its commands (e.g. the pip lines of
    ``tools/setup_env.sh``)."""
    for row in ROWS:
        if row[0] == prefixes:
            return row[5]
    return []


def _rows():
    """``[(prefixes, tests, ci, not_run_reason, executed_page, scripts)]`` of
    the table (``scripts``: ``tools/`` files named in the row, which run the
    commands)."""
    out = []
    for cells in table_rows(read(TABLE_PAGE), *MARKERS):
        assert len(cells) == 2, f'{TABLE_PAGE}: a row needs 2 cells: {cells}'
        first, second = cells
        prefixes = code_spans(first)
        assert prefixes, f'{TABLE_PAGE}: no `command` in {first!r}'
        tests = [s for s in code_spans(second) if s.startswith('tests/')]
        scripts = [
            s for s in code_spans(second)
            if re.fullmatch(r'tools/\S+\.(?:sh|py)', s)
        ]
        for script in scripts:
            assert osp.isfile(osp.join(
                ROOT, script)), f'{TABLE_PAGE}: {script} does not exist'
        ci = second.startswith('CI')
        not_run = second.split(
            ':', 1)[1].strip() if second.startswith('not run') else None
        executed = prefixes[0] if prefixes[0].endswith('.md') else None
        out.append((prefixes, tests, ci, not_run, executed, scripts))
    return out


ROWS = _rows()


def _all_commands():
    cmds = []
    for page in doc_pages():
        cmds += page_commands(
            page, skip_between=MARKERS if page == TABLE_PAGE else None)
    return cmds


COMMANDS = _all_commands()


def _runs_on_page(cmd):
    """An inline mention on a page run in full is covered when the same
    program and options run in one of that page's blocks."""
    words = normalize(cmd.text).split()
    program = ' '.join(words[:2])
    for other in COMMANDS:
        if other.page == cmd.page and not other.inline and normalize(
                other.text).startswith(program) and set(options(
                    cmd.text)) <= set(options(other.text)):
            return True
    return False


def _match(cmd):
    """The row (and prefix) covering a command: a page run in full, else
    the longest matching prefix."""
    for row in ROWS:
        if row[4] == cmd.page and (not cmd.inline or _runs_on_page(cmd)):
            return row, row[4]
    best = None
    text = normalize(cmd.text)
    for row in ROWS:
        for prefix in row[0]:
            p = normalize(prefix)
            if (text == p or text.startswith(p + ' ')
                    or (p.endswith('.') and text.startswith(p))):
                if best is None or len(p) > len(best[1]):
                    best = (row, p)
    return best


def test_commands_are_found():
    """The extraction sees the README's setup, test, deploy and convert
    lines."""
    texts = [normalize(c.text) for c in COMMANDS if c.page == 'README.md']
    assert 'bash tools/setup_env.sh' in texts and 'python -m pytest' in texts
    assert any(
        t.startswith('python tools/deploy.py configs/deploy/') for t in texts)
    assert sum(
        t.startswith('python tools/convert_official_ckpt.py')
        for t in texts) >= 5
    assert len(COMMANDS) > 60, len(COMMANDS)


def test_every_command_is_run_by_a_test_or_ci():
    missing = [
        f'{c.page}:{c.line}: {c.text}' for c in COMMANDS if _match(c) is None
    ]
    assert not missing, (
        'commands shown in the docs that no row of the table in '
        'docs/testing.md covers; '
        'add a test that runs them and a row naming it:\n' +
        '\n'.join(missing))


def test_scripts_and_configs_of_commands_exist():
    """The ``tools/`` script a command runs and the repository configs it
    names exist (a moved or renamed file fails here, not in a user's shell)."""
    bad = []
    for c in COMMANDS:
        for token in normalize(c.text).split():
            token = token.strip('"\'')
            if re.fullmatch(r'(?:tools|configs)/[\w./-]+\.(?:py|sh)',
                            token) and not osp.isfile(osp.join(ROOT, token)):
                bad.append(f'{c.page}:{c.line}: {token} ({c.text})')
    assert not bad, 'commands naming files that do not exist:\n' + '\n'.join(
        bad)


def _script(prefix):
    m = re.search(r'(?:^|\s)((?:tools|\.)/\S+\.(?:py|sh))', prefix)
    return m.group(1) if m else None


@pytest.mark.parametrize('row', ROWS, ids=[r[0][0] for r in ROWS])
def test_row_names_existing_tests_that_run_the_command(row):
    prefixes, tests, ci, not_run, executed, _ = row
    if not_run is not None:
        assert len(not_run) > 10, f'{prefixes}: say why it is not run'
        assert not tests and not ci
        return
    assert tests or ci, f'{prefixes}: no test and no CI'
    sources = []
    for ref in tests:
        path, _, func = ref.partition('::')
        full = osp.join(ROOT, path)
        assert osp.isfile(full), f'{prefixes}: {path} does not exist'
        with open(full, encoding='utf-8') as f:
            src = f.read()
        if func:
            name = func.split('[')[0]
            assert re.search(rf'^\s*(?:def|class) {re.escape(name)}\b', src,
                             re.M), (f'{prefixes}: {path} has no test {name}')
        sources.append(src)
    if executed:
        assert osp.isfile(osp.join(ROOT, executed)), executed
        assert all(executed in s
                   for s in sources), f'{tests} do not read {executed}'
        return
    for prefix in prefixes:
        script = _script(prefix)
        if script and sources:
            base = osp.basename(script)
            assert any(base in s for s in sources), (
                f'{prefix}: none of {tests} mentions {base}')
    if ci:
        with open(osp.join(ROOT, '.ci', 'run'), encoding='utf-8') as f:
            ci_lines = [normalize(ln.strip()) for ln in f]
        assert all(normalize(p) in ci_lines
                   for p in prefixes), (prefixes, ci_lines)


#: options a page shows that no test can pass, with the reason
OPTION_EXEMPT = {
    ('mim train mmdetection', '--gpus'):
    'launching 8 GPU processes needs 8 GPUs',
    ('python tools/deploy.py', '--device'):
    'building a TensorRT engine needs a CUDA GPU',
}


def test_every_option_shown_is_passed_by_a_test():
    """Each ``--option`` of a command appears in the test files of its row (a
    page run from top to bottom passes its options itself)."""
    missing = []
    for c in COMMANDS:
        m = _match(c)
        if m is None or m[0][3] is not None or m[0][4]:
            continue
        (prefixes, tests, _, _, _, _), prefix = m
        sources = ''
        for ref in tests + _scripts_of(prefixes):
            with open(
                    osp.join(ROOT,
                             ref.split('::')[0]), encoding='utf-8') as f:
                sources += f.read()
        for opt in options(c.text):
            if opt in sources or (prefix, opt) in OPTION_EXEMPT:
                continue
            if not tests:  # CI-only rows: the option must be in .ci/run
                continue
            missing.append(
                f'{c.page}:{c.line}: {opt} of {c.text!r} (tests: {tests})')
    assert not missing, 'options no test passes:\n' + '\n'.join(missing)


def test_every_row_is_used():
    used = set()
    for c in COMMANDS:
        m = _match(c)
        if m:
            used.add(id(m[0]))
    unused = [r[0] for r in ROWS if id(r) not in used]
    assert not unused, (
        f'rows of {TABLE_PAGE} that no page uses (remove them): {unused}')


def test_an_uncovered_command_fails():
    """The check can fail: a made-up tool matches no row; an inline mention
    on a page run in full is covered only if a block of it runs the same."""
    from markdown_utils import Command
    assert _match(Command('README.md', 1,
                          'python tools/no_such_tool.py --x')) is None
    page = 'docs/custom_dataset.md'
    assert _match(Command(page, 1, 'python check_classes.py CFG',
                          True))[1] == page
    assert _match(
        Command(page, 1, 'python check_classes.py CFG --nope', True)) is None
    assert _match(
        Command('README.md', 1,
                '.venv/bin/python tools/train.py a.py'))[1] == \
        'python tools/train.py'


# -------------------------------------------- commands no other test runs
def test_activate_then_import():
    """``source .venv/bin/activate`` (README, projects_readme.md), then the
    plugin imports with the venv's interpreter."""
    activate = osp.join(ROOT, '.venv', 'bin', 'activate')
    if not osp.isfile(activate):
        pytest.skip('no .venv in the repository (run bash tools/setup_env.sh)')
    proc = subprocess.run([
        'bash', '-c', 'source .venv/bin/activate && python -c '
        '"import sys, dfine_mmdet; print(sys.prefix)"'
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.realpath(proc.stdout.strip().splitlines()[-1]) == osp.realpath(
        osp.join(ROOT, '.venv'))


TINY_DIST_TEST_CFG = """\
_base_ = {toy!r}
data_root = {data!r}
model = dict(num_queries=10, eval_spatial_size=(64, 64),
             dn_cfg=dict(num_denoising=10))
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(64, 64), keep_ratio=False, backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
val_dataloader = dict(
    batch_size=2,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
"""


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dist_test_sh(tmp_path):
    """``bash tools/dist_test.sh CFG CKPT 2`` (docs/training.md,
    projects_readme.md) on CPU: two gloo processes evaluate a tiny D-FINE-N
    on 6 toy images, and the metric covers every image once."""
    import torch
    data = tmp_path / 'toy'
    subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'make_toy_dataset.py'), '--out',
        str(data), '--num-train', '2', '--num-val', '6'
    ],
                   check=True,
                   capture_output=True,
                   timeout=120)
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(
        TINY_DIST_TEST_CFG.format(
            toy=osp.join(ROOT, 'configs', 'dfine', 'toy',
                         'dfine_hgnetv2_n_toy.py'),
            data=str(data) + '/'))
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine import Config
    register_all_modules()
    import dfine_mmdet  # noqa: F401
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(cfg)).model)
    ckpt = tmp_path / 'random.pth'
    torch.save({'state_dict': model.state_dict()}, str(ckpt))
    proc = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_test.sh'),
        str(cfg),
        str(ckpt), '2', '--work-dir',
        str(tmp_path / 'wd')
    ],
                          cwd=str(tmp_path),
                          capture_output=True,
                          text=True,
                          timeout=600,
                          env=dict(
                              os.environ,
                              PORT=str(_free_port()),
                              PYTHON=sys.executable,
                              OMP_NUM_THREADS='1',
                              PYTHONPATH=ROOT))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert re.search(r'Epoch\(test\) \[\d+/\d+\].*coco/bbox_mAP: [0-9.-]+',
                     out), out[-3000:]
    # 6 images over 2 processes, batch 2: [2/2] iterations per rank
    assert 'Epoch(test) [2/2]' in out, out[-3000:]


@pytest.mark.slow
def test_toy_train_minutes_budget(tmp_path):
    """``python tools/experiments/toy_train.py --minutes M``
    (docs/benchmarks.md; the tool's own test uses ``--iters``): a 3-second
    budget trains, stops and evaluates."""
    data = tmp_path / 'toy'
    subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'make_toy_dataset.py'), '--out',
        str(data), '--num-train', '8', '--num-val', '4'
    ],
                   check=True,
                   capture_output=True,
                   timeout=120)
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'experiments', 'toy_train.py'), '--minutes',
        '0.05', '--threads', '1', '--data',
        str(data), '--work-dir',
        str(tmp_path / 'wd')
    ],
                          cwd=str(tmp_path),
                          capture_output=True,
                          text=True,
                          timeout=900,
                          env=dict(
                              os.environ, OMP_NUM_THREADS='1',
                              PYTHONPATH=ROOT))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r'bbox mAP: \d\.\d{3}  mAP@0\.5: \d\.\d{3}',
                     out), out[-3000:]
