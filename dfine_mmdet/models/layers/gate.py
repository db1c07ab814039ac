"""Gated fusion of the D-FINE decoder layer.

After the deformable cross-attention, D-FINE does not use the usual
``LayerNorm(x + cross_attn(x))`` residual.  A learned element-wise gate mixes
the self-attention output ``x1`` and the cross-attention output ``x2``::

    g1, g2 = split(sigmoid(Linear([x1, x2])))      # each [..., D]
    out = LayerNorm(g1 * x1 + g2 * x2)

At initialisation the gate weight is 0 and its bias is ``logit(0.5) = 0``, so
both inputs enter with weight 0.5.  mmdet has no equivalent block, hence this
small module (parameter names ``gate`` / ``norm`` follow the official
``gateway`` sub-module so checkpoints map 1:1).
"""
import torch
from torch import Tensor, nn


class Gate(nn.Module):
    """Sigmoid-gated sum of two streams followed by LayerNorm.

    Args:
        embed_dims (int): Width ``D`` of both inputs. Default 256.
    """

    def __init__(self, embed_dims: int = 256) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * embed_dims, 2 * embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """Zero weight and zero bias (``logit(0.5)``): an even 0.5/0.5 mix."""
        nn.init.constant_(self.gate.weight, 0.)
        nn.init.constant_(self.gate.bias, 0.)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """
        Args:
            x1 (Tensor): ``[..., D]`` decoder stream (after self-attention).
            x2 (Tensor): ``[..., D]`` cross-attention output.

        Returns:
            Tensor: ``[..., D]``.
        """
        gates = torch.sigmoid(self.gate(torch.cat([x1, x2], dim=-1)))
        g1, g2 = gates.chunk(2, dim=-1)
        return self.norm(g1 * x1 + g2 * x2)
