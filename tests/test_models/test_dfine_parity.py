"""End-to-end numerical parity of the D-FINE detector with the official model.

For every COCO variant (N, S, M, L, X) the official random weights are
regenerated (parity README section 1), converted with the checkpoint converter
(``dfine_mmdet.checkpoint.official.convert_state_dict``), loaded strictly into
the model built from ``configs/dfine/dfine_hgnetv2_{v}_coco.py`` and run on
the fixture batch (2 images, 640x640).  Compared (README section 3
tolerances): the query selection (top-300 token set), the reference boxes,
every decoder layer's boxes, the final logits / boxes (= ``mode='tensor'``
last layer) and the post-processed detections (original sizes 640x480 and
800x600).

One forward per variant, shared by its tests (the outputs are cached, the
models are not, except N); the public ``mode='tensor'`` / ``mode='predict'``
entry points are checked end to end on N.
"""
import numpy as np
import pytest
import torch
from dfine_model_utils import converted_model, data_samples_for, parity_inputs

VARIANTS = ['n', 's', 'm', 'l', 'x']
LOGITS_ATOL = 1e-4
BOXES_ATOL = 1e-5
SCORES_ATOL = 1e-5
PIXEL_ATOL = 5e-3

_CACHE = {}


def run_variant(parity_dir, variant):
    """Forward of one variant through the detector's stages (cached)."""
    if variant in _CACHE:
        return _CACHE[variant]
    torch.manual_seed(0)
    fx, model = converted_model(parity_dir, variant)
    inputs = parity_inputs(parity_dir)
    samples = data_samples_for(fx['post/orig_sizes_wh'])
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        head_inputs = model.forward_transformer(feats, samples)
        # exactly what mode='tensor' returns (DetectionTransformer._forward)
        logits, boxes, _ = model.bbox_head(**head_inputs)
        results = model.bbox_head.predict_by_feat(
            logits, boxes, [s.metainfo for s in samples], rescale=True)
        project = model.decoder.project()
    out = dict(
        fx=fx,
        model=model if variant == 'n' else None,
        head_inputs=head_inputs,
        logits=logits,
        boxes=boxes,
        project=project,
        results=results)
    _CACHE[variant] = out
    return out


def query_order(out):
    """Per image, our query rows sorted to the fixture's query order (by the
    token index each query was selected from)."""
    ours = out['head_inputs']['enc_topk_index'].numpy()
    ref = out['fx']['full/enc_topk_index']
    orders = []
    for b in range(ref.shape[0]):
        pos = {int(t): i for i, t in enumerate(ours[b])}
        orders.append(np.array([pos[int(t)] for t in ref[b]]))
    return orders


