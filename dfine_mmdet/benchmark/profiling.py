"""Where the time of one D-FINE training step goes (``torch.profiler``).

One training iteration (data preprocessing, forward, loss, backward, gradient
clipping, optimizer step) is run under :func:`torch.profiler.profile` with a
``record_function`` scope around

* every module down to a chosen depth (forward pre/post hooks: backbone
  stages, neck parts, decoder layers and their attention / FFN blocks, the
  denoising generator, the loss modules ``loss_cls`` / ``loss_bbox`` / ...),
* the loss phases that are not modules (Hungarian matching
  ``assigner.match``, the GO-LSD union ``go_lsd_assigner.assign``, the
  denoising targets / losses of the head) -- bound methods of the model's own
  objects are wrapped for the duration of the profile and restored after,
* the backward pass and the optimizer update (clip + AdamW).

Backward time is attributed to the module whose forward created the autograd
node: every forward op records an autograd *sequence number*, and the
profiler's ``autograd::engine::evaluate_function: XBackward0`` events carry the
same number.  So "backward by module" is exact per autograd node, not an
estimate from hooks.

"Python overhead" of a scope is its wall time minus the self time of the
ATen ops inside it (the time spent in Python, the dispatcher and
allocation between kernels).

The numbers are CPU numbers of the machine the profile ran on; use
:func:`format_report` to print them and ``tools/benchmark/profile_step.py``
for the command line.
"""
import contextlib
import functools
import statistics
import time
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

#: Methods of the detector's own objects wrapped with a profiler scope
#: (attribute path from the model, scope name).  Missing ones are skipped (and
#: listed in the report), so a refactor of the loss code cannot break the tool.
LOSS_METHODS: Tuple[Tuple[str, str], ...] = (
    ('bbox_head.loss', 'loss'),
    ('bbox_head.assigner.match', 'loss.matching'),
    ('bbox_head.go_lsd_assigner.assign', 'loss.go_lsd_union'),
    ('bbox_head.go_lsd_loss', 'loss.go_lsd_loss'),
    ('bbox_head.supervision_plan', 'loss.matching_and_union'),
    ('bbox_head.dn_matches', 'loss.denoising_targets'),
    ('bbox_head.predict', 'predict'),
    ('data_preprocessor.forward', 'data_preprocessor'),
    ('extract_feat', 'extract_feat'),
    ('forward_transformer', 'forward_transformer'),
)


def build_training(config: str,
                   batch_size: int = 4,
                   size: int = 640,
                   num_gt: int = 7,
                   seed: int = 0,
                   cfg_options: Optional[dict] = None):
    """Model, optimizer wrapper and one synthetic batch for a training step.

    Random init (the pretrained backbone file is not needed); the optimizer
    wrapper is the recipe's (``DFINEOptimWrapperConstructor``, grad clip) as a
    plain ``OptimWrapper``.  The batch is ``batch_size`` random uint8 images
    ``[3, size, size]`` with ``num_gt`` random boxes each (``seed``).

    Returns:
        tuple: ``(model, optim_wrapper, data)``, ``data`` as a dataloader
        yields it (``inputs`` list of uint8 tensors, ``data_samples``).
    """
    from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401  (registers the plugin)
    init_default_scope('mmdet')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.model.backbone.get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # timing needs no pretrained file
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    quiet_init_weights(model)
    model.train()
    ow = cfg.optim_wrapper.copy()
    ow['type'] = 'OptimWrapper'
    ow.pop('loss_scale', None)
    ow.pop('dtype', None)
    optim = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type=ow.pop('constructor', 'DefaultOptimWrapperConstructor'),
            optim_wrapper_cfg=ow,
            paramwise_cfg=ow.pop('paramwise_cfg', None)))(
                model)
    data = synthetic_batch(batch_size, size, num_gt,
                           cfg.model.bbox_head.num_classes,
                           torch.Generator().manual_seed(seed))
    return model, optim, data


