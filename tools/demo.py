"""Run a D-FINE model on one image and save the drawn detections.

Usage::

    python tools/demo.py demo.jpg configs/dfine/dfine_hgnetv2_l_coco.py \
        dfine_l_coco_mmdet.pth --out-file out.jpg [--score-thr 0.4]

The checkpoint is an MMDetection checkpoint (see
``tools/convert_official_ckpt.py``).  Boxes above ``--score-thr`` are drawn
by MMDetection's ``DetLocalVisualizer``.
"""
import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='D-FINE single-image demo')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='model config')
    parser.add_argument('checkpoint', help='MMDetection checkpoint')
    parser.add_argument('--out-file', default='out.jpg', help='output image')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--score-thr', type=float, default=0.4, help='drawing threshold')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    import dfine_mmdet  # noqa: F401

    model = init_detector(args.config, args.checkpoint, device=args.device)
    result = inference_detector(model, args.img)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.img, channel_order='rgb')
    visualizer.add_datasample(
        'result',
        image,
        data_sample=result,
        draw_gt=False,
        show=False,
        out_file=args.out_file,
        pred_score_thr=args.score_thr)
    inst = result.pred_instances
    kept = int((inst.scores >= args.score_thr).sum())
    print(f'{kept} detections with score >= {args.score_thr} '
          f'(of {len(inst)}); wrote {args.out_file}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
