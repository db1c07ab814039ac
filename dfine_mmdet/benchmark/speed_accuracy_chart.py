"""The speed/accuracy chart of ``tools/benchmark/compare.py``: latency (x, log
scale) against accuracy (y), one line per model family, every point labelled.

Labels are placed greedily: for each point (smallest latency first) the first
of a few offsets around it whose text box overlaps neither an earlier label nor
a marker, measured with the figure's renderer; a label that fits nowhere is
drawn with a leader line at the least-crowded offset. This keeps the names of
close models (e.g. RTMDet-tiny / YOLOX-tiny / D-FINE-N at similar latency)
readable without hand-placed coordinates.
"""
import textwrap
from typing import Dict, List, Optional, Sequence

#: colour per family; D-FINE is drawn bold
FAMILY_COLORS = {
    'D-FINE': '#d62728',
    'DEIM': '#9467bd',
    'RTMDet': '#1f77b4',
    'YOLOX': '#2ca02c',
    'DINO': '#ff7f0e',
    'DeformableDETR': '#8c564b',
}
_OTHER_COLORS = ('#17becf', '#e377c2', '#7f7f7f', '#bcbd22')

#: candidate label offsets (points) around a marker, tried in this order
_OFFSETS = ((7, 4), (7, -12), (-7, 4), (-7, -12), (0, 9), (0, -17), (12, 14),
            (12, -22), (-12, 14), (-12, -22))


def family(label: str) -> str:
    """Model family of a row label: ``D-FINE-N`` -> ``D-FINE``,
    ``RTMDet-tiny`` -> ``RTMDet``, ``DINO-R50-4scale`` -> ``DINO``."""
    for name in ('D-FINE', 'DEIM-D-FINE', 'DEIM'):
        if label.startswith(name + '-'):
            return 'DEIM' if name.startswith('DEIM') else name
    return label.split('-')[0]


def plot(points: Sequence[Dict],
         path: str,
         xlabel: str,
         ylabel: str,
         title: str,
         footnote: str = '',
         left_out: Optional[List[str]] = None) -> List[tuple]:
    """Write the chart to ``path``.

    Args:
        points: ``dict(label=str, latency_ms=float, ap=float)`` per model.
        path: output image (PNG).
        xlabel, ylabel, title: axis labels and title.
        footnote: small text under the axes (conditions of the measurement).
        left_out: labels of models without a point (named in the footnote).

    Returns:
        list[tuple]: The label boxes ``(x0, y0, x1, y1)`` in pixels.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(8.6, 5.6), dpi=110)
    fams: Dict[str, List[Dict]] = {}
    for p in points:
        fams.setdefault(family(p['label']), []).append(p)
    spare = iter(_OTHER_COLORS * 4)
    for fam, pts in fams.items():
        pts = sorted(pts, key=lambda p: p['latency_ms'])
        color = FAMILY_COLORS.get(fam) or next(spare)
        bold = fam == 'D-FINE'
        ax.plot([p['latency_ms'] for p in pts], [p['ap'] for p in pts],
                '-o',
                color=color,
                lw=2.4 if bold else 1.3,
                ms=8 if bold else 6,
                label=fam,
                zorder=3 if bold else 2)
    ax.set_xscale('log')
    ax.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}'))
    ax.xaxis.set_minor_formatter(
        matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}'
                                        if str(int(v))[0] in '25' else ''))
    ax.tick_params(axis='x', which='minor', labelsize=8)
    if points:
        xs = [p['latency_ms'] for p in points]
        ys = [p['ap'] for p in points]
        ax.set_xlim(min(xs) / 1.5, max(xs) * 1.8)
        span = max(max(ys) - min(ys), 1e-3)
        ax.set_ylim(min(ys) - 0.12 * span, max(ys) + 0.15 * span)
    else:
        ax.text(
            0.5, 0.5, 'no model measured', ha='center', transform=ax.transAxes)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, which='both')
    ax.legend(
        fontsize=9,
        loc='lower right',
        title='family (lines join sizes)',
        title_fontsize=8)
    notes = [footnote] if footnote else []
    if left_out:
        notes.append('not plotted (no latency or accuracy): ' +
                     ', '.join(left_out))
    lines = [ln for note in notes for ln in textwrap.wrap(note, 150)]
    if lines:
        fig.text(
            0.01,
            0.005,
            '\n'.join(lines),
            fontsize=7,
            va='bottom',
            color='#444')
    fig.tight_layout(rect=(0, 0.022 * len(lines), 1, 1))
    boxes = _place_labels(fig, ax, points)
    fig.savefig(path)
    plt.close(fig)
    return boxes


def _place_labels(fig, ax, points: Sequence[Dict]) -> List[tuple]:
    """Greedy non-overlapping labels ``NAME (AP)`` (see the module doc)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    marker_boxes = []
    for p in points:
        x, y = to_px((p['latency_ms'], p['ap']))
        marker_boxes.append((x - 5, y - 5, x + 5, y + 5))
    placed = []
    axes_box = ax.get_window_extent(renderer)

    def overlap(a, b):
        return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1]
                    or b[3] <= a[1])

    for p in sorted(points, key=lambda p: p['latency_ms']):
        text = f'{p["label"]} ({p["ap"]:.1f})'
        best = None
        for dx, dy in _OFFSETS:
            t = ax.annotate(
                text, (p['latency_ms'], p['ap']),
                textcoords='offset points',
                xytext=(dx, dy),
                fontsize=8.5,
                ha='left' if dx > 0 else 'right' if dx < 0 else 'center')
            e = t.get_window_extent(renderer)
            box = (e.x0, e.y0, e.x1, e.y1)
            hits = sum(overlap(box, b) for b in placed + marker_boxes)
            inside = (
                e.x0 >= axes_box.x0 and e.x1 <= axes_box.x1
                and e.y0 >= axes_box.y0 and e.y1 <= axes_box.y1)
            score = hits + (0 if inside else 5)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, t, box, (dx, dy))
            else:
                t.remove()
            if score == 0:
                break
        score, t, box, (dx, dy) = best
        if score:  # crowded: push it further out with a leader line
            t.remove()
            t = ax.annotate(
                text, (p['latency_ms'], p['ap']),
                textcoords='offset points',
                xytext=(dx * 3, dy * 2.2),
                fontsize=8.5,
                ha='left' if dx >= 0 else 'right',
                arrowprops=dict(arrowstyle='-', color='#888', lw=0.6))
            e = t.get_window_extent(renderer)
            box = (e.x0, e.y0, e.x1, e.y1)
        placed.append(box)
    return placed
