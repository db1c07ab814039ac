"""GO-LSD union assignment (D-FINE, arXiv 2410.13842, GO-LSD section).

Global Optimal Localization Self-Distillation supervises the boxes and the
edge distributions of *every* decoder layer with one shared set of matched
queries: the union of the one-to-one Hungarian matches of all outputs (last
layer, auxiliary layers, the layer-0 ``pre`` head, the encoder proposals).
A query that several outputs matched to different ground truths keeps the
pair that was matched most often.

Exactly as the official ``DFINECriterion._get_go_indices``, per image:

1. concatenate the ``(query, gt)`` pairs of all outputs in the order given
   (official order: last, aux_0 .. aux_{L-2}, pre, enc_0 ..);
2. count identical pairs (``torch.unique(dim=0, return_counts=True)``, which
   also sorts the pairs lexicographically);
3. sort the unique pairs by count, descending (``torch.argsort``, the same
   call as upstream, so equal counts keep the same order on the same device);
4. walk that list and keep the first pair of every query; the result is in
   that order (a query gets one GT, a GT may get several queries).

Step 4 is vectorised here (first occurrence per query via ``scatter_reduce``)
instead of a Python loop with ``.item()`` calls; the output order is the
same.  There is nothing equivalent in mmdet.
"""
from typing import List, Sequence

import torch
from mmdet.registry import TASK_UTILS
from torch import Tensor

from ...utils import MatchIndices


@TASK_UTILS.register_module()
class GOLSDAssigner:
    """Union of per-output one-to-one matches (GO-LSD matching set)."""

    @staticmethod
    def _union_one_image(pairs: Tensor) -> MatchIndices:
        """Union of the ``(query, gt)`` pairs (P, 2) of one image."""
        if pairs.numel() == 0:
            empty = pairs.new_zeros(0, dtype=torch.int64)
            return empty, empty.clone()
        unique, counts = torch.unique(pairs, return_counts=True, dim=0)
        unique = unique[torch.argsort(counts, descending=True)]
        queries = unique[:, 0]
        # position of the first occurrence of each query in the sorted list
        position = torch.arange(len(queries), device=queries.device)
        first = torch.full((int(queries.max()) + 1, ),
                           len(queries),
                           dtype=position.dtype,
                           device=queries.device)
        first = first.scatter_reduce(0, queries, position, reduce='amin')
        keep = unique[first[queries] == position]
        return keep[:, 0].long(), keep[:, 1].long()

    def assign(
            self, layer_indices: Sequence[Sequence[MatchIndices]]
    ) -> List[MatchIndices]:
        """Union of the matches of several outputs.

        Args:
            layer_indices (list[list[tuple[Tensor, Tensor]]]): For each output
                (in the official order: last, aux_0.., pre, enc_0..) the
                per-image ``(query_idx, gt_idx)`` int64 matches.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image the union
            ``(query_idx, gt_idx)``, each query at most once, ordered by
            descending match count (ties: as ``torch.argsort`` leaves them).
        """
        if len(layer_indices) == 0:
            raise ValueError('GOLSDAssigner.assign: no matches given')
        num_images = len(layer_indices[0])
        for k, indices in enumerate(layer_indices):
            if len(indices) != num_images:
                raise ValueError(
                    f'GOLSDAssigner.assign: output {k} has matches for '
                    f'{len(indices)} images, output 0 for {num_images}')
        results = []
        for img in range(num_images):
            pairs = torch.cat([
                torch.stack([indices[img][0], indices[img][1]], dim=1)
                for indices in layer_indices
            ])
            results.append(self._union_one_image(pairs))
        return results
