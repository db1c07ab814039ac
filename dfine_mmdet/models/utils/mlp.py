"""MLP with a configurable activation (D-FINE / DEIM prediction heads).

mmdet's :class:`~mmdet.models.layers.transformer.MLP` always uses ReLU; DEIM
(ShihuaHuang95/DEIM, ``DFINETransformer(activation=..., mlp_act=...)``) runs
the D-FINE decoder's MLPs with SiLU.  Same parameter names as mmdet's
(``layers.{i}``), so checkpoints load into either; with ``act='relu'`` the
output is bit-identical to mmdet's.
"""
from typing import Union

import torch.nn.functional as F
from torch import Tensor, nn

#: Activation names accepted by :func:`activation_layer` (DEIM's names).
ACTIVATIONS = {
    'relu': nn.ReLU,
    'silu': nn.SiLU,
    'swish': nn.SiLU,
    'gelu': nn.GELU,
    'leaky_relu': nn.LeakyReLU,
    'hardsigmoid': nn.Hardsigmoid,
}


def activation_layer(act: Union[str, nn.Module],
                     field: str = 'act',
                     inplace: bool = False) -> nn.Module:
    """Activation module from a name of :data:`ACTIVATIONS` (an
    ``nn.Module`` is returned as is); ``field`` names the config field in
    the error for an unknown name."""
    if isinstance(act, nn.Module):
        return act
    cls = ACTIVATIONS.get(str(act).lower())
    if cls is None:
        raise ValueError(f'{field}={act!r} is not one of '
                         f'{sorted(ACTIVATIONS)}')
    if cls is nn.ReLU and inplace:
        return nn.ReLU(inplace=True)
    return cls()


class MLP(nn.Module):
    """``num_layers`` Linear layers with ``act`` between them.

    Args:
        input_dim (int): Input width.
        hidden_dim (int): Hidden width.
        output_dim (int): Output width.
        num_layers (int): Number of Linear layers.
        act (str): Activation name (:data:`ACTIVATIONS`). Default 'relu'.
    """

    def __init__(self,
                 input_dim: int,
                 hidden_dim: int,
                 output_dim: int,
                 num_layers: int,
                 act: str = 'relu') -> None:
        super().__init__()
        self.num_layers = num_layers
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip(dims, dims[1:] + [output_dim]))
        self.act = activation_layer(act)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., input_dim]`` -> ``[..., output_dim]``."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x) if isinstance(self.act, nn.ReLU) \
                    else self.act(x)
        return x
