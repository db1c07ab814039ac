"""DFINEModelEMA: the official decay ramp over params and buffers."""
import math

import pytest
import torch
from torch import nn

from dfine_mmdet.models.layers.dfine_ema import DFINEModelEMA, dfine_ema_decay


class Tiny(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.bn = nn.BatchNorm1d(
            1)  # running stats (float) + num_batches_tracked (int)
        self.register_buffer('int_buf', torch.tensor([7], dtype=torch.int64))


def official_update(ema_sd, model_sd, updates, decay=0.9999, warmups=1000):
    """The official ``ModelEMA.update`` loop body (src/optim/ema.py)."""
    d = decay * (1 - math.exp(-updates / warmups)) if warmups else decay
    for k, v in ema_sd.items():
        if v.dtype.is_floating_point:
            v *= d
            v += (1 - d) * model_sd[k].detach()


def test_decay_ramp_values():
    assert dfine_ema_decay(1) == pytest.approx(
        0.9999 * (1 - math.exp(-1e-3)), rel=1e-15)
    assert dfine_ema_decay(1000) == pytest.approx(
        0.9999 * (1 - math.exp(-1)), rel=1e-15)
    assert dfine_ema_decay(10**6) == pytest.approx(0.9999, rel=1e-12)
    assert dfine_ema_decay(5, warmups=0) == 0.9999


def test_hand_computed_sequence_params_and_buffers():
    # EMA copy starts at 0, the model is held at 1: ema_u = 1 - prod_{k<=u}
    # d(k)
    model = Tiny()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.dtype.is_floating_point:
                t.zero_()
    ema = DFINEModelEMA(model, decay=0.9999, warmups=4)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.dtype.is_floating_point:
                t.fill_(1.0)
        model.int_buf.fill_(99)
        model.bn.num_batches_tracked.fill_(5)
    prod = 1.0
    for u in range(1, 6):
        ema.update_parameters(model)
        prod *= 0.9999 * (1 - math.exp(-u / 4))
        expected = 1.0 - prod
        sd = ema.module.state_dict()
        for key in ('fc.weight', 'fc.bias', 'bn.weight', 'bn.running_mean',
                    'bn.running_var'):
            assert torch.allclose(
                sd[key], torch.full_like(sd[key], expected), atol=1e-6), key
    # integer entries are never averaged (official: floating-point only)
    assert ema.module.int_buf.item() == 7
    assert ema.module.bn.num_batches_tracked.item() == 0
    assert int(ema.steps) == 5
    # the first update already averages (d(1) ~ 0.0025 here), it does not copy
    assert expected < 1.0


def test_bitwise_equal_to_official_loop():
    torch.manual_seed(0)
    model = Tiny()
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    ema = DFINEModelEMA(model)  # decay 0.9999, warmups 1000
    for u in range(1, 8):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.bn.running_mean.add_(0.3)
        official_update(ref, model.state_dict(), u)
        ema.update_parameters(model)
    for k, v in ema.module.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_constant_decay_without_warmup():
    model = Tiny()
    with torch.no_grad():
        model.fc.weight.zero_()
    ema = DFINEModelEMA(model, decay=0.5, warmups=0)
    with torch.no_grad():
        model.fc.weight.fill_(1.0)
    ema.update_parameters(model)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.fc.weight, torch.full((1, 2), 0.75))


def test_interval_counts_updates():
    model = Tiny()
    with torch.no_grad():
        model.fc.weight.zero_()
    ema = DFINEModelEMA(model, decay=0.5, warmups=0, interval=2)
    with torch.no_grad():
        model.fc.weight.fill_(1.0)
    for _ in range(4):  # updates on calls 0 and 2 only
        ema.update_parameters(model)
    assert torch.allclose(ema.module.fc.weight, torch.full((1, 2), 0.75))


def test_bad_arguments():
    with pytest.raises(ValueError, match='decay'):
        DFINEModelEMA(Tiny(), decay=1.5)
    with pytest.raises(ValueError, match='warmups'):
        DFINEModelEMA(Tiny(), warmups=-1)
