"""Tests of gan.networks: architecture facts of pix2pix, init, size checks, loading generators."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from common.checkpoint import FORMAT_VERSION, CheckpointError, save_atomic
from gan.networks import (
    NORMS,
    build_discriminator,
    build_generator,
    check_image_size,
    init_weights,
    load_generator,
)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def convs(net: nn.Module, kind=nn.Conv2d) -> list[nn.Module]:
    return [m for m in net.modules() if type(m) is kind]


# --------------------------------------------------------------------------------------------------
# Architecture facts (published figures of the reference implementation)


def test_unet_256_parameter_count_with_batch_norm():
    assert count_parameters(build_generator("unet_256", norm="batch")) == 54_413_955


def test_basic_discriminator_parameter_count_with_batch_norm():
    assert count_parameters(build_discriminator("basic", norm="batch")) == 2_768_705


@pytest.mark.parametrize("name, downs, dropouts", [("unet_256", 8, 3), ("unet_128", 7, 2), ("unet_64", 6, 1)])
def test_unet_depth_channels_and_dropout(name, downs, dropouts):
    net = build_generator(name, ngf=8)
    down = convs(net, nn.Conv2d)
    assert len(down) == downs
    assert [c.out_channels for c in down] == [8, 16, 32] + [64] * (downs - 3)
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in down)
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in net.modules()) == dropouts
    no_dropout = build_generator(name, ngf=8, use_dropout=False)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())


def test_unet_norms_and_biases_follow_the_reference():
    net = build_generator("unet_256", ngf=8, norm="batch")
    # batch norm after every down conv except the first and the innermost, after every up conv but the last
    assert len(convs(net, nn.BatchNorm2d)) == 6 + 7
    # with batch norm only the outermost up conv (the last layer) has a bias
    with_bias = [c for c in convs(net, nn.Conv2d) + convs(net, nn.ConvTranspose2d) if c.bias is not None]
    assert with_bias == [net.model.model[3]] and net.model.model[3].out_channels == 3
    # instance norm has no learnable shift, so every conv gets a bias
    net = build_generator("unet_256", ngf=8, norm="instance")
    assert all(c.bias is not None for c in convs(net, nn.Conv2d) + convs(net, nn.ConvTranspose2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name, size", [("unet_32", 32), ("unet_64", 64), ("resnet_6blocks", 64),
                                        ("resnet_9blocks", 32)])
def test_generators_map_images_to_images_in_range(name, size, norm):
    net = build_generator(name, input_nc=3, output_nc=2, ngf=4, norm=norm)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.abs().max() <= 1.0


@pytest.mark.parametrize("norm", NORMS)
def test_discriminator_output_shapes(norm):
    x = torch.randn(1, 6, 64, 64)
    # 64 -> 32 -> 16 -> 8 (stride 2) -> 7 -> 6 (stride 1)
    assert build_discriminator("basic", ndf=4, norm=norm)(x).shape == (1, 1, 6, 6)
    # n_layers=2: 64 -> 32 -> 16 -> 15 -> 14
    assert build_discriminator("n_layers", ndf=4, n_layers=2, norm=norm)(x).shape == (1, 1, 14, 14)
    assert build_discriminator("pixel", ndf=4, norm=norm)(x).shape == (1, 1, 64, 64)


def test_basic_discriminator_gives_30x30_logits_for_256_images():
    net = build_discriminator("basic", ndf=4)
    assert net(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_basic_discriminator_sees_70x70_patches():
    net = build_discriminator("basic", ndf=4, norm="none")  # no batch norm: patches stay independent
    x = torch.randn(1, 6, 128, 128, requires_grad=True)
    net(x)[0, 0, 7, 7].backward()
    touched = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = touched.any(dim=1).nonzero()
    cols = touched.any(dim=0).nonzero()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_resnet_keys_follow_the_reference_layout():
    # Sequential: pad, conv, norm, relu | 2 x (conv, norm, relu) | 9 blocks at 10..18 | 2 x (deconv,
    # norm, relu) | pad, conv 26, tanh; a block: pad, conv 1, norm, relu, dropout, pad, conv 6, norm 7
    keys = build_generator("resnet_9blocks", ngf=4).state_dict()
    for key in ["model.1.weight", "model.4.weight", "model.10.conv_block.1.weight",
                "model.18.conv_block.6.weight", "model.18.conv_block.7.running_mean", "model.19.weight",
                "model.26.weight", "model.26.bias"]:
        assert key in keys
    assert "model.1.bias" not in keys and len(build_generator("resnet_6blocks", ngf=4).model) == 25


def test_syncbatch_has_the_batch_norm_state_dict():
    sync = build_generator("unet_32", ngf=4, norm="syncbatch")
    assert any(isinstance(m, nn.SyncBatchNorm) for m in sync.modules())
    batch = build_generator("unet_32", ngf=4, norm="batch")
    batch.load_state_dict(sync.state_dict())  # strict: same keys and shapes


def test_channels_last_gives_the_same_result():
    torch.manual_seed(0)
    for net, channels in [(build_generator("unet_64", ngf=4, use_dropout=False), 3),
                          (build_generator("resnet_6blocks", ngf=4, use_dropout=False), 3),
                          (build_discriminator("basic", ndf=4), 6)]:
        x = torch.randn(2, channels, 64, 64)
        expected = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# Bad names and sizes


@pytest.mark.parametrize("name", ["unet_100", "unet_16", "unet", "resnet_blocks", "vgg"])
def test_unknown_generator_names_are_rejected_with_the_choices(name):
    with pytest.raises(ValueError, match="unknown generator.*unet_256.*resnet_9blocks") as info:
        build_generator(name)
    assert "\n" not in str(info.value)


def test_unknown_discriminator_and_norm_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="basic, n_layers, pixel"):
        build_discriminator("patch")
    for build in (functools.partial(build_generator, "unet_32"), functools.partial(build_discriminator, "basic")):
        with pytest.raises(ValueError, match="batch, instance, syncbatch, none"):
            build(norm="group")


def test_check_image_size_accepts_what_the_networks_can_process():
    check_image_size("unet_256", 256)
    check_image_size("unet_256", 256, 512)
    check_image_size("resnet_9blocks", 64, 36)
    for name, height, width in [("unet_256", 286, 286), ("unet_256", 128, 128), ("unet_256", 256, 300),
                                ("unet_128", 64, 64), ("resnet_6blocks", 30, 32), ("resnet_6blocks", 4, 4)]:
        with pytest.raises(ValueError, match=f"{height}x{width}.*{name}") as info:
            check_image_size(name, height, width)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown generator"):
        check_image_size("unet_300", 256)


def test_check_image_size_matches_the_unet_itself():
    net = build_generator("unet_32", ngf=4, norm="none")
    net(torch.randn(1, 3, 64, 32))  # accepted size runs
    check_image_size("unet_32", 64, 32)
    with pytest.raises(ValueError):
        check_image_size("unet_32", 48, 48)
    with pytest.raises(RuntimeError):  # and the rejected size really does not
        net(torch.randn(1, 3, 48, 48))


# --------------------------------------------------------------------------------------------------
# Init


def _conv_and_norm_values(net):
    conv_w = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    conv_b = [m.bias for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None]
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    return conv_w, conv_b, bn


def test_init_follows_pix2pix():
    net = build_generator("unet_64", ngf=16)
    conv_w, conv_b, bn = _conv_and_norm_values(net)
    assert conv_w.numel() > 1_000_000
    assert abs(conv_w.mean().item()) < 1e-3
    assert conv_w.std().item() == pytest.approx(0.02, rel=0.01)
    assert all((b == 0).all() for b in conv_b)
    bn_w = torch.cat([m.weight for m in bn])
    assert bn_w.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn_w.std().item() == pytest.approx(0.02, rel=0.2)
    assert all((m.bias == 0).all() for m in bn)
    conv_w, _, _ = _conv_and_norm_values(build_discriminator("basic", ndf=16))
    assert conv_w.std().item() == pytest.approx(0.02, rel=0.01)


def test_init_is_reproducible_from_a_generator_or_the_global_seed():
    a, b = build_generator("unet_32", ngf=4), build_generator("unet_32", ngf=4)
    init_weights(a, generator=torch.Generator().manual_seed(3))
    init_weights(b, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
    init_weights(b, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a.model.model[0].weight, b.model.model[0].weight)

    torch.manual_seed(5)
    c = build_discriminator("basic", ndf=4)
    torch.manual_seed(5)
    d = build_discriminator("basic", ndf=4)
    torch.testing.assert_close(c.state_dict(), d.state_dict(), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# Loading: a re-implementation of the reference trainer's U-Net module tree, written from its
# description, produces state_dicts in the reference layout.


class ReferenceUnetBlock(nn.Module):
    """The reference's recursive block: model = Sequential(down..., submodule, up...), cat(x, model(x))."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 norm_layer=nn.BatchNorm2d, use_bias=False, use_dropout=False):
        super().__init__()
        self.outermost = outermost
        input_nc = input_nc or outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)  # in place, as in the reference
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class ReferenceUnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm, use_dropout=True):
        super().__init__()
        norm_layer = {
            "batch": nn.BatchNorm2d,
            "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
            "none": lambda channels: nn.Identity(),
        }[norm]
        kw = dict(norm_layer=norm_layer, use_bias=norm == "instance")
        block = ReferenceUnetBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            block = ReferenceUnetBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout, **kw)
        block = ReferenceUnetBlock(ngf * 4, ngf * 8, submodule=block, **kw)
        block = ReferenceUnetBlock(ngf * 2, ngf * 4, submodule=block, **kw)
        block = ReferenceUnetBlock(ngf, ngf * 2, submodule=block, **kw)
        self.model = ReferenceUnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, **kw)

    def forward(self, x):
        return self.model(x)


