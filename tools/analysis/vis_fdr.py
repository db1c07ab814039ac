#!/usr/bin/env python
"""Draw D-FINE's Fine-grained Distribution Refinement (FDR) for chosen
detections.

Usage::

    python tools/analysis/vis_fdr.py IMG CFG CKPT --out fdr.png [--topk 3]
        [--score-thr 0.3] [--dump-json fdr.json] [--device cpu]

For each chosen detection (the ``--topk`` highest-scoring ones above
``--score-thr``) one row of the figure shows the image with the box and, for
each of the four edges (left, top, right, bottom), the edge distribution
``softmax(corners_i)`` of every decoder layer ``i`` over the bins, placed at
their weighting-function positions ``W(n)`` (paper Eq. 3/4, non-uniform), light
(first layer) to dark (last layer); the dashed line is the last layer's
expected offset ``sum_n p_n W(n)``. This is how FDR sharpens and moves the
distributions layer by layer (the figure of the D-FINE paper).

How the numbers are obtained: a forward hook on ``model.decoder``
(:class:`~dfine_mmdet.models.layers.fdr_decoder.DFINETransformerDecoder`)
records its output dict during ``mmdet.apis.inference_detector``: the
accumulated corner logits ``pred_corners [L, 1, Q, 4 (reg_max + 1)]`` of every
layer that runs at inference, the fixed reference ``ref_points [1, Q, 4]`` and
the ``up`` / ``reg_scale`` buffers. Detections are tied to their query through
``pred_instances.query_index`` (written by ``DFINEHead.predict_by_feat``); if a
head does not provide it, the query whose last-layer box is nearest to the
detection box is used (:func:`match_queries`). ``--dump-json`` writes
every plotted number (probabilities, bins, boxes, query indices).
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Any, Dict, List

import numpy as np
import torch

EDGES = ('left', 'top', 'right', 'bottom')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='D-FINE config file')
    parser.add_argument(
        'checkpoint', help='checkpoint file (MMDetection format)')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument(
        '--topk',
        type=int,
        default=3,
        help='how many detections (highest scores first)')
    parser.add_argument('--score-thr', type=float, default=0.0)
    parser.add_argument(
        '--dump-json', default=None, help='also write the numbers here')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


class DecoderRecorder:
    """Forward hook on the FDR decoder keeping its (last) output dict."""

    def __init__(self, decoder: torch.nn.Module):
        self.output = None
        self._handle = decoder.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if not isinstance(output, dict) or 'pred_corners' not in output:
            raise TypeError(
                f'{type(module).__name__} returned {type(output).__name__} '
                'without '
                "'pred_corners'; vis_fdr.py needs D-FINE's FDR decoder")
        self.output = {
            k: v.detach().cpu() if torch.is_tensor(v) else v
            for k, v in output.items()
        }

    def remove(self):
        self._handle.remove()


def fdr_distributions(model, img: str) -> Dict[str, Any]:
    """Run ``inference_detector`` on ``img`` and return the FDR state of every
    query.

    Returns:
        dict:
            - probs (Tensor): ``[L, Q, 4, reg_max + 1]`` edge distributions
              ``softmax(pred_corners)`` of every decoder layer that runs at
              inference (``L = eval_idx + 1``), edges l, t, r, b.
            - project (Tensor): ``[reg_max + 1]`` bin positions ``W(n)``.
            - boxes (Tensor): ``[L, Q, 4]`` per-layer boxes, normalised cxcywh.
            - ref_points (Tensor): ``[Q, 4]`` the fixed FDR reference.
            - result (DetDataSample): what the model returned.
    """
    from mmdet.apis import inference_detector
    if not hasattr(model, 'decoder'):
        raise TypeError(
            f'{type(model).__name__} has no decoder; vis_fdr.py needs a '
            'D-FINE model')
    rec = DecoderRecorder(model.decoder)
    try:
        result = inference_detector(model, img)
    finally:
        rec.remove()
    if rec.output is None:
        raise RuntimeError('the decoder hook never fired during inference')
    dec_out = rec.output
    project = model.decoder.project().detach().cpu().float()
    num_bins = project.numel()
    corners = dec_out['pred_corners'][:, 0]  # [L, Q, 4 * num_bins]
    if corners.shape[-1] != 4 * num_bins:
        raise ValueError(
            f'pred_corners has {corners.shape[-1]} channels, expected 4 * '
            f'{num_bins}')
    probs = torch.softmax(
        corners.reshape(*corners.shape[:2], 4, num_bins).float(), -1)
    return dict(
        probs=probs,
        project=project,
        boxes=dec_out['pred_boxes'][:, 0].float(),
        ref_points=dec_out['ref_points'][0].float(),
        result=result)


def match_queries(bboxes: torch.Tensor, boxes_last: torch.Tensor,
                  hw) -> List[int]:
    """Query of each detection: the nearest last-layer box (L1, pixels).

    Args:
        bboxes (Tensor): ``[K, 4]`` detections, xyxy pixels of the image of
        size ``hw``.
        boxes_last (Tensor): ``[Q, 4]`` last-layer boxes, normalised cxcywh.
        hw (tuple): ``(H, W)`` the boxes are normalised by.
    """
    h, w = hw
    b = boxes_last.float()
    xyxy = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], -1)
    xyxy = xyxy * torch.tensor([w, h, w, h], dtype=xyxy.dtype)
    return [
        int((xyxy - box.float().cpu()).abs().sum(-1).argmin())
        for box in bboxes
    ]


def collect(model, img: str, topk: int, score_thr: float) -> Dict[str, Any]:
    """Everything the figure shows, as plain Python numbers."""
    out = fdr_distributions(model, img)
    inst = out['result'].pred_instances
    scores = inst.scores.cpu()
    order = [
        int(i) for i in torch.argsort(scores, descending=True)
        if scores[i] >= score_thr
    ]
    keep = order[:topk]
    if 'query_index' in inst:  # written by DFINEHead.predict_by_feat
        queries = [int(inst.query_index[i]) for i in keep]
        how = 'pred_instances.query_index'
    else:
        meta = out['result'].metainfo
        queries = match_queries(inst.bboxes[keep], out['boxes'][-1],
                                meta['ori_shape'][:2])
        how = 'nearest last-layer box'
    if len(queries) != len(keep):
        raise RuntimeError('internal: one query per detection expected')
    project = out['project'].double()
    dets = []
    for i, q in zip(keep, queries):  # lengths checked above
        probs = out['probs'][:, q].double()  # [L, 4, B]
        dets.append(
            dict(
                score=float(scores[i]),
                label=int(inst.labels[i]),
                bbox_xyxy=[float(v) for v in inst.bboxes[i].cpu()],
                query=q,
                probs=probs.tolist(),
                expected=(probs @ project).tolist()))
    return dict(
        img=img,
        num_layers=int(out['probs'].shape[0]),
        bins=project.tolist(),
        query_from=how,
        classes=list(model.dataset_meta.get('classes', []) or []),
        detections=dets)


def draw(data: Dict[str, Any], out: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    from PIL import Image

    img = np.asarray(Image.open(data['img']).convert('RGB'))
    dets = data['detections']
    rows = max(1, len(dets))
    fig, axes = plt.subplots(
        rows,
        5,
        figsize=(15, 2.8 * rows),
        dpi=80,
        squeeze=False,
        gridspec_kw=dict(width_ratios=[1.3, 1, 1, 1, 1]))
    bins = np.asarray(data['bins'])
    num_layers = data['num_layers']
    colors = plt.cm.viridis(np.linspace(0.85, 0.0, num_layers))
    if not dets:
        axes[0, 0].imshow(img)
        axes[0, 0].set_title('no detection above --score-thr')
    for r, det in enumerate(dets):
        ax = axes[r, 0]
        ax.imshow(img)
        x1, y1, x2, y2 = det['bbox_xyxy']
        ax.add_patch(
            patches.Rectangle((x1, y1),
                              x2 - x1,
                              y2 - y1,
                              fill=False,
                              color='red',
                              lw=2))
        name = (
            data['classes'][det['label']]
            if det['label'] < len(data['classes']) else str(det['label']))
        ax.set_title(
            f'{name} {det["score"]:.2f} (query {det["query"]})', fontsize=9)
        ax.axis('off')
        probs = np.asarray(det['probs'])  # [L, 4, B]
        for e, edge in enumerate(EDGES):
            ax = axes[r, e + 1]
            for layer in range(num_layers):
                ax.plot(
                    bins,
                    probs[layer, e],
                    color=colors[layer],
                    lw=1.2,
                    label=f'layer {layer}' if (r == 0 and e == 0) else None)
            ax.axvline(det['expected'][-1][e], color='red', ls='--', lw=0.8)
            ax.set_title(f'{edge} edge', fontsize=9)
            ax.set_xlabel('offset W(n)', fontsize=8)
            ax.tick_params(labelsize=7)
    if dets:
        fig.legend(loc='upper right', fontsize=7, ncol=min(num_layers, 8))
    fig.suptitle(
        'D-FINE FDR: edge distributions per decoder layer '
        '(light: first, dark: last)',
        fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    for path, what in ((args.img, 'image'), (args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise SystemExit(f'vis_fdr.py: {what} {path!r} not found')
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules

    import dfine_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    model = init_detector(args.config, args.checkpoint, device=args.device)
    data = collect(model, args.img, args.topk, args.score_thr)
    draw(data, args.out)
    if args.dump_json:
        with open(args.dump_json, 'w') as f:
            json.dump(data, f)
    print(f'{len(data["detections"])} detection(s), {data["num_layers"]} '
          f'decoder layers, queries from {data["query_from"]}; written '
          f'{args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
