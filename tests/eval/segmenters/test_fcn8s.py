"""FCN-8s: the VGG16 FCN-8s parameter count, its skip topology and strides, bilinear upsampling at start."""
import torch

from eval.segmenters import fcn8s
from eval.segmenters.fcn8s import FCN8s, FCN8sConfig


def test_full_fcn8s_has_the_vgg16_fcn8s_parameter_count():
    # VGG16 convolutions + fc6 (7x7) + fc7 + three score layers + three bias-free upsamplings, 19 classes.
    vgg_convs = 14_714_688
    fc6 = 512 * 7 * 7 * 4096 + 4096
    fc7 = 4096 * 4096 + 4096
    scores = (4096 + 1) * 19 + (512 + 1) * 19 + (256 + 1) * 19
    upsampling = 19 * 19 * (4 * 4 + 4 * 4 + 16 * 16)
    net = FCN8s(19, FCN8sConfig())
    assert sum(p.numel() for p in net.parameters()) == vgg_convs + fc6 + fc7 + scores + upsampling


def test_fcn8s_skip_topology_and_strides():
    net = FCN8s(19, FCN8sConfig(width_mult=1 / 16)).eval()
    x = torch.randn(1, 3, 64, 96)
    pool3 = net.to_pool3(x)
    pool4 = net.to_pool4(pool3)
    pool5 = net.to_pool5(pool4)
    assert pool3.shape[-2:] == (8, 12) and pool4.shape[-2:] == (4, 6) and pool5.shape[-2:] == (2, 3)
    assert net.upscore2.stride == (2, 2) and net.upscore_pool4.stride == (2, 2) and net.upscore8.stride == (8, 8)
    assert net(x).shape == (1, 19, 64, 96)


def test_upsampling_starts_as_bilinear_interpolation():
    up = fcn8s._upsample(2, 8)
    x = torch.rand(1, 2, 5, 5)
    y = up(x)
    assert y.shape == (1, 2, 40, 40)
    constant = up(torch.ones(1, 2, 5, 5))
    assert torch.allclose(constant[..., 8:-8, 8:-8], torch.ones(1, 2, 24, 24))  # interior keeps a constant
    # each output channel depends only on its own input channel
    x2 = x.clone()
    x2[:, 1] = 0
    assert torch.equal(up(x2)[:, 0], y[:, 0])
