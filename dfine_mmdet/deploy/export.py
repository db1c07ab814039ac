"""ONNX export for any backend on a CPU-only machine.

``mmdeploy.apis.torch2onnx`` refuses ``device='cpu'`` when the deploy config's
backend is ``tensorrt`` (``check_backend_device``), although the export
itself always runs on CPU (``mmdeploy.apis.onnx.export`` moves the model
there). On a machine with a GPU the stock ``torch2onnx`` is the right call,
and ``tools/deploy.py`` uses it. :func:`export_onnx` takes the same steps as
``torch2onnx`` in MMDeploy 1.3.1: build the task processor, model and input,
then ``mmdeploy.apis.onnx.export`` inside the rewriter context of the
configured backend. It only skips that device check, so the TensorRT-flavoured
graph (TensorRT rewriters, constant TopK K) can be produced and checked
without CUDA.
"""
import os.path as osp
from typing import Any, Optional

import mmengine


def build_task_processor_cpu(model_cfg, deploy_cfg):
    """``mmdeploy.apis.build_task_processor(..., 'cpu')`` without the
    backend/device check."""
    from mmdeploy.codebase import get_codebase_class, import_codebase
    from mmdeploy.utils import get_codebase
    from mmdeploy.utils.config_utils import get_codebase_external_module
    codebase_type = get_codebase(deploy_cfg, model_cfg=model_cfg)
    import_codebase(codebase_type, get_codebase_external_module(deploy_cfg))
    codebase = get_codebase_class(codebase_type)
    return codebase.build_task_processor(model_cfg, deploy_cfg, 'cpu')


def export_onnx(img: Any,
                work_dir: str,
                save_file: str,
                deploy_cfg,
                model_cfg,
                model_checkpoint: Optional[str] = None) -> str:
    """Export ``model_cfg`` + checkpoint to ``work_dir/save_file`` on CPU.

    The arguments are those of ``mmdeploy.apis.torch2onnx``, without
    ``device``. ``img`` may be a list of images, which are traced as one
    batch.

    Returns:
        str: path of the ONNX file.
    """
    from mmdeploy.apis.core.pipeline_manager import no_mp
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import (get_backend, get_dynamic_axes, get_input_shape,
                                get_onnx_config, load_config)
    deploy_cfg, model_cfg = load_config(deploy_cfg, model_cfg)
    mmengine.mkdir_or_exist(osp.abspath(work_dir))
    task_processor = build_task_processor_cpu(model_cfg, deploy_cfg)
    torch_model = task_processor.build_pytorch_model(model_checkpoint)
    data, model_inputs = task_processor.create_input(
        img,
        get_input_shape(deploy_cfg),
        data_preprocessor=getattr(torch_model, 'data_preprocessor', None))
    if isinstance(model_inputs, list) and len(model_inputs) == 1:
        model_inputs = model_inputs[0]
    onnx_cfg = get_onnx_config(deploy_cfg)
    input_names = onnx_cfg['input_names']
    output_names = onnx_cfg['output_names']
    output_prefix = osp.join(work_dir,
                             osp.splitext(osp.basename(save_file))[0])
    with no_mp():
        export(
            torch_model,
            model_inputs,
            input_metas=dict(
                data_samples=data['data_samples'], mode='predict'),
            output_path_prefix=output_prefix,
            backend=get_backend(deploy_cfg).value,
            input_names=input_names,
            output_names=output_names,
            context_info=dict(deploy_cfg=deploy_cfg),
            opset_version=onnx_cfg.get('opset_version', 11),
            dynamic_axes=get_dynamic_axes(deploy_cfg,
                                          input_names + output_names),
            verbose=False,
            keep_initializers_as_inputs=onnx_cfg.get(
                'keep_initializers_as_inputs', True),
            optimize=onnx_cfg.get('optimize', False))
    return output_prefix + '.onnx'