def quiet_init_weights(model: nn.Module) -> None:
    """``model.init_weights()`` without MMEngine's per-parameter INFO log."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def synthetic_batch(batch_size: int, size: int, num_gt: int, num_classes: int,
                    generator: torch.Generator) -> dict:
    """Random uint8 images ``[3, size, size]`` and ``num_gt`` random pixel
    ``xyxy`` boxes / labels per image, as a dataloader batch."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(
            torch.randint(
                0,
                256, (3, size, size),
                dtype=torch.uint8,
                generator=generator))
        xy = torch.rand(num_gt, 2, generator=generator) * size * 0.7
        wh = torch.rand(num_gt, 2, generator=generator) * size * 0.3 + 4
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0),
                batch_input_shape=(size, size)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], dim=1),
            labels=torch.randint(
                0, num_classes, (num_gt, ), generator=generator))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def train_step(model: nn.Module, optim, data: dict) -> Tuple[float, float]:
    """One training iteration as ``BaseModel.train_step`` runs it, split in
    (data preprocessing + forward + loss) and (backward + clip + step).

    Returns:
        tuple[float, float, float]: seconds of the two parts and the loss.
    """
    t0 = time.perf_counter()
    with torch.profiler.record_function('step.forward_and_loss'):
        with optim.optim_context(model):
            batch = model.data_preprocessor(data, True)
            losses = model._run_forward(batch, mode='loss')
        loss, _ = model.parse_losses(losses)
    t1 = time.perf_counter()
    with torch.profiler.record_function('step.backward_and_update'):
        with torch.profiler.record_function('backward'):
            optim.backward(loss)
        with torch.profiler.record_function('optimizer'):
            optim.step()
            optim.zero_grad()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, float(loss.detach())


def module_depth(name: str) -> int:
    """Depth of a dotted module name, list indices not counted
    (``backbone.stages.0`` is 2, ``decoder.layers.0.cross_attn`` is 3)."""
    return sum(1 for part in name.split('.') if not part.isdigit())


@contextlib.contextmanager
def module_scopes(model: nn.Module, max_depth: int = 3, prefix: str = 'fwd'):
    """Wrap the forward of every sub-module down to ``max_depth`` (see
    :func:`module_depth`; containers excluded) in a profiler scope
    ``'{prefix}:{name}'``.  Hooks are removed on exit."""
    handles = []
    for name, mod in model.named_modules():
        if not name or module_depth(name) > max_depth or isinstance(
                mod, (nn.ModuleList, nn.ModuleDict)):
            continue
        label = f'{prefix}:{name}'

        def pre(m, args, _label=label):
            rf = torch.profiler.record_function(_label)
            rf.__enter__()
            m.__dict__.setdefault('_profiling_scopes', []).append(rf)

        def post(m, args, out):
            stack = m.__dict__.get('_profiling_scopes')
            if stack:
                stack.pop().__exit__(None, None, None)
            return out

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post, always_call=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for mod in model.modules():
            mod.__dict__.pop('_profiling_scopes', None)


@contextlib.contextmanager
def method_scopes(root, methods: Iterable[Tuple[str, str]] = LOSS_METHODS):
    """Wrap bound methods (``'attr.path.method'`` from ``root``) in profiler
    scopes ``'{scope}'`` for the duration of the context (instance attribute,
    removed after).  Yields the list of paths that were not found."""
    patched, missing = [], []
    for path, scope in methods:
        *owners, meth = path.split('.')
        obj = root
        try:
            for a in owners:
                obj = getattr(obj, a)
            fn = getattr(obj, meth)
        except AttributeError:
            missing.append(path)
            continue
        if not callable(fn):
            missing.append(path)
            continue

        def wrapped(*args, _fn=fn, _scope=scope, **kwargs):
            with torch.profiler.record_function(_scope):
                return _fn(*args, **kwargs)

        functools.update_wrapper(wrapped, fn)
        had = meth in getattr(obj, '__dict__', {})
        old = obj.__dict__.get(meth) if had else None
        object.__setattr__(obj, meth, wrapped)
        patched.append((obj, meth, had, old))
    try:
        yield missing
    finally:
        for obj, meth, had, old in reversed(patched):
            if had:
                object.__setattr__(obj, meth, old)
            else:
                delattr(obj, meth)


# ---------------------------------------------------------------- analysis
_BWD = 'autograd::engine::evaluate_function: '

_STEP_SCOPES = ('step.forward_and_loss', 'step.backward_and_update',
                'backward', 'optimizer')
_METHOD_SCOPES = frozenset(scope for _, scope in LOSS_METHODS)


def _is_scope(name: str) -> bool:
    """Whether a profiler event is one of the scopes this module opens."""
    return (name.startswith('fwd:') or name in _METHOD_SCOPES
            or name in _STEP_SCOPES)


