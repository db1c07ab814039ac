"""Reading the repository's Markdown pages: fenced blocks, headings and their
GitHub anchors, links, and the shell commands a page shows.

Used by the documentation tests (links resolve, every command is run by a test
or by CI, the custom-dataset page runs end to end).
"""
import glob
import os.path as osp
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def doc_pages() -> List[str]:
    """The user-facing pages: README.md, projects_readme.md, docs/**/*.md and
    the README.md of config folders (repository-relative paths)."""
    pages = ['README.md', 'projects_readme.md']
    pages += sorted(
        osp.relpath(p, ROOT) for p in glob.glob(
            osp.join(ROOT, 'docs', '**', '*.md'), recursive=True))
    pages += sorted(
        osp.relpath(p, ROOT) for p in glob.glob(
            osp.join(ROOT, 'configs', '**', 'README.md'), recursive=True))
    return pages


def read(page: str) -> str:
    with open(osp.join(ROOT, page), encoding='utf-8') as f:
        return f.read()


class Block(NamedTuple):
    """A fenced code block: info string (language), body, first line number."""
    lang: str
    body: str
    line: int


_FENCE = re.compile(r'^(\s*)(`{3,}|~{3,})\s*([^`\s]*)[^`]*$')


def split_fences(text: str) -> Tuple[List[Block], List[Tuple[int, str]]]:
    """``(blocks, prose)``: the fenced code blocks, and the other lines with
    their 1-based line numbers."""
    blocks, prose = [], []
    fence, lang, body, start = None, '', [], 0
    for i, line in enumerate(text.split('\n'), 1):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence, lang, body, start = m.group(2), m.group(
                    3).lower(), [], i + 1
            else:
                prose.append((i, line))
        elif m and m.group(2).startswith(fence[0]) and len(
                m.group(2)) >= len(fence) and not m.group(3):
            blocks.append(Block(lang, '\n'.join(body), start))
            fence = None
        else:
            body.append(line)
    assert fence is None, f'unclosed code fence opened at line {start - 1}'
    return blocks, prose


# ------------------------------------------------------------------ anchors
def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading text (github-slugger): markup removed,
    lower case, every character that is not a letter, digit, space, ``-`` or
    ``_`` dropped, each space turned into ``-``."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links -> text
    text = re.sub(r'<[^>]+>', '', text)  # inline html
    text = text.replace('`', '').replace('*', '')
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)  # \w keeps letters, digits, '_'
    return text.replace(' ', '-')


def anchors(text: str) -> set:
    """Every anchor a page defines: heading slugs (repeated ones get ``-1``,
    ``-2``, ... as on GitHub) and explicit ``<a name=...>`` / ``id=...``."""
    _, prose = split_fences(text)
    out, seen = set(), {}
    for _, line in prose:
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            out.add(slug if n == 0 else f'{slug}-{n}')
            seen[slug] = n + 1
        for m in re.finditer(r'<a\s+(?:name|id)="([^"]+)"', line):
            out.add(m.group(1))
    return out


