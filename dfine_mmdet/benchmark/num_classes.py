"""Set the number of classes in any MMDetection model config.

MMDetection has no single ``num_classes`` field: single-stage detectors and
DETRs carry it in ``bbox_head``, two-stage ones in ``roi_head.bbox_head`` (a
list of them for Cascade R-CNN) and ``roi_head.mask_head``, and the RPN's
``num_classes=1`` means "object / background" and must stay 1.
:func:`set_num_classes` walks the model config, rewrites every
``num_classes`` outside ``rpn_head`` and returns where it wrote; it raises a
``ValueError`` naming the config and the reason when it cannot adapt the model
(no ``num_classes`` anywhere, panoptic ``num_things_classes`` /
``num_stuff_classes``, or a per-class ``class_weight`` list whose length is
tied to the old class count).
"""
from typing import Any, List

#: sub-configs whose ``num_classes`` is not the dataset's class count
CLASS_AGNOSTIC_KEYS = ('rpn_head', )
#: fields that tie a model to a class count in a way set_num_classes cannot fix
UNSUPPORTED_KEYS = ('num_things_classes', 'num_stuff_classes')


def find_num_classes(model_cfg: Any, path: str = 'model') -> List[str]:
    """Dotted paths (``model.roi_head.bbox_head.0.num_classes``) of every
    class-count field of ``model_cfg`` (a dict / ``ConfigDict``), RPN
    excluded."""
    found = []
    if isinstance(model_cfg, dict):
        for key, value in model_cfg.items():
            if key in CLASS_AGNOSTIC_KEYS:
                continue
            if key == 'num_classes' and isinstance(value, int):
                found.append(f'{path}.{key}')
            else:
                found += find_num_classes(value, f'{path}.{key}')
    elif isinstance(model_cfg, (list, tuple)):
        for i, value in enumerate(model_cfg):
            found += find_num_classes(value, f'{path}.{i}')
    return found


def _unsupported(model_cfg: Any, path: str = 'model') -> List[str]:
    bad = []
    if isinstance(model_cfg, dict):
        for key, value in model_cfg.items():
            if key in CLASS_AGNOSTIC_KEYS:
                continue
            if key in UNSUPPORTED_KEYS:
                bad.append(f'{path}.{key}')
            elif key == 'class_weight' and isinstance(value, (list, tuple)):
                bad.append(f'{path}.{key} (a per-class list)')
            else:
                bad += _unsupported(value, f'{path}.{key}')
    elif isinstance(model_cfg, (list, tuple)):
        for i, value in enumerate(model_cfg):
            bad += _unsupported(value, f'{path}.{i}')
    return bad


def set_num_classes(model_cfg: Any,
                    num_classes: int,
                    name: str = 'config') -> List[str]:
    """Set every class-count field of ``model_cfg`` to ``num_classes`` in
    place.

    Args:
        model_cfg: the ``model`` dict of a config (modified in place).
        num_classes: the dataset's number of classes (without background).
        name: the config's name, used in error messages.

    Returns:
        The dotted paths that were set, e.g.
        ``['model.bbox_head.num_classes']``.

    Raises:
        ValueError: when no field is found or the model ties the class count to
            fields this helper cannot rewrite (the message names them).
    """
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    bad = _unsupported(model_cfg)
    if bad:
        raise ValueError(
            f'{name}: cannot set the number of classes: the model config has '
            f'{", ".join(bad)}; adapt it by hand')
    paths = find_num_classes(model_cfg)
    if not paths:
        raise ValueError(
            f'{name}: no num_classes field in the model config (searched '
            f'every nested dict except {", ".join(CLASS_AGNOSTIC_KEYS)}); set '
            'the class count by hand')
    for path in paths:
        node = model_cfg
        for part in path.split('.')[1:-1]:
            node = node[int(part)] if isinstance(node,
                                                 (list, tuple)) else node[part]
        node['num_classes'] = num_classes
    return paths
