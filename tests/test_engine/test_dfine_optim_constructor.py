"""DFINEOptimWrapperConstructor: AdamW param groups (fixed and official-bug
modes)."""
import re
from collections import OrderedDict

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.optim.scheduler import LinearLR
from torch import nn

import dfine_mmdet  # noqa: F401  (registers the constructor)
from dfine_mmdet.engine.optimizers.dfine_optim_constructor import (
    DFINEOptimWrapperConstructor, dfine_param_groups)
from dfine_mmdet.models.backbones.hgnetv2 import HGNetV2

# official regexes (resolved configs, configs/dfine/*.yml)
NSM = [('backbone', r'^(?=.*backbone)(?!.*norm|bn).*$'),
       ('backbone_no_decay', r'^(?=.*backbone)(?=.*norm|bn).*$'),
       ('no_decay', r'^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$')]
LX = [('backbone', r'^(?=.*backbone)(?!.*norm|bn).*$'),
      ('no_decay', r'^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$')]


def official_groups(named_params, patterns):
    """The official get_optim_params on official names ->
    {group: set(names)}."""
    out, visited = {}, set()
    for gname, pat in patterns:
        names = {
            k
            for k, p in named_params if p.requires_grad and re.findall(pat, k)
        }
        out[gname] = names
        visited |= names
    out['default'] = {k for k, p in named_params if p.requires_grad} - visited
    return {k: v for k, v in out.items() if v}


class OfficialNamed(nn.Module):
    """A small model with official-style names: backbone (HGNetV2-B0 with BN
    and LAB), encoder (conv+norm, attention with in_proj_bias, LayerNorm) and
    decoder (Linear, LayerNorm, Embedding)."""

    def __init__(self, freeze=False):
        super().__init__()
        self.backbone = HGNetV2(
            arch='B0',
            use_lab=True,
            out_indices=(3, ),
            frozen_stem=freeze,
            freeze_norm=freeze)
        self.encoder = nn.ModuleDict(
            dict(
                input_proj=nn.Sequential(
                    OrderedDict(
                        conv=nn.Conv2d(4, 4, 1, bias=False),
                        norm=nn.BatchNorm2d(4))),
                attn=nn.MultiheadAttention(4, 2),
                norm1=nn.LayerNorm(4)))
        self.decoder = nn.ModuleDict(
            dict(
                linear1=nn.Linear(4, 4),
                norm3=nn.LayerNorm(4),
                denoising_class_embed=nn.Embedding(3, 4)))


def _names(groups):
    return {k: {n for n, _ in v} for k, v in groups.items() if v}


@pytest.mark.parametrize('style,patterns,freeze', [('nsm', NSM, False),
                                                   ('lx', LX, True)])
def test_official_mode_equals_official_regexes(style, patterns, freeze):
    model = OfficialNamed(freeze=freeze)
    ours = _names(
        dfine_param_groups(
            model,
            reproduce_official_regex_bug=True,
            official_regex_style=style))
    assert ours == official_groups(list(model.named_parameters()), patterns)
    if style == 'nsm':
        # the bug: backbone BN / LAB parameters are in the decayed group
        assert 'backbone.stem.stem1.bn.weight' in ours['backbone']
        assert 'backbone.stem.stem1.lab.scale' in ours['backbone']
        assert 'encoder.attn.in_proj_bias' in ours['no_decay']
    else:
        assert 'encoder.attn.in_proj_bias' in ours[
            'default']  # bias keeps decay
        assert not any(
            n.startswith('backbone.stem') for n in ours['backbone'])  # frozen


def test_fixed_mode_groups():
    model = OfficialNamed()
    g = _names(dfine_param_groups(model))
    assert 'backbone.stem.stem1.conv.weight' in g['backbone']
    for n in ('backbone.stem.stem1.bn.weight', 'backbone.stem.stem1.bn.bias',
              'backbone.stem.stem1.lab.scale', 'backbone.stem.stem1.lab.bias'):
        assert n in g['backbone_no_decay'], n
    assert g['no_decay'] == {
        'encoder.input_proj.norm.weight', 'encoder.input_proj.norm.bias',
        'encoder.attn.in_proj_bias', 'encoder.attn.out_proj.bias',
        'encoder.norm1.weight', 'encoder.norm1.bias', 'decoder.linear1.bias',
        'decoder.norm3.weight', 'decoder.norm3.bias'
    }
    assert g['default'] == {
        'encoder.input_proj.conv.weight', 'encoder.attn.in_proj_weight',
        'encoder.attn.out_proj.weight', 'decoder.linear1.weight',
        'decoder.denoising_class_embed.weight'
    }
    # every trainable parameter exactly once
    all_names = [n for v in g.values() for n in v]
    assert sorted(all_names) == sorted(n for n, p in model.named_parameters()
                                       if p.requires_grad)


