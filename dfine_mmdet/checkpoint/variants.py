"""The D-FINE sizes, and what a state dict is (one table, one reader).

:data:`VARIANTS` is the one table of the official sizes: HGNetV2 arch,
decoder width (``embed_dims``) and decoder layers (values of
``../shared/docs/official_resolved_configs.json``: ``HGNetv2.name``,
``DFINETransformer.hidden_dim`` / ``num_layers``). :func:`describe` reads
those three plus the class count from the tensor shapes of a state dict in
this plugin's key layout; the load guard (:mod:`.guard`) names both sides
of a mismatch with it and the official converter (:mod:`.official`) detects
the size of an official file with it (after mapping the keys).
"""
import re
from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

Shapes = Mapping[str, Sequence[int]]


class Variant(NamedTuple):
    """One official D-FINE size."""
    letter: str  #: ``'n'`` ... ``'x'`` (config file names)
    backbone: str  #: HGNetV2 arch (``HGNetV2.arch_settings`` row)
    embed_dims: int  #: decoder width
    decoder_layers: int

    @property
    def name(self) -> str:
        return f'D-FINE-{self.letter.upper()}'


#: the official sizes, N..X
VARIANTS: Tuple[Variant, ...] = (
    Variant('n', 'B0', 128, 3),
    Variant('s', 'B0', 256, 3),
    Variant('m', 'B2', 256, 4),
    Variant('l', 'B4', 256, 6),
    Variant('x', 'B5', 256, 6),
)


def find_variant(backbone: Optional[str], embed_dims: Optional[int],
                 decoder_layers: Optional[int]) -> Optional[Variant]:
    """The official size with these three values, or None."""
    for v in VARIANTS:
        if (v.backbone, v.embed_dims,
                v.decoder_layers) == (backbone, embed_dims, decoder_layers):
            return v
    return None


def _indices(shapes: Shapes, pattern: str) -> set:
    return {
        int(m.group(1))
        for k in shapes
        for m in [re.match(pattern, k)] if m
    }


def hgnetv2_arch(shapes: Shapes) -> Optional[str]:
    """HGNetV2 arch whose ``arch_settings`` row matches the stem width, the
    blocks per stage and the layers per block of ``shapes`` (keys
    ``backbone.*``, the same in official and plugin checkpoints)."""
    from dfine_mmdet.models.backbones.hgnetv2 import HGNetV2
    stem = shapes.get('backbone.stem.stem1.conv.weight')
    if stem is None:
        return None
    blocks = tuple(
        len(_indices(shapes, rf'backbone\.stages\.{i}\.blocks\.(\d+)\.'))
        for i in range(4))
    layers = len(
        _indices(shapes, r'backbone\.stages\.0\.blocks\.0\.layers\.(\d+)\.'))
    for name, setting in HGNetV2.arch_settings.items():
        stages = setting['stages']
        if (setting['stem'][1] == stem[0]
                and tuple(s[3] for s in stages) == blocks
                and stages[0][7] == layers):
            return name
    return None


def describe(shapes: Shapes) -> Dict[str, object]:
    """What a D-FINE state dict is, from its shapes (plugin key layout, no
    prefix).

    Returns:
        dict: ``backbone`` (``'HGNetV2-B0'``, ``'HGNetV2 (unknown arch)'`` or
        ``'other'``), ``arch`` (``'B0'`` or None) and, when present,
        ``num_classes``, ``embed_dims``, ``decoder_layers``; ``size``
        (``'D-FINE-N'``) and ``variant`` (``'n'``) for an official size.
    """
    info: Dict[str, object] = {}
    arch = hgnetv2_arch(shapes)
    info['arch'] = arch
    info['backbone'] = f'HGNetV2-{arch}' if arch else (
        'HGNetV2 (unknown arch)' if any(
            k.startswith('backbone.stem.') for k in shapes) else 'other')
    cls = shapes.get('bbox_head.enc_cls_branch.weight')
    if cls is not None and len(cls) == 2:
        info['num_classes'], info['embed_dims'] = int(cls[0]), int(cls[1])
    layer_ids = _indices(shapes, r'decoder\.layers\.(\d+)\.')
    if layer_ids:
        info['decoder_layers'] = max(layer_ids) + 1
    variant = find_variant(arch, info.get('embed_dims'),
                           info.get('decoder_layers'))
    if variant is not None:
        info['size'], info['variant'] = variant.name, variant.letter
    return info


def format_description(info: Mapping[str, object]) -> str:
    """``'D-FINE-N (HGNetV2-B0, embed_dims=128, decoder_layers=3,
    num_classes=80)'`` for an output of :func:`describe`."""
    parts = [str(info.get('size', 'a D-FINE model')), str(info['backbone'])]
    for key in ('embed_dims', 'decoder_layers', 'num_classes'):
        if key in info:
            parts.append(f'{key}={info[key]}')
    return parts[0] + ' (' + ', '.join(parts[1:]) + ')'
