"""AdamW parameter groups of the D-FINE recipe (backbone lr, no decay on
norms/biases).

The official recipe (``configs/dfine/include/optimizer.yml`` and the per-size
overrides) builds AdamW param groups from regexes over the *official*
parameter names (``backbone.*``, ``encoder.*``, ``decoder.*``):

* N/S/M (three groups)::

      '^(?=.*backbone)(?!.*norm|bn).*$'                       lr = backbone_lr
      '^(?=.*backbone)(?=.*norm|bn).*$'                       lr = backbone_lr,
                                                              wd = 0
      '^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$'   wd = 0
      (everything else)                                       default lr / wd

* L/X (two groups)::

      '^(?=.*backbone)(?!.*norm|bn).*$'                       lr = backbone_lr
      '^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$'        wd = 0
      (everything else)                                       default lr / wd

**The official regex bug.** In ``(?!.*norm|bn)`` the alternation binds
loosely: it reads "not (``.*norm``) and not (``bn`` at the start of the
name)".  HGNetV2 names its BatchNorms ``.bn.`` (never ``norm``), so the first
group captures **every** trainable backbone parameter - BN weights/biases and
the LearnableAffineBlock (``.lab.``) scale/bias included - *with* weight
decay, and the intended no-decay backbone group is empty.  In the L/X configs
(BN frozen there) the encoder/decoder no-decay group lacks ``bias``, so every
encoder/decoder bias keeps weight decay.

**What this constructor does.** By default it implements the evident intent
(``reproduce_official_regex_bug=False``):

* backbone parameters (name starts with ``backbone_prefix``): ``backbone_lr``;
* no weight decay on normalisation-layer parameters (BN/SyncBN/LN/GN/IN), on
  LearnableAffineBlock parameters (HGNetV2's per-tensor affine after each
  activation, a norm-like scale/shift) and on every bias
  (``*bias``, e.g. ``in_proj_bias``), in the backbone and elsewhere;
* everything else: the optimizer's default lr and weight decay.

With ``reproduce_official_regex_bug=True`` it reproduces the official groups
exactly, as produced by the regexes above on the official names:
``official_regex_style='nsm'`` (N/S/M configs: all backbone params with decay;
encoder/decoder norms **and biases** without decay) or ``'lx'`` (L/X configs:
all backbone params with decay; encoder/decoder norms without decay, biases
with decay).  The groups are built from what the regexes test (is it in the
backbone, is it a norm parameter, is it a bias) rather than from the names
themselves, because our module names differ from the official ones outside
the backbone (e.g. ``neck.*`` for the official ``encoder.*``).

Only parameters with ``requires_grad=True`` are added (as the official).  Empty
groups are dropped.  Every group carries a ``name`` key (``backbone``,
``backbone_no_decay``, ``no_decay``, ``default``) for logging and tests.

Config example (D-FINE-S)::

    optim_wrapper = dict(
        type='AmpOptimWrapper',
        constructor='DFINEOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                       weight_decay=1e-4),
        paramwise_cfg=dict(backbone_lr=1e-4),
        clip_grad=dict(max_norm=0.1))
"""
import logging
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmdet.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                            OPTIMIZERS)
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm, _InstanceNorm

NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm,
              nn.LocalResponseNorm)

#: group order (the official order: backbone groups first, default last)
GROUP_ORDER = ('backbone', 'backbone_no_decay', 'no_decay', 'default')


def _is_norm_like(module: nn.Module, extra_types: Tuple[str, ...]) -> bool:
    return isinstance(module, NORM_TYPES) or \
        type(module).__name__ in extra_types