def _scope_chain(evt) -> List[str]:
    chain, p = [], evt.cpu_parent
    while p is not None:
        if _is_scope(p.name):
            chain.append(p.name)
        p = p.cpu_parent
    return chain


def analyse(events) -> Dict:
    """Aggregate the events of a profile (``prof.events()``) per scope.

    Returns:
        dict: ``scopes`` {name: dict(total_ms, aten_self_ms, calls)} of the
        forward / loss scopes (inclusive wall time), ``backward``
        {forward scope: ms} of the autograd nodes each scope created
        (attributed to the innermost scope; rolled up to parents in
        ``backward_rollup``), ``ops_forward`` / ``ops_backward`` {op: self
        ms} and ``totals``.
    """
    scopes = defaultdict(lambda: dict(total_ms=0.0, aten_self_ms=0.0, calls=0))
    seq_scope = {}
    ops_fwd = defaultdict(float)
    ops_bwd = defaultdict(float)
    bwd_by_scope = defaultdict(float)
    totals = defaultdict(float)
    bwd_nodes = []
    for e in events:
        ms = e.cpu_time_total / 1e3
        name = e.name
        if _is_scope(name):
            s = scopes[name]
            s['total_ms'] += ms
            s['calls'] += 1
            if name in ('step.forward_and_loss', 'backward', 'optimizer'):
                totals[name] += ms
            continue
        chain = _scope_chain(e)
        in_bwd = 'backward' in chain or 'optimizer' in chain
        if name.startswith(_BWD):
            bwd_nodes.append(e)
        # self time: a composite op's children are not counted twice
        self_ms = e.self_cpu_time_total / 1e3
        (ops_bwd if in_bwd else ops_fwd)[name] += self_ms
        for c in set(chain):
            scopes[c]['aten_self_ms'] += self_ms
        if not in_bwd and getattr(e, 'sequence_nr', -1) >= 0 and chain:
            seq_scope.setdefault(e.sequence_nr, chain[0])
    for e in bwd_nodes:
        scope = seq_scope.get(getattr(e, 'sequence_nr', -1), '(unattributed)')
        bwd_by_scope[scope] += e.cpu_time_total / 1e3
    rollup = defaultdict(float)
    for scope, ms in bwd_by_scope.items():
        rollup[scope] += ms
        if scope.startswith('fwd:'):
            parts = scope[4:].split('.')
            for i in range(1, len(parts)):
                rollup['fwd:' + '.'.join(parts[:i])] += ms
    return dict(
        scopes={
            k: dict(v)
            for k, v in scopes.items()
        },
        backward=dict(bwd_by_scope),
        backward_rollup=dict(rollup),
        ops_forward=dict(ops_fwd),
        ops_backward=dict(ops_bwd),
        totals=dict(totals))


def profile_train_step(model: nn.Module,
                       optim,
                       data: dict,
                       warmup: int = 1,
                       iters: int = 1,
                       max_depth: int = 3) -> Dict:
    """Profile ``iters`` training iterations after ``warmup`` plain ones.

    Returns:
        dict: :func:`analyse` of the profiled iterations (milliseconds
        summed over them) plus ``iters``, ``wall_s`` (per-iteration wall
        times without the profiler, measured on the warm-up iterations'
        successors), ``loss`` and ``missing_methods``.
    """
    from torch.profiler import ProfilerActivity, profile
    for _ in range(warmup):
        train_step(model, optim, data)
    with module_scopes(model, max_depth), method_scopes(model) as missing:
        with profile(
                activities=[ProfilerActivity.CPU],
                record_shapes=False) as prof:
            walls = []
            for _ in range(iters):
                t = time.perf_counter()
                _, _, loss = train_step(model, optim, data)
                walls.append(time.perf_counter() - t)
        events = prof.events()
    res = analyse(events)
    res.update(
        iters=iters, profiled_wall_s=walls, loss=loss, missing_methods=missing)
    return res


def time_train_steps(model: nn.Module, optim, data: dict,
                     iters: int) -> List[float]:
    """Wall seconds of ``iters`` training iterations (no profiler)."""
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        train_step(model, optim, data)
        out.append(time.perf_counter() - t)
    return out


def _row(name: str, ms: float, ref: float, extra: str = '') -> str:
    pct = 100.0 * ms / ref if ref > 0 else 0.0
    return f'| {name} | {ms:.1f} | {pct:.1f}% |{extra}'


