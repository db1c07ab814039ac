"""GELAN blocks of the hybrid encoder: structure, keys, deploy fusion."""
import pytest
import torch
import torch.nn as nn

from dfine_mmdet.models.layers.gelan_blocks import (ConvNormLayer, CSPLayer,
                                                    RepNCSPELAN4, SCDown,
                                                    VGGBlock, build_activation)


def randomise_bn(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return module.eval()


def test_conv_norm_layer_and_deploy():
    torch.manual_seed(0)
    layer = randomise_bn(ConvNormLayer(4, 6, 3, 2, groups=2, act='silu'))
    assert set(layer.state_dict()) == {
        'conv.weight', 'norm.weight', 'norm.bias', 'norm.running_mean',
        'norm.running_var', 'norm.num_batches_tracked'
    }
    assert layer.conv.padding == (1, 1) and layer.conv.bias is None
    x = torch.randn(2, 4, 9, 7)
    with torch.no_grad():
        ref = layer(x)
        assert ref.shape == (2, 6, 5, 4)
        torch.testing.assert_close(
            ref, nn.functional.silu(layer.norm(layer.conv(x))), rtol=0, atol=0)
        layer.switch_to_deploy()
        assert not hasattr(layer, 'conv') and not hasattr(layer, 'norm')
        torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


def test_vgg_block_and_deploy():
    torch.manual_seed(0)
    block = randomise_bn(VGGBlock(5, 5))
    assert isinstance(block.act, nn.SiLU)
    assert block.conv1.conv.weight.shape == (5, 5, 3, 3)
    assert block.conv2.conv.weight.shape == (5, 5, 1, 1)
    x = torch.randn(2, 5, 6, 6)
    with torch.no_grad():
        ref = block(x)
        expected = nn.functional.silu(
            block.conv1.norm(block.conv1.conv(x)) +
            block.conv2.norm(block.conv2.conv(x)))
        torch.testing.assert_close(ref, expected, rtol=0, atol=0)
        block.switch_to_deploy()
        assert not hasattr(block, 'conv1')
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)


def test_csp_layer():
    torch.manual_seed(0)
    layer = randomise_bn(CSPLayer(6, 4, num_blocks=2))
    assert isinstance(layer.conv3, nn.Identity)
    assert len(layer.bottlenecks) == 2
    x = torch.randn(1, 6, 5, 5)
    with torch.no_grad():
        expected = layer.bottlenecks[1](layer.bottlenecks[0](
            layer.conv1(x))) + layer.conv2(x)
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    layer = CSPLayer(6, 4, num_blocks=1, expansion=0.5)
    assert layer.conv1.conv.weight.shape == (2, 6, 1, 1)
    assert layer.conv3.conv.weight.shape == (4, 2, 1, 1)


def test_rep_ncsp_elan4_structure():
    """hd=128, c4=21, n=2: the N-variant fusion block (spec section 3)."""
    torch.manual_seed(0)
    block = randomise_bn(RepNCSPELAN4(256, 128, 256, 21, 2))
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes['cv1.conv.weight'] == (256, 256, 1, 1)
    assert shapes['cv2.0.conv1.conv.weight'] == (21, 128, 1, 1)
    assert shapes['cv2.0.bottlenecks.1.conv1.conv.weight'] == (21, 21, 3, 3)
    assert shapes['cv2.1.conv.weight'] == (21, 21, 3, 3)
    assert shapes['cv3.0.conv1.conv.weight'] == (21, 21, 1, 1)
    assert shapes['cv4.conv.weight'] == (128, 298, 1, 1)
    x = torch.randn(1, 256, 4, 6)
    with torch.no_grad():
        out = block(x)
        y0, y1 = block.cv1(x)[:, :128], block.cv1(x)[:, 128:]
        y2 = block.cv2(y1)
        y3 = block.cv3(y2)
        torch.testing.assert_close(
            out, block.cv4(torch.cat([y0, y1, y2, y3], 1)), rtol=0, atol=0)
    assert out.shape == (1, 128, 4, 6)


@pytest.mark.parametrize('size,expected', [(8, 4), (63, 32), (15, 8)])
def test_scdown(size, expected):
    block = SCDown(6, 6, 3, 2).eval()
    assert block.cv1.conv.kernel_size == (1, 1)
    assert block.cv2.conv.groups == 6 and block.cv2.conv.stride == (2, 2)
    assert isinstance(block.cv1.act, nn.Identity)
    assert isinstance(block.cv2.act, nn.Identity)
    out = block(torch.randn(1, 6, size, size + 1))
    assert out.shape == (1, 6, expected, (size + 2) // 2)


def test_build_activation():
    assert isinstance(build_activation('SiLU'), nn.SiLU)
    assert isinstance(build_activation('gelu'), nn.GELU)
    assert isinstance(build_activation(None), nn.Identity)
    relu = nn.ReLU()
    assert build_activation(relu) is relu
    with pytest.raises(ValueError, match='unknown activation'):
        build_activation('swishy')