def dfine_param_groups(
    model: nn.Module,
    backbone_prefix: str = 'backbone.',
    reproduce_official_regex_bug: bool = False,
    official_regex_style: str = 'nsm',
    norm_like_module_types: Tuple[str, ...] = ('LearnableAffineBlock', ),
) -> Dict[str, List[Tuple[str, nn.Parameter]]]:
    """Assign every trainable parameter of ``model`` to a D-FINE param group.

    Args:
        model (nn.Module): The (unwrapped) detector.
        backbone_prefix (str): Name prefix of backbone parameters.
        reproduce_official_regex_bug (bool): Reproduce the official groups
            (see module docstring) instead of the intended ones.
        official_regex_style (str): ``'nsm'`` or ``'lx'``; only used when
            ``reproduce_official_regex_bug`` is True.
        norm_like_module_types (tuple[str]): Class names, besides the torch
            norm layers, whose parameters count as norm parameters in the
            fixed grouping.

    Returns:
        dict[str, list[tuple[str, Parameter]]]: ``group name -> [(param name,
        param)]`` for the groups in :data:`GROUP_ORDER` (possibly empty).
    """
    if official_regex_style not in ('nsm', 'lx'):
        raise ValueError("DFINEOptimWrapperConstructor: paramwise_cfg."
                         f"official_regex_style must be 'nsm' or 'lx', got "
                         f'{official_regex_style!r}')
    groups: Dict[str, List[Tuple[str, nn.Parameter]]] = {
        k: []
        for k in GROUP_ORDER
    }
    seen = set()
    for mod_name, module in model.named_modules():
        # norm parameters in the official sense (regex 'norm|bn') are only
        # real norm layers; the fixed grouping adds LAB blocks.
        is_torch_norm = isinstance(module, NORM_TYPES)
        is_norm_like = _is_norm_like(module, norm_like_module_types)
        for p_name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            name = f'{mod_name}.{p_name}' if mod_name else p_name
            in_backbone = name.startswith(backbone_prefix)
            is_bias = p_name.endswith('bias')
            if reproduce_official_regex_bug:
                if in_backbone:
                    key = 'backbone'
                elif is_torch_norm or (official_regex_style == 'nsm'
                                       and is_bias):
                    key = 'no_decay'
                else:
                    key = 'default'
            else:
                no_decay = is_norm_like or is_bias
                if in_backbone:
                    key = 'backbone_no_decay' if no_decay else 'backbone'
                else:
                    key = 'no_decay' if no_decay else 'default'
            groups[key].append((name, param))
    return groups


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DFINEOptimWrapperConstructor:
    """Optimizer-wrapper constructor with D-FINE's AdamW param groups.

    Args:
        optim_wrapper_cfg (dict): ``optim_wrapper`` config (must contain
            ``optimizer``; ``type`` defaults to ``'OptimWrapper'``).
        paramwise_cfg (dict, optional): D-FINE options:

            - ``backbone_lr`` (float): lr of backbone params (default: the
              optimizer's lr).
            - ``backbone_prefix`` (str): default ``'backbone.'``.
            - ``reproduce_official_regex_bug`` (bool): default False.
            - ``official_regex_style`` (str): ``'nsm'`` (default) or ``'lx'``.
            - ``norm_like_module_types`` (tuple[str]): default
              ``('LearnableAffineBlock',)``.
    """

    _KNOWN_KEYS = ('backbone_lr', 'backbone_prefix',
                   'reproduce_official_regex_bug', 'official_regex_style',
                   'norm_like_module_types')

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        if not isinstance(optim_wrapper_cfg, dict) or \
                'optimizer' not in optim_wrapper_cfg:
            raise TypeError('DFINEOptimWrapperConstructor: optim_wrapper '
                            'config must be a dict with an "optimizer" key, '
                            f'got {optim_wrapper_cfg!r}')
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = dict(self.optim_wrapper_cfg.pop('optimizer'))
        self.paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(self.paramwise_cfg) - set(self._KNOWN_KEYS)
        if unknown:
            raise KeyError(
                'DFINEOptimWrapperConstructor: unknown '
                f'optim_wrapper.paramwise_cfg keys {sorted(unknown)};'
                f' known: {list(self._KNOWN_KEYS)}')

    def build_param_groups(self, model: nn.Module) -> List[dict]:
        """Param-group dicts for ``torch.optim`` (empty groups dropped)."""
        cfg = self.paramwise_cfg
        groups = dfine_param_groups(
            model,
            backbone_prefix=cfg.get('backbone_prefix', 'backbone.'),
            reproduce_official_regex_bug=cfg.get(
                'reproduce_official_regex_bug', False),
            official_regex_style=cfg.get('official_regex_style', 'nsm'),
            norm_like_module_types=tuple(
                cfg.get('norm_like_module_types', ('LearnableAffineBlock', ))))
        backbone_lr = cfg.get('backbone_lr', None)
        param_groups = []
        for key in GROUP_ORDER:
            members = groups[key]
            if not members:
                continue
            group = dict(name=key, params=[p for _, p in members])
            if key.startswith('backbone') and backbone_lr is not None:
                group['lr'] = backbone_lr
            if key.endswith('no_decay'):
                group['weight_decay'] = 0.0
            param_groups.append(group)
            weight_decay = group.get('weight_decay',
                                     self.optimizer_cfg.get('weight_decay'))
            print_log(
                f'DFINEOptimWrapperConstructor: group {key!r}: '
                f'{len(members)} tensors, '
                f'{sum(p.numel() for _, p in members)} params, '
                f'lr={group.get("lr", self.optimizer_cfg.get("lr"))}, '
                f'weight_decay={weight_decay}',
                logger='current',
                level=logging.DEBUG)
        return param_groups

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        optimizer_cfg = dict(self.optimizer_cfg)
        optimizer_cfg['params'] = self.build_param_groups(model)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        optim_wrapper_cfg = dict(self.optim_wrapper_cfg)
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(
            optim_wrapper_cfg, default_args=dict(optimizer=optimizer))
