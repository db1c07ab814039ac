"""MMDeploy rewriter of the D-FINE detector's forward (end-to-end export).

MMDeploy traces ``model(input, data_samples=..., mode='predict')``. Its generic
``DetectionTransformer.forward`` rewriter would also reach the D-FINE head, but
it wraps the graph in ``mark`` nodes, and the DETR head rewriters it relies on
gather boxes with a flat ``view(-1, 4)[index]``. That gather is wrong when
``max_per_img < num_queries`` with batch > 1 (open-mmlab/mmdeploy#2810), and
MMDeploy's docs state "DETR-like models do not support multi-batch
inference". This rewriter runs the same four stages as
``DetectionTransformer.predict`` and lets
:func:`dfine_mmdet.deploy.dfine_head.dfine_head__predict_by_feat` produce the
outputs:

* ``dets``   ``[B, K, 5]``: ``(x1, y1, x2, y2, score)``, boxes in pixels of
  the network input (MMDeploy's ``End2EndModel`` divides by ``scale_factor``);
* ``labels`` ``[B, K]`` int64, ``0..C-1``;

with ``K = test_cfg.max_per_img`` (300): the official D-FINE top-k over all
queries x classes, with no threshold and no NMS.
"""
import copy

import torch
from mmdeploy.core import FUNCTION_REWRITER
from mmdeploy.utils import is_dynamic_shape
from mmdet.structures import DetDataSample


def _with_input_shape(data_samples, img_shape):
    """Copies of ``data_samples`` whose ``img_shape`` and
    ``batch_input_shape`` are the traced input's ``(H, W)``.

    D-FINE normalises boxes by the network input size. In the graph that size
    is the input tensor's, so the result does not depend on the example image
    used for tracing.
    """
    samples = copy.deepcopy(data_samples) if data_samples else [
        DetDataSample()
    ]
    for sample in samples:
        sample.set_field(img_shape, 'img_shape', field_type='metainfo')
        sample.set_field(img_shape, 'batch_input_shape', field_type='metainfo')
    return samples


@FUNCTION_REWRITER.register_rewriter(
    'dfine_mmdet.models.detectors.dfine.DFINE.forward')
def dfine__forward(self,
                   batch_inputs: torch.Tensor,
                   data_samples=None,
                   mode: str = 'predict',
                   **kwargs):
    """Export-time ``DFINE.forward``: ``input [B, 3, H, W] -> (dets,
    labels)``.

    Only the batch axis may be dynamic in D-FINE graphs. ``H`` and ``W`` are
    traced as constants unless the deploy config makes input axes 2/3
    dynamic; then they are taken from the tensor's shape.
    """
    ctx = FUNCTION_REWRITER.get_context()
    if is_dynamic_shape(ctx.cfg):
        img_shape = torch._shape_as_tensor(batch_inputs)[2:]
    else:
        img_shape = tuple(int(s) for s in batch_inputs.shape[2:])
    data_samples = _with_input_shape(data_samples, img_shape)
    img_feats = self.extract_feat(batch_inputs)
    head_inputs_dict = self.forward_transformer(img_feats, data_samples)
    return self.bbox_head.predict(
        **head_inputs_dict, rescale=False, batch_data_samples=data_samples)
