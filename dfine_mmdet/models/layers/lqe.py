"""Location Quality Estimator (LQE) of D-FINE.

D-FINE (arXiv 2410.13842, §3.3 and appendix) lets the sharpness of the FDR
edge distributions inform the classification score: a confident, peaked
distribution signals a well-localised box.  For every query the four edge
distributions ``softmax(corners)`` (each over ``reg_max + 1`` bins) are
summarised by their top-``k`` probabilities and the mean of those, giving
``4 * (k + 1)`` statistics.  A small MLP maps them to one quality logit that is
**added to every class logit** of that query (also at inference)::

    P = softmax(corners.reshape(B, Q, 4, reg_max + 1))       # [B, Q, 4, 33]
    s = [topk(P, k), mean(topk(P, k))]                         # [B, Q, 4, k+1]
    logits = logits + MLP(s.flatten(-2))                       # [B, Q, C]

The MLP is :class:`~dfine_mmdet.models.utils.MLP` (mmdet's ReLU MLP by
default, as the official one; DEIM runs it with the decoder ``activation``);
its last layer is zero-initialised so the LQE starts as a no-op.  ``reg_max``
is the FDR coder's (the head passes ``bbox_coder.reg_max``; no default
here).  Parameter names (``reg_conf.layers.{0,1}``) match the official
checkpoints.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import MLP


class LQE(nn.Module):
    """Location Quality Estimator.

    Args:
        reg_max (int): Number of bin intervals; ``reg_max + 1`` bins (the
            FDR coder's).
        k (int): Number of top bin probabilities per edge. Default 4.
        hidden_dim (int): Hidden width of the MLP. Default 64.
        num_layers (int): Number of MLP layers. Default 2.
        act (str): Activation of the MLP. Default 'relu'.
    """

    def __init__(self,
                 reg_max: int,
                 k: int = 4,
                 hidden_dim: int = 64,
                 num_layers: int = 2,
                 act: str = 'relu') -> None:
        super().__init__()
        self.k = k
        self.reg_max = reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden_dim, 1, num_layers, act=act)
        self.init_weights()

    def init_weights(self) -> None:
        """Zero last layer: the quality term starts at 0."""
        nn.init.constant_(self.reg_conf.layers[-1].weight, 0.)
        nn.init.constant_(self.reg_conf.layers[-1].bias, 0.)

    def quality(self, pred_corners: Tensor) -> Tensor:
        """Quality logit ``[B, Q, 1]`` from corner logits
        ``[B, Q, 4 * (reg_max + 1)]`` (edge-major l, t, r, b)."""
        bs, num_query, _ = pred_corners.shape
        prob = F.softmax(
            pred_corners.reshape(bs, num_query, 4, self.reg_max + 1), dim=-1)
        prob_topk, _ = prob.topk(self.k, dim=-1)
        stat = torch.cat(
            [prob_topk, prob_topk.mean(dim=-1, keepdim=True)], dim=-1)
        return self.reg_conf(stat.reshape(bs, num_query, -1))

    def forward(self, scores: Tensor, pred_corners: Tensor) -> Tensor:
        """Add the quality logit to the class logits.

        Args:
            scores (Tensor): Class logits ``[B, Q, C]``.
            pred_corners (Tensor): Corner logits ``[B, Q, 4 * (reg_max + 1)]``.

        Returns:
            Tensor: ``[B, Q, C]`` = ``scores + quality`` (broadcast over C).
        """
        return scores + self.quality(pred_corners)
