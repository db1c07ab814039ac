"""Input-shape check of a deployed graph: a clear error instead of the
backend's own.

A static D-FINE graph (``configs/deploy/*static*``, and the spatial axes of
the dynamic-batch configs) is built for one input size: the anchors and the
encoder's positional embedding are constants of the graph. Given another size,
ONNX Runtime fails inside ``run`` with
``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for
input: input for the following indices index: 2 Got: 800 Expected: 640`` and
OpenVINO with ``ParameterMismatch: Can not clone with new dims``. Neither
names the deploy config nor says what to do.

This happens when the images reach the backend through the *model* config's
test pipeline instead of MMDeploy's ``create_input(imgs, input_shape)`` (which
resizes to the deploy config's ``onnx_config.input_shape``): a dataset
evaluation of a backend model (``task_processor.build_backend_model`` +
``model_cfg.test_dataloader``), or a model config whose test ``Resize`` has
another scale than the deploy config. :func:`check_input_shapes` runs before
the backend and raises :class:`InputShapeMismatchError` naming the given and
the expected shape, the graph file and the deploy config.
"""
from typing import Any, Dict, Mapping, Optional, Sequence

#: a graph's input shapes: name -> dims, ``None`` for a dynamic axis
InputShapes = Dict[str, Sequence[Optional[int]]]


class InputShapeMismatchError(ValueError):
    """An input does not have the shape the deployed graph was built for."""


def deploy_cfg_name(deploy_cfg: Any) -> str:
    """The deploy config's file name (or ``'<unnamed deploy config>'``)."""
    if deploy_cfg is None:
        return '<no deploy config given>'
    if isinstance(deploy_cfg, str):
        return deploy_cfg
    name = getattr(deploy_cfg, 'filename', None)
    return name or '<unnamed deploy config>'


def _deploy_input_shape(deploy_cfg: Any) -> Optional[Sequence[int]]:
    """``onnx_config.input_shape`` (width, height) of the deploy config."""
    if deploy_cfg is None or isinstance(deploy_cfg, str):
        return None
    try:
        return deploy_cfg.get('onnx_config', {}).get('input_shape')
    except AttributeError:
        return None


def _fmt(shape: Sequence[Optional[int]]) -> str:
    return '(' + ', '.join('?' if d is None else str(d) for d in shape) + ')'


def check_input_shapes(expected: InputShapes,
                       given: Mapping[str, Sequence[int]],
                       model_file: str,
                       deploy_cfg: Any = None) -> None:
    """Raise :class:`InputShapeMismatchError` when ``given`` does not fit.

    Args:
        expected (dict): the graph's inputs, ``name -> dims`` with ``None``
            for a dynamic axis (e.g. ``{'input': (None, 3, 640, 640)}`` for a
            dynamic-batch graph).
        given (dict): ``name -> shape`` of the tensors about to be fed, e.g.
            ``{'input': (1, 3, 800, 800)}``.
        model_file (str): the graph file (``end2end.onnx`` / ``.xml``),
            named in the message.
        deploy_cfg: the deploy config (``Config`` or path) the backend model
            was built with, named in the message; may be None.
    """
    for name, shape in given.items():
        if name not in expected:
            continue  # the backend reports unknown inputs itself
        want = tuple(expected[name])
        shape = tuple(int(d) for d in shape)
        bad = len(shape) != len(want) or any(w is not None and w != g
                                             for w, g in zip(want, shape))
        if not bad:
            continue
        axes = [
            i for i, (w, g) in enumerate(zip(want, shape))
            if w is not None and w != g
        ]
        hint = ''
        cfg_shape = _deploy_input_shape(deploy_cfg)
        if len(want) == 4 and want[2] is not None and want[3] is not None:
            hint = (f' Resize the images to {want[3]}x{want[2]} (WxH) before '
                    'the backend (MMDeploy\'s create_input(imgs, '
                    'input_shape) does; a model config whose test pipeline '
                    'resizes elsewhere does not), or export again with a '
                    'deploy config for this size.')
        where = (f'axis {axes[0]} differs' if len(axes) == 1 else
                 f'axes {axes} differ' if axes else 'another rank')
        raise InputShapeMismatchError(
            f'{model_file}: input {name!r} has shape {_fmt(shape)}, but the '
            f'graph was built for {_fmt(want)} (? = any size; {where}); '
            'deploy config: '
            f'{deploy_cfg_name(deploy_cfg)}' +
            (f' (onnx_config.input_shape={tuple(cfg_shape)})'
             if cfg_shape else '') + '.' + hint)


def onnxruntime_input_shapes(session) -> InputShapes:
    """Input shapes of an ``onnxruntime.InferenceSession`` (symbolic or
    unknown dims -> None)."""
    return {
        i.name: tuple(d if isinstance(d, int) else None for d in i.shape)
        for i in session.get_inputs()
    }


def openvino_input_shapes(compiled_model) -> InputShapes:
    """Input shapes of an ``openvino.CompiledModel`` (dynamic dims -> None)."""
    shapes = {}
    for port in compiled_model.inputs:
        dims = tuple(d.get_length() if d.is_static else None
                     for d in port.get_partial_shape())
        for name in port.get_names() or [port.get_any_name()]:
            shapes[name] = dims
    return shapes