def randomized_reference(num_downs=6, ngf=8, norm="batch", seed=0):
    """A reference-layout U-Net with random weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    net = ReferenceUnetGenerator(3, 3, num_downs, ngf, norm)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return net


def outputs_agree(ours, reference, size=64):
    """Same output for the same input in eval mode, and in train mode with the same dropout draws."""
    x = torch.randn(1, 3, size, size)
    ours.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=1e-5)
        ours.train(), reference.train()
        torch.manual_seed(11)
        expected = reference(x)
        torch.manual_seed(11)
        torch.testing.assert_close(ours(x), expected, atol=1e-6, rtol=1e-5)


def test_reference_state_dict_has_our_keys_and_loads(tmp_path):
    reference = randomized_reference()
    path = tmp_path / "latest_net_G.pth"
    torch.save(reference.state_dict(), path)
    ours = load_generator(path, name="unet_64", ngf=8)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert "model.model.1.model.3.model.1.weight" in ours.state_dict()
    outputs_agree(ours, reference)


def test_reference_state_dict_saved_from_data_parallel_loads(tmp_path):
    reference = randomized_reference(num_downs=5)
    path = tmp_path / "latest_net_G.pth"
    torch.save({"module." + k: v for k, v in reference.state_dict().items()}, path)
    outputs_agree(load_generator(path, name="unet_32", ngf=8), reference, size=32)


def test_reference_instance_norm_file_with_stale_running_stats_loads(tmp_path):
    reference = randomized_reference(norm="instance")
    state = reference.state_dict()
    # old reference files carry running statistics for InstanceNorm layers that track none
    state["model.model.1.model.2.running_mean"] = torch.zeros(16)
    state["model.model.1.model.2.running_var"] = torch.ones(16)
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    outputs_agree(load_generator(path, name="unet_64", ngf=8, norm="instance"), reference)


def test_reference_file_without_norm_loads(tmp_path):
    reference = randomized_reference(norm="none")  # the reference has no conv biases here, we do
    path = tmp_path / "latest_net_G.pth"
    torch.save(reference.state_dict(), path)
    outputs_agree(load_generator(path, name="unet_64", ngf=8, norm="none"), reference)


@pytest.mark.parametrize("name, size", [("unet_64", 64), ("resnet_6blocks", 32)])
def test_our_checkpoint_loads_with_its_own_config(tmp_path, name, size):
    config = {"name": name, "input_nc": 3, "output_nc": 2, "ngf": 4, "norm": "instance", "use_dropout": False}
    torch.manual_seed(1)
    net = build_generator(**config)
    path = save_atomic({"format_version": FORMAT_VERSION, "netG_config": config, "netG": net.state_dict(),
                        "epoch": 3, "step": 10}, tmp_path / "latest.pt")
    loaded = load_generator(path)  # the defaults (unet_256, batch) are overridden by the file's config
    x = torch.randn(1, 3, size, size)
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("problem", ["other depth", "other ngf", "missing key", "other norm", "not weights"])
def test_mismatched_files_raise_checkpoint_error_naming_the_file(tmp_path, problem):
    path = tmp_path / "latest_net_G.pth"
    state = randomized_reference(num_downs=6, ngf=8).state_dict()
    kwargs = {"name": "unet_64", "ngf": 8}
    if problem == "other depth":
        kwargs["name"] = "unet_128"
    elif problem == "other ngf":
        kwargs["ngf"] = 16
    elif problem == "missing key":
        del state["model.model.1.model.1.weight"]
    elif problem == "other norm":
        kwargs["norm"] = "instance"
    else:
        state = {"epoch": 3, "lr": 0.1}
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_our_checkpoint_without_generator_or_with_bad_config_raises(tmp_path):
    path = save_atomic({"format_version": FORMAT_VERSION, "step": 3}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="a.pt.*netG"):
        load_generator(path)
    config = {"name": "unet_100", "input_nc": 3, "output_nc": 3, "ngf": 4, "norm": "batch", "use_dropout": True}
    path = save_atomic({"format_version": FORMAT_VERSION, "netG_config": config, "netG": {}}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="b.pt.*unknown generator"):
        load_generator(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "missing.pth")
