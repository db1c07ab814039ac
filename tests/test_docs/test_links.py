"""Every relative link and ``#anchor`` of the user-facing pages resolves.

Pages: README.md, projects_readme.md, docs/**/*.md and configs/**/README.md.
A link's file must exist inside the repository; an anchor must be one that
GitHub generates for a heading of the target page (github-slugger rules,
repeated headings suffixed ``-1``, ``-2``) or an explicit ``<a name>``.
External links (``https:``, ``mailto:``) are not fetched.
"""
import os.path as osp

import pytest
from markdown_utils import (ROOT, anchors, doc_pages, github_slug, is_external,
                            links, read, resolve_link, split_fences)

PAGES = doc_pages()


def test_pages_are_found():
    for page in ('README.md', 'projects_readme.md', 'docs/custom_dataset.md',
                 'docs/install.md', 'docs/deploy.md'):
        assert page in PAGES, PAGES


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_and_anchors_resolve(page):
    text = read(page)
    own = anchors(text)
    bad = []
    for line, target in links(text):
        if is_external(target):
            continue
        path, anchor = resolve_link(page, target)
        if path is not None:
            full = osp.join(ROOT, path)
            if path.startswith('..'):
                bad.append(
                    f'{page}:{line}: {target} points outside the repository')
                continue
            if not osp.exists(full):
                bad.append(f'{page}:{line}: {target}: no such file {path}')
                continue
        if anchor:
            if path is None:
                targets = own
            elif path.endswith('.md') and osp.isfile(osp.join(ROOT, path)):
                targets = anchors(read(path))
            else:
                bad.append(
                    f'{page}:{line}: {target}: anchor into a non-Markdown file'
                )
                continue
            if anchor not in targets:
                bad.append(f'{page}:{line}: {target}: no heading with anchor '
                           f'#{anchor} in {path or page} (anchors: '
                           f'{sorted(targets)[:40]})')
    assert not bad, '\n'.join(bad)


def test_readme_is_a_front_page():
    """At most about 200 lines, and it links every page of docs/."""
    text = read('README.md')
    assert len(text.split('\n')) <= 210, len(text.split('\n'))
    linked = {
        resolve_link('README.md', t)[0]
        for _, t in links(text) if not is_external(t)
    }
    pages = {p for p in PAGES if p.startswith('docs/')}
    # a page may be reached through another docs page; each must be reachable
    reached, todo = set(), [p for p in linked if p in pages]
    while todo:
        p = todo.pop()
        if p in reached:
            continue
        reached.add(p)
        todo += [
            q for q in (resolve_link(p, t)[0] for _, t in links(read(p))
                        if not is_external(t)) if q in pages
        ]
    assert pages <= reached, ('docs pages no link leads to from README.md: '
                              f'{sorted(pages - reached)}')


@pytest.mark.parametrize('heading, slug', [
    ('Install', 'install'),
    ('Deploy configs (`configs/deploy/`)', 'deploy-configs-configsdeploy'),
    ('TensorRT >= 10 with MMDeploy 1.3.1 '
     '(`dfine_mmdet/deploy/backends/tensorrt.py`)',
     'tensorrt--10-with-mmdeploy-131-dfine_mmdetdeploybackendstensorrtpy'),
    ('CPU latency: every path side by side, against the official export',
     'cpu-latency-every-path-side-by-side-against-the-official-export'),
    ('Exactness (D-FINE-N, random weights, CPU)',
     'exactness-d-fine-n-random-weights-cpu'),
    ('MMDetection\'s analysis tools on plugin configs',
     'mmdetections-analysis-tools-on-plugin-configs'),
    ('**Bold** and [a link](x.md)', 'bold-and-a-link'),
])
def test_github_slug(heading, slug):
    """Known GitHub anchors (checked against github.com's rendering rules:
    punctuation dropped, spaces -> '-', '_' kept, runs of spaces not
    merged)."""
    assert github_slug(heading) == slug


def test_repeated_headings_get_numbered_anchors():
    text = '# A\n\n## Notes\n\n```bash\n# Notes\n```\n\n## Notes\n'
    assert anchors(text) == {'a', 'notes', 'notes-1'}


def test_checker_finds_a_broken_anchor_and_file():
    """The link check can fail: a page with a wrong anchor and a missing
    file."""
    text = '# Title\n\n[ok](#title) [bad](#nope) [file](no_such_file.md)\n'
    found = links(text)
    assert [t for _, t in found] == ['#title', '#nope', 'no_such_file.md']
    assert '#nope'[1:] not in anchors(text)
    assert not osp.exists(
        osp.join(ROOT,
                 resolve_link('README.md', 'no_such_file.md')[0]))
    blocks, _ = split_fences('```bash\n[x](#inside-code)\n```\n')
    assert links('```bash\n[x](#inside-code)\n```\n') == [] and blocks