def format_report(res: Dict,
                  title: str = '',
                  top_ops: int = 12,
                  min_pct: float = 0.5) -> str:
    """Markdown tables of :func:`profile_train_step`'s result, per iteration:
    step phases, forward by module (inclusive) with the backward of the nodes
    each module created, loss phases with their Python overhead, and the top
    ATen ops of forward and backward by self time."""
    n = max(1, res['iters'])
    sc = res['scopes']
    fwd_total = sc.get('step.forward_and_loss', {}).get('total_ms', 0.0) / n
    bwd_total = sc.get('backward', {}).get('total_ms', 0.0) / n
    opt_total = sc.get('optimizer', {}).get('total_ms', 0.0) / n
    step = fwd_total + bwd_total + opt_total
    lines = [
        f'### {title}' if title else '', '',
        '| phase | ms/iter | share of step |', '|---|---:|---:|'
    ]
    for name, ms in (('data preprocessor',
                      sc.get('data_preprocessor', {}).get('total_ms', 0) / n),
                     ('forward: backbone + neck (extract_feat)',
                      sc.get('extract_feat', {}).get('total_ms', 0) / n),
                     ('forward: query selection + denoising + decoder',
                      sc.get('forward_transformer', {}).get('total_ms', 0) /
                      n), ('loss (matching + terms)',
                           sc.get('loss', {}).get('total_ms', 0) / n),
                     ('forward + loss', fwd_total), ('backward', bwd_total),
                     ('optimizer (clip + AdamW + zero_grad)',
                      opt_total), ('step (profiled)', step)):
        lines.append(_row(name, ms, step))
    lines += [
        '', '| module (forward scope) | forward ms | backward ms |'
        ' fwd+bwd share |', '|---|---:|---:|---:|'
    ]
    mods = [(k, v) for k, v in sc.items() if k.startswith('fwd:')]
    mods.sort(key=lambda kv: kv[0])
    bw = res['backward_rollup']
    for k, v in mods:
        f = v['total_ms'] / n
        b = bw.get(k, 0.0) / n
        if 100.0 * (f + b) / max(step, 1e-9) < min_pct:
            continue
        depth = module_depth(k[4:]) - 1
        lines.append(f'| {"&nbsp;&nbsp;" * depth}{k[4:]} | {f:.1f} | {b:.1f} |'
                     f' {100.0 * (f + b) / max(step, 1e-9):.1f}% |')
    other = {
        k: v
        for k, v in res['backward'].items() if not k.startswith('fwd:')
    }
    for k, v in sorted(other.items(), key=lambda kv: -kv[1]):
        if v / n >= 0.1:
            lines.append(
                f'| (backward of nodes made in `{k}`) | | '
                f'{v / n:.1f} | {100.0 * v / n / max(step, 1e-9):.1f}% |')
    lines += [
        '', '| loss phase | ms/iter | ATen self ms | Python/dispatch '
        'overhead | calls/iter |', '|---|---:|---:|---:|---:|'
    ]
    for k in ('loss', 'loss.go_lsd_loss', 'loss.matching_and_union',
              'loss.matching', 'loss.go_lsd_union',
              'loss.denoising_targets') + tuple(
                  sorted(
                      k for k in sc if k.startswith('fwd:bbox_head.loss_')
                      or k.startswith('fwd:dn_query_generator'))):
        if k not in sc:
            continue
        v = sc[k]
        tot, aten = v['total_ms'] / n, v['aten_self_ms'] / n
        lines.append(
            f'| {k.replace("fwd:", "")} | {tot:.1f} | {aten:.1f} | '
            f'{tot - aten:.1f} ({100 * (tot - aten) / max(tot, 1e-9):.0f}%)'
            f' | {v["calls"] / n:.0f} |')
    for label, key in (('forward + loss', 'ops_forward'),
                       ('backward + optimizer', 'ops_backward')):
        ops = sorted(res[key].items(), key=lambda kv: -kv[1])[:top_ops]
        lines += [
            '', f'| top ATen ops, {label} (self time) | ms/iter | '
            'share of step |', '|---|---:|---:|'
        ]
        for name, ms in ops:
            lines.append(_row(f'`{name}`', ms / n, step))
    if res.get('missing_methods'):
        lines += [
            '', 'not found (no scope): ' + ', '.join(res['missing_methods'])
        ]
    return '\n'.join(lines)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float('nan')