def reorder(x, orders, batch_dim=0):
    """Rows of ``x`` ([..., B, Q, ...]) in the fixture's query order."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    parts = [
        np.take(np.take(x, b, axis=batch_dim), o, axis=batch_dim)
        for b, o in enumerate(orders)
    ]
    return np.stack(parts, axis=batch_dim)


@pytest.mark.parametrize('variant', VARIANTS)
def test_query_selection(parity_dir, variant):
    out = run_variant(parity_dir, variant)
    fx = out['fx']
    ours = out['head_inputs']['enc_topk_index'].numpy()
    ref = fx['full/enc_topk_index']
    for b in range(ref.shape[0]):
        assert set(ours[b].tolist()) == set(ref[b].tolist()), \
            f'{variant}: top-300 token set differs for image {b}'
    # our rows follow the same top-k order up to near-ties
    orders = query_order(out)
    assert sum((o != np.arange(len(o))).sum() for o in orders) <= 4


@pytest.mark.parametrize('variant', VARIANTS)
def test_decoder_boxes(parity_dir, variant):
    out = run_variant(parity_dir, variant)
    fx, orders = out['fx'], query_order(out)
    hi = out['head_inputs']
    ref_init = reorder(hi['ref_points'], orders)
    np.testing.assert_allclose(
        ref_init, fx['full/ref_init'], atol=BOXES_ATOL, rtol=0)
    dec_boxes = reorder(hi['pred_boxes'], orders, batch_dim=1)
    assert dec_boxes.shape == fx['full/dec_boxes'].shape
    np.testing.assert_allclose(
        dec_boxes, fx['full/dec_boxes'], atol=BOXES_ATOL, rtol=0)
    # W(n) from the converted buffers is bit-exact
    np.testing.assert_array_equal(out['project'].numpy(), fx['full/project_W'])


@pytest.mark.parametrize('variant', VARIANTS)
def test_final_outputs(parity_dir, variant):
    out = run_variant(parity_dir, variant)
    fx, orders = out['fx'], query_order(out)
    num_layers = fx['full/dec_boxes'].shape[0]
    assert out['logits'].shape == (num_layers, 2, 300, 80)
    assert out['boxes'].shape == (num_layers, 2, 300, 4)
    logits = reorder(out['logits'][-1], orders)
    boxes = reorder(out['boxes'][-1], orders)
    diff_l = np.abs(logits - fx['out/pred_logits']).max()
    diff_b = np.abs(boxes - fx['out/pred_boxes']).max()
    print(f'{variant}: max|dlogits|={diff_l:.3g} max|dboxes|={diff_b:.3g}')
    assert diff_l <= LOGITS_ATOL
    assert diff_b <= BOXES_ATOL


@pytest.mark.parametrize('variant', VARIANTS)
def test_postprocess(parity_dir, variant):
    out = run_variant(parity_dir, variant)
    fx = out['fx']
    topk = out['head_inputs']['enc_topk_index'].numpy()
    for b, res in enumerate(out['results']):
        assert len(res) == 300
        scores = res.scores.numpy()
        assert np.all(np.diff(scores) <= 0)
        np.testing.assert_allclose(
            scores, fx['post/scores'][b], atol=SCORES_ATOL, rtol=0)
        tokens = topk[b][res.query_index.numpy()]
        ours = {
            (int(t), int(lab)): box
            for t, lab, box in zip(tokens, res.labels.numpy(),
                                   res.bboxes.numpy())
        }
        ref = {
            (int(t), int(lab)): box
            for t, lab, box in zip(fx['post/token_index'][b], fx['post/labels']
                                   [b], fx['post/boxes'][b])
        }
        assert set(ours) == set(ref)
        diff = max(np.abs(ours[k] - ref[k]).max() for k in ref)
        print(f'{variant} image {b}: max|dscore|='
              f'{np.abs(scores - fx["post/scores"][b]).max():.3g} '
              f'max|dbox|={diff:.3g} px')
        assert diff <= PIXEL_ATOL, f'{variant} image {b}: {diff} px'


def test_public_modes_match_stages(parity_dir):
    """``model(..., mode='tensor')`` / ``mode='predict'`` of N give the same
    numbers as the staged forward and the official post-processing."""
    out = run_variant(parity_dir, 'n')
    model, fx = out['model'], out['fx']
    inputs = parity_inputs(parity_dir)
    samples = data_samples_for(fx['post/orig_sizes_wh'])
    with torch.no_grad():
        tensor_out = model(inputs, samples, mode='tensor')
        preds = model(
            inputs, data_samples_for(fx['post/orig_sizes_wh']), mode='predict')
    torch.testing.assert_close(tensor_out[0], out['logits'], atol=1e-6, rtol=0)
    torch.testing.assert_close(tensor_out[1], out['boxes'], atol=1e-7, rtol=0)
    for b, sample in enumerate(preds):
        inst = sample.pred_instances
        assert len(inst) == 300
        assert inst.labels.min() >= 0 and inst.labels.max() < 80
        np.testing.assert_allclose(
            inst.scores.numpy(),
            fx['post/scores'][b],
            atol=SCORES_ATOL,
            rtol=0)
        np.testing.assert_allclose(
            inst.bboxes.numpy(),
            out['results'][b].bboxes.numpy(),
            atol=1e-3,
            rtol=0)


def test_anchors_match_official_buffers(parity_dir):
    """Generated anchors at 640 equal the official buffers.

    The validity mask and the positions of the ``inf`` (invalid) anchors must
    be identical; the finite logits may differ by at most 2 ulp, because
    ``torch.log`` dispatches to different vectorised kernels per CPU (AVX2,
    AVX-512): on some x86-64 machines 320 of 8000 values differ by 1 ulp
    from the machine that made the fixture.
    """
    from dfine_mmdet.models.detectors.dfine import generate_anchors
    for variant, shapes in (('n', [(40, 40), (20, 20)]), ('s', [(80, 80),
                                                                (40, 40),
                                                                (20, 20)])):
        fx = np.load(f'{parity_dir}/dfine_{variant}_coco.npz')
        anchors, valid = generate_anchors(shapes)
        ours, ref = anchors.numpy(), fx['buffer/decoder.anchors']
        assert ours.shape == ref.shape and ours.dtype == ref.dtype
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.isfinite(ours), finite)
        np.testing.assert_array_equal(ours[~finite], ref[~finite])
        np.testing.assert_array_max_ulp(ours[finite], ref[finite], maxulp=2)
        np.testing.assert_array_equal(valid.numpy(),
                                      fx['buffer/decoder.valid_mask'])