# -------------------------------------------------------------------- links
_INLINE_CODE = re.compile(r'(`+)(.+?)\1')
_LINK = re.compile(
    r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')


def links(text: str) -> List[Tuple[int, str]]:
    """``(line, target)`` of every inline link and image outside code."""
    _, prose = split_fences(text)
    out = []
    for i, line in prose:
        line = _INLINE_CODE.sub('', line)
        out += [(i, m.group(1)) for m in _LINK.finditer(line)]
    return out


# ----------------------------------------------------------------- commands
SHELL_LANGS = ('bash', 'sh', 'shell', 'console')
#: inline code spans that are commands (not paths, config keys or snippets)
_INLINE_COMMAND = re.compile(
    r'^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?(?:python3?|bash|sh|mim|pip)\s+\S'
    r'|^tools/\S+\.sh\s+\S')


def block_commands(body: str) -> List[str]:
    """Commands of a shell block: continuation lines joined, comments and
    blank lines dropped, ``a && b`` split."""
    out, cur = [], ''
    for line in body.split('\n'):
        stripped = line.strip()
        if not cur and (not stripped or stripped.startswith('#')):
            continue
        cur += (' ' if cur else '') + stripped
        if cur.endswith('\\'):
            cur = cur[:-1].rstrip()
            continue
        cur = strip_comment(cur)
        out += [c.strip() for c in cur.split(' && ') if c.strip()]
        cur = ''
    if cur:
        out.append(strip_comment(cur))
    return out


def strip_comment(cmd: str) -> str:
    """``cmd`` without a trailing `` # comment`` (outside quotes)."""
    quote = None
    for i, ch in enumerate(cmd):
        if quote:
            quote = None if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch == '#' and (i == 0 or cmd[i - 1].isspace()):
            return cmd[:i].rstrip()
    return cmd.rstrip()


class Command(NamedTuple):
    page: str
    line: int
    text: str
    inline: bool = False  # an inline code span, not a line of a shell block


def page_commands(
        page: str,
        skip_between: Optional[Tuple[str, str]] = None) -> List[Command]:
    """Every command ``page`` shows: the lines of its shell blocks, and
    inline code spans that start like a command (``python ...``,
    ``bash ...``, ``mim ...``, ``pip ...``, ``tools/*.sh``). Text between
    the markers ``skip_between`` is ignored."""
    text = read(page)
    if skip_between and skip_between[0] in text:
        head, rest = text.split(skip_between[0], 1)
        tail = rest.split(skip_between[1], 1)[1]
        text = head + '\n' * rest.split(skip_between[1],
                                        1)[0].count('\n') + tail
    blocks, prose = split_fences(text)
    out = []
    for b in blocks:
        if b.lang in SHELL_LANGS:
            out += [Command(page, b.line, c) for c in block_commands(b.body)]
        # an unlabelled block: the lines that look like commands
        elif not b.lang:
            out += [
                Command(page, b.line, c) for c in block_commands(b.body)
                if _INLINE_COMMAND.match(c)
            ]
    for i, line in prose:
        for m in _INLINE_CODE.finditer(line):
            code = m.group(2).strip()
            if _INLINE_COMMAND.match(code):
                out.append(Command(page, i, code, inline=True))
    return out


def normalize(cmd: str) -> str:
    """One spelling per command: whitespace collapsed, leading ``VAR=value``
    assignments dropped, ``.venv/bin/python`` / ``python3`` -> ``python``,
    ``.venv/bin/mim`` -> ``mim``."""
    tokens = cmd.split()
    while tokens and re.match(r'^[A-Z_][A-Z0-9_]*=', tokens[0]):
        tokens.pop(0)
    text = ' '.join(tokens)
    text = re.sub(r'^\.venv/bin/python3?(?=\s|$)', 'python', text)
    text = re.sub(r'^python3(?:\.\d+)?(?=\s|$)', 'python', text)
    text = re.sub(r'^\.venv/bin/(mim|pip)(?=\s|$)', r'\1', text)
    return text


def options(cmd: str) -> List[str]:
    """The ``--long-options`` a command uses (``--opt=value`` -> ``--opt``)."""
    return sorted(
        {m.group(1)
         for m in re.finditer(r'(?<!\S)(--[a-z][\w-]*)', cmd)})


def table_rows(text: str, start: str, end: str) -> List[List[str]]:
    """Cells of the Markdown table between the markers ``start`` / ``end``
    (header and separator rows dropped)."""
    assert start in text and end in text, f'markers {start} / {end} missing'
    body = text.split(start, 1)[1].split(end, 1)[0]
    rows = []
    for line in body.strip().split('\n'):
        line = line.strip()
        if not line.startswith('|'):
            continue
        cells = [c.strip() for c in line.strip('|').split('|')]
        if all(re.fullmatch(r':?-+:?', c) for c in cells):
            continue
        rows.append(cells)
    return rows[1:]  # header


def code_spans(cell: str) -> List[str]:
    return [m.group(2).strip() for m in _INLINE_CODE.finditer(cell)]


def resolve_link(page: str,
                 target: str) -> Tuple[Optional[str], Optional[str]]:
    """``(repository-relative file or None for the same page, anchor or
    None)`` of a relative link target."""
    path, _, anchor = target.partition('#')
    if not path:
        return None, anchor or None
    full = osp.normpath(osp.join(osp.dirname(osp.join(ROOT, page)), path))
    return osp.relpath(full, ROOT), anchor or None


def is_external(target: str) -> bool:
    return bool(re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I))


Pages = Dict[str, str]
