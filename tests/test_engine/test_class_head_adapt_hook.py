"""ClassHeadAdaptHook: fine-tuning a checkpoint onto another class count."""
import pytest
import torch
from mmdet.registry import HOOKS, MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

import dfine_mmdet  # noqa: F401
from dfine_mmdet.engine.hooks.class_head_adapt_hook import (OBJ365_IDS,
                                                            ClassHeadAdaptHook)


def _build(project_root, num_classes, seed):
    init_default_scope('mmdet')
    cfg = Config.fromfile(
        f'{project_root}/configs/dfine/toy/dfine_hgnetv2_n_toy.py')
    cfg.model.bbox_head.num_classes = num_classes
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


CLASS_KEYS = {
    'bbox_head.cls_branches.0.weight', 'bbox_head.cls_branches.0.bias',
    'bbox_head.cls_branches.1.weight', 'bbox_head.cls_branches.1.bias',
    'bbox_head.cls_branches.2.weight', 'bbox_head.cls_branches.2.bias',
    'bbox_head.enc_cls_branch.weight', 'bbox_head.enc_cls_branch.bias',
    'dn_query_generator.label_embedding.weight'
}


@pytest.fixture(scope='module')
def coco_and_toy(project_root):
    return _build(project_root, 80, seed=1), _build(project_root, 3, seed=2)


def test_reinitialises_only_class_dependent_keys(coco_and_toy):
    coco, toy = coco_and_toy
    ckpt = {k: v.clone() for k, v in coco.state_dict().items()}
    fresh = {k: v.clone() for k, v in toy.state_dict().items()}
    report = ClassHeadAdaptHook().adapt(ckpt, fresh)
    assert set(
        report['reinitialised']) == CLASS_KEYS and report['remapped'] == []
    toy.load_state_dict(ckpt, strict=False)
    for k, v in toy.state_dict().items():
        if k in CLASS_KEYS:
            assert torch.equal(v,
                               fresh[k]), k  # the new model's initialisation
        else:
            assert torch.equal(
                v,
                coco.state_dict()[k]), k  # loaded from the checkpoint


def test_class_map_picks_rows(coco_and_toy):
    coco, toy = coco_and_toy
    ckpt = {k: v.clone() for k, v in coco.state_dict().items()}
    fresh = toy.state_dict()
    report = ClassHeadAdaptHook(class_map=[5, -1, 79]).adapt(ckpt, fresh)
    assert set(report['remapped']) == CLASS_KEYS
    src = coco.state_dict()
    w = ckpt['bbox_head.cls_branches.1.weight']
    assert torch.equal(w[0], src['bbox_head.cls_branches.1.weight'][5])
    assert torch.equal(
        w[1], fresh['bbox_head.cls_branches.1.weight'][1])  # -1: keep new init
    assert torch.equal(w[2], src['bbox_head.cls_branches.1.weight'][79])
    emb = ckpt[
        'dn_query_generator.label_embedding.weight']  # (3 + 1 padding) rows
    assert emb.shape == (4, 128)
    assert torch.equal(
        emb[3],
        src['dn_query_generator.label_embedding.weight'][80])  # padding row


def test_named_obj365_map_and_errors():
    hook = HOOKS.build(
        dict(type='ClassHeadAdaptHook', class_map='obj365_to_coco'))
    assert len(hook.class_map) == 80 and hook.class_map[:3] == [1, 47, 6]
    assert hook.class_map == [i + 1 for i in OBJ365_IDS]
    with pytest.raises(KeyError, match='unknown class_map'):
        ClassHeadAdaptHook(class_map='voc_to_coco')
    bad = {'neck.input_proj.0.conv.weight': torch.zeros(2, 2, 1, 1)}
    with pytest.raises(ValueError, match='neck.input_proj.0.conv.weight'):
        ClassHeadAdaptHook().adapt(
            bad, {'neck.input_proj.0.conv.weight': torch.zeros(3, 2, 1, 1)})
