"""DFINE detector beyond 640x640 parity: any input size, the training
interface, ``DetInferencer`` and COCO evaluation through MMEngine's Runner.

Uses the N config (smallest model) with random weights.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from dfine_model_utils import build_model, config_path, load_config


@pytest.fixture(scope='module')
def model_n():
    torch.manual_seed(0)
    return build_model('n').eval()


def _samples(sizes_hw, input_hw):
    from mmdet.structures import DetDataSample
    in_h, in_w = input_hw
    return [
        DetDataSample(
            metainfo=dict(
                img_shape=(in_h, in_w),
                batch_input_shape=(in_h, in_w),
                ori_shape=(h, w),
                scale_factor=(in_w / w, in_h / h))) for h, w in sizes_hw
    ]


@pytest.mark.parametrize('input_hw', [(320, 320), (352, 480), (416, 320)])
def test_any_input_size(model_n, input_hw):
    """Non-640 and rectangular inputs: anchors follow the feature shapes."""
    h, w = input_hw
    inputs = torch.rand(1, 3, h, w)
    samples = _samples([(2 * h, 3 * w)], input_hw)
    with torch.no_grad():
        preds = model_n(inputs, samples, mode='predict')
        if input_hw == (352, 480):
            logits, boxes = model_n(inputs, mode='tensor')[:2]
            assert logits.shape == (3, 1, 300, 80)
            assert boxes.shape == (3, 1, 300, 4)
    inst = preds[0].pred_instances
    assert len(inst) == 300 and torch.isfinite(inst.bboxes).all()
    # boxes of valid anchors stay within ~the original image (3w x 2h)
    centers = (inst.bboxes[:, :2] + inst.bboxes[:, 2:]) / 2
    assert (centers[:, 0] > -0.5 * 3 * w).all()
    assert (centers[:, 0] < 1.5 * 3 * w).all()
    shapes = ((h // 16, w // 16), (h // 32, w // 32))
    assert any(k[0] == shapes for k in model_n._anchor_cache)


def test_buffers_used_only_at_their_shape(model_n):
    """The (checkpoint) buffers serve the 640x640 shapes at inference;
    other shapes, and training, use generated anchors."""
    at_640 = [(40, 40), (20, 20)]
    anchors, valid = model_n.get_anchors(at_640, 'cpu')
    assert anchors is model_n.anchors and valid is model_n.valid_mask
    other, other_valid = model_n.get_anchors([(20, 40), (10, 20)], 'cpu')
    assert other.shape == (1, 20 * 40 + 10 * 20, 4)
    assert other.dtype == torch.float32 and other_valid.dtype == torch.bool
    # a checkpoint value (e.g. EMA-averaged) is honoured at 640 ...
    saved = model_n.anchors.clone()
    with torch.no_grad():
        model_n.anchors[0, 500, 0] += 1e-3
    try:
        assert model_n.get_anchors(at_640, 'cpu')[0][0, 500, 0] == \
            model_n.anchors[0, 500, 0]
        # ... while training regenerates the official values
        model_n.train()
        generated = model_n.get_anchors(at_640, 'cpu')[0]
        assert generated is not model_n.anchors
        assert generated[0, 500, 0] != model_n.anchors[0, 500, 0]
    finally:
        model_n.eval()
        with torch.no_grad():
            model_n.anchors.copy_(saved)


def _train_samples(num_gts, input_hw=(320, 320), seed=0):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    samples = []
    for n in num_gts:
        xy = torch.rand(n, 2, generator=g) * 200
        wh = torch.rand(n, 2, generator=g) * 100 + 10
        inst = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, 80, (n, ), generator=g))
        samples.append(
            DetDataSample(
                gt_instances=inst,
                metainfo=dict(
                    img_shape=input_hw,
                    batch_input_shape=input_hw,
                    ori_shape=input_hw,
                    scale_factor=(1.0, 1.0))))
    return samples


def test_training_outputs_structure(model_n):
    """The loss input (``loss_by_feat`` -> ``go_lsd_loss``): typed per-layer
    records with the denoising part split off; checked by recording what the
    head passes to its loss computation, so this does not depend on it."""
    model = model_n.train()
    seen = {}

    def recorder(layers, targets, **kwargs):
        seen.update(kwargs, layers=layers, targets=targets)
        return dict(loss_dummy=layers.logits.sum() * 0)

    head = model.bbox_head
    head.go_lsd_loss = recorder  # instance attribute shadows the method
    try:
        torch.manual_seed(0)
        losses = model(
            torch.rand(2, 3, 320, 320), _train_samples([3, 0]), mode='loss')
    finally:
        del head.go_lsd_loss
        model.eval()
    assert set(losses) == {'loss_dummy'}
    layers = seen['layers']
    assert layers.logits.shape == (3, 2, 300, 80)
    assert layers.boxes.shape == (3, 2, 300, 4)
    assert layers.corners.shape == (3, 2, 300, 132)
    assert layers.refs.shape == (2, 300, 4)
    assert len(seen['enc']) == 1
    assert seen['enc'][0].logits.shape == (2, 300, 80)
    assert seen['pre'].boxes.shape == (2, 300, 4)
    meta = seen['dn_meta']
    num_dn = meta['dn_num_split'][0]
    assert meta['dn_num_split'] == [num_dn, 300] and num_dn == 2 * 3 * 33
    dn = seen['dn_layers']
    assert dn.boxes.shape == (3, 2, num_dn, 4)
    assert dn.refs.shape == (2, num_dn, 4)
    assert seen['dn_pre'].logits.shape == (2, num_dn, 80)
    assert [len(t['labels']) for t in seen['targets']] == [3, 0]
    assert not layers.refs.requires_grad
    # targets: normalised cxcywh of the input size
    targets = seen['targets']
    assert targets[1]['boxes'].shape == (0, 4)
    assert (targets[0]['boxes'] <= 1.5).all()


def test_loss_step(model_n):
    """One real loss step through the head's matching and losses."""
    model = model_n.train()
    try:
        torch.manual_seed(0)
        losses = model(
            torch.rand(2, 3, 320, 320), _train_samples([3, 1]), mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
    assert 'loss_vfl' in losses and 'loss_fgl_dn_2' in losses
    assert torch.isfinite(total)


# ---------------------------------------------------------------------- #
# DetInferencer and COCO evaluation on a generated 4-image dataset
# ---------------------------------------------------------------------- #
def _make_coco(root):
    from PIL import Image
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, (w, h) in enumerate([(96, 64), (64, 80), (120, 90), (80, 80)]):
        img = np.full((h, w, 3), 120, np.uint8)
        x, y = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        img[y:y + h // 3, x:x + w // 3] = (220, 30, 30)
        name = f'img_{i}.jpg'
        Image.fromarray(img).save(osp.join(root, name))
        images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        anns.append(
            dict(
                id=i + 1,
                image_id=i + 1,
                category_id=1,
                bbox=[x, y, w // 3, h // 3],
                area=(w // 3) * (h // 3),
                iscrowd=0))
    cats = [dict(id=1, name='red'), dict(id=2, name='blue')]
    with open(osp.join(root, 'ann.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return images


@pytest.fixture(scope='module')
def toy_setup(tmp_path_factory):
    """2-class N config on a generated COCO set + a random checkpoint."""
    root = str(tmp_path_factory.mktemp('dfine_coco'))
    images = _make_coco(root)
    cfg = load_config('n')
    cfg.model.bbox_head.num_classes = 2
    classes = ('red', 'blue')
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader].update(
            batch_size=2, num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(
            data_root=root,
            ann_file='ann.json',
            data_prefix=dict(img=''),
            metainfo=dict(classes=classes))
    for ev in ('val_evaluator', 'test_evaluator'):
        cfg[ev].update(
            ann_file=osp.join(root, 'ann.json'),
            outfile_prefix=osp.join(root, 'results'))
    # smaller network input than the official 640 to keep the test fast
    for step in cfg.test_dataloader.dataset.pipeline:
        if step['type'] == 'Resize':
            step['scale'] = (320, 320)
    cfg.val_dataloader = cfg.test_dataloader
    cfg.work_dir = osp.join(root, 'work_dir')
    cfg_file = osp.join(root, 'dfine_n_toy.py')
    cfg.dump(cfg_file)
    torch.manual_seed(0)
    model = build_model('n', cfg=cfg)
    ckpt = osp.join(root, 'random_n.pth')
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=classes))), ckpt)
    return dict(root=root, images=images, cfg_file=cfg_file, ckpt=ckpt)


def test_coco_evaluation_with_runner(toy_setup):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(toy_setup['cfg_file'])
    cfg.load_from = toy_setup['ckpt']
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics
    assert -1 <= metrics['coco/bbox_mAP'] <= 1
    with open(osp.join(toy_setup['root'], 'results.bbox.json')) as f:
        dets = json.load(f)
    assert len(dets) == 300 * len(toy_setup['images'])
    sizes = {
        im['id']: (im['width'], im['height'])
        for im in toy_setup['images']
    }
    for d in dets:
        assert d['category_id'] in (1, 2)
        w, h = sizes[d['image_id']]
        cx = d['bbox'][0] + d['bbox'][2] / 2
        assert -w < cx < 2 * w  # original-image pixels, not 640 space


def test_det_inferencer_matches_init_detector(toy_setup):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    img = osp.join(toy_setup['root'], 'img_0.jpg')
    inferencer = DetInferencer(
        model=toy_setup['cfg_file'],
        weights=toy_setup['ckpt'],
        device='cpu',
        show_progress=False)
    res = inferencer(img, return_datasamples=True, no_save_vis=True)
    pred = res['predictions'][0].pred_instances
    model = init_detector(
        toy_setup['cfg_file'], toy_setup['ckpt'], device='cpu')
    ref = inference_detector(model, img).pred_instances
    assert len(pred) == len(ref) == 300
    torch.testing.assert_close(pred.scores, ref.scores)
    torch.testing.assert_close(pred.bboxes, ref.bboxes)
    assert pred.labels.max() < 2
    assert config_path('n') != toy_setup['cfg_file']
    # an array input: mmdet swaps test_pipeline[0] (CheckedLoadImageFromFile
    # in the shipped configs) for LoadImageFromNDArray, keeping its
    # arguments; the same Pillow-decoded pixels give the same detections
    import numpy as np
    from PIL import Image
    bgr = np.ascontiguousarray(
        np.array(Image.open(img).convert('RGB'))[..., ::-1])
    arr = inference_detector(model, bgr).pred_instances
    assert len(arr) == 300
    torch.testing.assert_close(arr.scores, ref.scores)
    torch.testing.assert_close(arr.bboxes, ref.bboxes)


def test_init_weights_gives_official_init():
    """After mmengine's ``init_weights`` the official zero / prior inits
    hold (training from scratch)."""
    cfg = load_config('n')
    cfg.model.backbone.init_cfg = None  # from scratch: no ImageNet file
    model = build_model('n', cfg=cfg)
    model.init_weights()
    head = model.bbox_head
    prior = -4.59511985013459  # logit(0.01)
    for branch in list(head.cls_branches) + [head.enc_cls_branch]:
        torch.testing.assert_close(branch.bias,
                                   torch.full_like(branch.bias, prior))
    for reg in list(
            head.reg_branches) + [head.pre_reg_branch, head.enc_reg_branch]:
        assert torch.all(reg.layers[-1].weight == 0)
    for lqe in head.lqe_layers:
        assert torch.all(lqe.reg_conf.layers[-1].weight == 0)
    layer = model.decoder.layers[0]
    assert torch.all(layer.gateway.gate.weight == 0)
    assert torch.all(layer.cross_attn.attention_weights.weight == 0)
    assert layer.cross_attn.sampling_offsets.bias.abs().max() == 6
    assert model.decoder.reg_scale.dtype == torch.int64
    emb = model.dn_query_generator.label_embedding.weight
    assert torch.all(emb[-1] == 0) and emb[:-1].std() > 0.5
