"""MLP with a configurable activation (DEIM's ``activation`` / ``mlp_act``).

mmdet's :class:`~mmdet.models.layers.transformer.MLP` hard-codes ReLU.  DEIM
(CVPR 2025, https://github.com/ShihuaHuang95/DEIM) trains D-FINE with SiLU in
the decoder: ``DFINETransformer(activation='silu', mlp_act='silu')``, where
``activation`` is the decoder-layer FFN and LQE activation and ``mlp_act``
the one of the query-position head and the box / corner MLPs.  This module is
mmdet's MLP (same ``layers.i`` parameter names, so checkpoints convert the
same way) with the activation chosen by name; ``'relu'`` is bit-identical to
mmdet's MLP.
"""
from mmdet.models.layers.transformer import MLP
from torch import Tensor, nn

#: activation names accepted by the D-FINE decoder / head fields
ACTIVATIONS = {
    'relu': nn.ReLU,
    'silu': nn.SiLU,
    'gelu': nn.GELU,
}


def build_act(name: str, field: str = 'activation') -> nn.Module:
    """Activation module by name (``'relu'``, ``'silu'``, ``'gelu'``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f'{field}={name!r} is not one of '
                         f'{sorted(ACTIVATIONS)}')
    return ACTIVATIONS[name]()


class ActMLP(MLP):
    """mmdet's MLP with activation ``act`` between the linear layers.

    Args:
        input_dim, hidden_dim, output_dim, num_layers: As mmdet's ``MLP``.
        act (str): ``'relu'`` (default), ``'silu'`` or ``'gelu'``.
    """

    def __init__(self,
                 input_dim: int,
                 hidden_dim: int,
                 output_dim: int,
                 num_layers: int,
                 act: str = 'relu') -> None:
        super().__init__(input_dim, hidden_dim, output_dim, num_layers)
        self.act = build_act(act, 'act')

    def forward(self, x: Tensor) -> Tensor:
        """``[..., input_dim]`` -> ``[..., output_dim]``."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = self.act(x)
        return x