def test_constructor_builds_adamw_groups():
    model = OfficialNamed()
    ctor = DFINEOptimWrapperConstructor(
        dict(
            type='OptimWrapper',
            optimizer=dict(
                type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4),
            clip_grad=dict(max_norm=0.1)), dict(backbone_lr=1e-4))
    wrapper = ctor(model)
    assert isinstance(wrapper, OptimWrapper)
    opt = wrapper.optimizer
    assert isinstance(opt, torch.optim.AdamW)
    by_name = {g['name']: g for g in opt.param_groups}
    assert [g['name'] for g in opt.param_groups
            ] == ['backbone', 'backbone_no_decay', 'no_decay', 'default']
    assert by_name['backbone']['lr'] == 1e-4 and by_name['backbone'][
        'weight_decay'] == 1e-4
    assert by_name['backbone_no_decay']['lr'] == 1e-4
    assert by_name['backbone_no_decay']['weight_decay'] == 0.0
    assert by_name['no_decay']['lr'] == 2e-4 and by_name['no_decay'][
        'weight_decay'] == 0.0
    assert by_name['default']['lr'] == 2e-4 and by_name['default'][
        'weight_decay'] == 1e-4
    assert wrapper.clip_grad_kwargs == dict(max_norm=0.1)


def test_constructor_rejects_unknown_keys():
    with pytest.raises(KeyError, match='backbone_lr_mult'):
        DFINEOptimWrapperConstructor(
            dict(optimizer=dict(type='AdamW', lr=1e-3)),
            dict(backbone_lr_mult=0.1))
    with pytest.raises(ValueError, match='official_regex_style'):
        dfine_param_groups(
            nn.Linear(1, 1),
            reproduce_official_regex_bug=True,
            official_regex_style='xl')


def test_linear_warmup_matches_official():
    """LinearLR(1/500 -> 1, iterations 0..499) ==
    official lr * min(1, (it+1)/500)."""
    p = nn.Parameter(torch.zeros(1))
    q = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([dict(params=[p], lr=4e-4),
                             dict(params=[q])],
                            lr=8e-4)
    sched = LinearLR(
        opt,
        start_factor=1 / 500,
        end_factor=1.0,
        by_epoch=False,
        begin=0,
        end=500)
    for it in range(520):
        factor = min(1.0, (it + 1) / 500)
        assert opt.param_groups[0]['lr'] == pytest.approx(
            4e-4 * factor, rel=1e-9), it
        assert opt.param_groups[1]['lr'] == pytest.approx(
            8e-4 * factor, rel=1e-9), it
        opt.step()
        sched.step()


def _to_official(name):
    """Our parameter name -> the official one (inverse of the converter's
    key table)."""
    from dfine_mmdet.checkpoint.official import KEY_MAP
    for official, ours in sorted(KEY_MAP, key=lambda kv: -len(kv[1])):
        if name.startswith(ours):
            return official + name[len(ours):]
    raise KeyError(name)


@pytest.mark.parametrize('cfg_name,style', [('dfine_hgnetv2_n_coco', 'nsm'),
                                            ('dfine_hgnetv2_l_coco', 'lx')])
def test_real_detector_official_mode_matches_official_regexes(
        project_root, cfg_name, style):
    """On the real N (N/S/M regexes) and L (L/X regexes, frozen stem + frozen
    BN) detectors, the official-bug mode gives exactly the groups the official
    regexes give on the official parameter names; the fixed mode moves
    norms/LAB/biases out of weight decay."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(f'{project_root}/configs/dfine/{cfg_name}.py')
    model = MODELS.build(cfg.model)
    named = [(_to_official(n), p) for n, p in model.named_parameters()]
    expected = official_groups(named, NSM if style == 'nsm' else LX)
    ours = dfine_param_groups(
        model, reproduce_official_regex_bug=True, official_regex_style=style)
    ours = {k: {_to_official(n) for n, _ in v} for k, v in ours.items() if v}
    assert ours == expected
    fixed = _names(dfine_param_groups(model))
    if style == 'nsm':
        assert 'backbone.stem.stem1.bn.weight' in fixed['backbone_no_decay']
        assert 'backbone.stem.stem1.lab.scale' in fixed['backbone_no_decay']
    assert any(n.endswith('in_proj_bias') for n in fixed['no_decay'])
    assert not any(
        n.endswith('bias') for g in ('backbone', 'default')
        for n in fixed.get(g, ()))


def test_flat_cosine_composes_from_mmengine_schedulers():
    """Warmup, flat, then cosine: the composition documented in
    _base_/schedules/dfine_adamw.py."""
    from mmengine.optim.scheduler import CosineAnnealingLR
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    scheds = [
        LinearLR(opt, start_factor=1 / 10, by_epoch=False, begin=0, end=10),
        CosineAnnealingLR(
            opt, eta_min=0.0, T_max=20, by_epoch=False, begin=30, end=50)
    ]
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        for s in scheds:
            s.step()
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10:31] == pytest.approx([1e-3] * 21)  # flat
    assert lrs[40] == pytest.approx(
        0.5e-3, rel=1e-6)  # half way down the cosine
    assert lrs[49] < 0.01e-3
