"""The pix2pix generators and discriminators, their weight init, and loading trained generators.

Generators (``build_generator``):
  ``unet_<2^k>``      U-Net with k down steps, e.g. unet_128 (7), unet_256 (8); needs H, W divisible by 2^k
  ``resnet_<n>blocks`` ResNet encoder-decoder with n residual blocks (resnet_6blocks, resnet_9blocks);
                      needs H, W divisible by 4
Discriminators (``build_discriminator``):
  ``basic``    the 70x70 PatchGAN (= ``n_layers`` with 3 layers)
  ``n_layers`` PatchGAN with ``n_layers`` stride-2 convolutions
  ``pixel``    1x1 PatchGAN (one decision per pixel)
Norms: ``batch``, ``instance``, ``syncbatch``, ``none``.

The module trees mirror the reference PyTorch trainer (junyanz/pytorch-CycleGAN-and-pix2pix) layer for
layer, so a state_dict saved by that trainer (e.g. ``latest_net_G.pth``) has exactly our keys and loads
directly; see :func:`load_generator`. One deliberate difference: with norm ``none`` our convolutions
have biases (the reference gives biases only with instance norm).
"""
from __future__ import annotations

import os
import re

import torch
from torch import nn

from common.checkpoint import CheckpointError, describe_names, nonfinite_entries
from gan.run_files import generator_entry

NORMS = ("batch", "instance", "syncbatch", "none")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
GENERATOR_CHOICES = ("unet_<2^k> with k >= 5 (unet_32, unet_64, unet_128, unet_256, ...), "
                     "resnet_<n>blocks (resnet_6blocks, resnet_9blocks)")

_UNET_NAME = re.compile(r"unet_(\d+)")
_RESNET_NAME = re.compile(r"resnet_(\d+)blocks")
_MIN_UNET_DEPTH = 5  # the three channel-widening levels, the outermost and the innermost


# --------------------------------------------------------------------------------------------------
# Normalization and initialization


def make_norm(norm: str, num_features: int) -> nn.Module:
    """A 2-D normalization layer over ``num_features`` channels.

    batch/syncbatch: learnable scale and shift, running statistics. instance: no affine parameters and
    no running statistics (the reference's choice). none: ``nn.Identity`` (a placeholder that keeps the
    layer positions, hence the state_dict keys, the same for every norm).
    """
    if norm == "batch":
        return nn.BatchNorm2d(num_features)
    if norm == "syncbatch":
        return nn.SyncBatchNorm(num_features)
    if norm == "instance":
        return nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def _conv_bias(norm: str) -> bool:
    """Whether a convolution followed by ``norm`` needs its own bias.

    Batch norm has a learnable shift, which makes a bias redundant; instance norm (without affine
    parameters) and no norm do not. The reference trainer gives a bias only with instance norm; for
    ``none`` it has none, and :func:`load_generator` fills the missing biases with zeros.
    """
    return norm not in ("batch", "syncbatch")


def init_weights(net: nn.Module, gain: float = 0.02, generator: torch.Generator | None = None) -> nn.Module:
    """Reinitialize ``net`` in place the pix2pix way and return it.

    Convolution and linear weights ~ N(0, gain), their biases 0; batch-norm weights ~ N(1, gain), their
    biases 0. Random numbers come from ``generator`` (which must live on the parameters' device) or, if
    None, from torch's global generator.
    """
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                  nn.ConvTranspose3d, nn.Linear)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, conv_types):
                nn.init.normal_(module.weight, 0.0, gain, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                nn.init.normal_(module.weight, 1.0, gain, generator=generator)
                nn.init.zeros_(module.bias)
    return net


# --------------------------------------------------------------------------------------------------
# U-Net generator


class UnetSkipBlock(nn.Module):
    """One level of the U-Net: down-sample, run the inner levels, up-sample, concatenate a skip.

    An inner level maps [N, outer_nc, H, W] to [N, 2*outer_nc, H, W]: its input (the skip) and its
    output side by side. The outermost level maps [N, input_nc, H, W] to
    [N, outer_nc, H, W] through Tanh, without a skip.

    The layers sit in one ``nn.Sequential`` called ``model``, in the reference's order:
      outermost  [down conv, inner level, ReLU, up conv (bias), Tanh]
      middle     [LeakyReLU, down conv, norm, inner level, ReLU, up conv, norm, (Dropout 0.5)]
      innermost  [LeakyReLU, down conv, ReLU, up conv, norm]
    All convolutions are 4x4, stride 2, padding 1. ``inner=None`` makes the innermost level.
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 inner: nn.Module | None = None, outermost: bool = False, norm: str = "batch",
                 use_dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        innermost = inner is None
        bias = _conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        # Below the innermost level nothing is concatenated, elsewhere the inner level doubles the channels.
        up_in = inner_nc if innermost else 2 * inner_nc
        up_conv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias or outermost)
        if outermost:
            layers = [down_conv, inner, nn.ReLU(inplace=True), up_conv, nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2), down_conv, nn.ReLU(inplace=True), up_conv, make_norm(norm, outer_nc)]
        else:
            layers = [nn.LeakyReLU(0.2), down_conv, make_norm(norm, inner_nc), inner,
                      nn.ReLU(inplace=True), up_conv, make_norm(norm, outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The reference's LeakyReLU works in place, so its skip carries LeakyReLU(x) rather than x; the
        # parent applies ReLU to the concatenation next, and ReLU(LeakyReLU(x)) = ReLU(x): same numbers.
        return torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(nn.Module):
    """U-Net with ``depth`` down steps: [N, input_nc, H, W] -> [N, output_nc, H, W] in [-1, 1].

    H and W must be divisible by 2^depth. Channels from the outside in: ngf, 2ngf, 4ngf, then 8ngf for
    the remaining depth - 3 levels. Dropout (when enabled) sits on the depth - 5 8ngf levels just
    outside the innermost one (three of them in unet_256).
    """

    def __init__(self, input_nc: int, output_nc: int, depth: int, ngf: int = 64, norm: str = "batch",
                 use_dropout: bool = True):
        super().__init__()
        if depth < _MIN_UNET_DEPTH:
            raise ValueError(f"a U-Net needs at least {_MIN_UNET_DEPTH} down steps, got {depth}")
        self.depth = depth
        block = UnetSkipBlock(8 * ngf, 8 * ngf, norm=norm)  # innermost
        for _ in range(depth - _MIN_UNET_DEPTH):
            block = UnetSkipBlock(8 * ngf, 8 * ngf, inner=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipBlock(4 * ngf, 8 * ngf, inner=block, norm=norm)
        block = UnetSkipBlock(2 * ngf, 4 * ngf, inner=block, norm=norm)
        block = UnetSkipBlock(ngf, 2 * ngf, inner=block, norm=norm)
        self.model = UnetSkipBlock(output_nc, ngf, input_nc=input_nc, inner=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------------------------------
# ResNet generator


class ResnetBlock(nn.Module):
    """x + [pad, conv 3x3, norm, ReLU, (Dropout 0.5), pad, conv 3x3, norm](x), reflection padding."""

    def __init__(self, channels: int, norm: str = "batch", use_dropout: bool = False):
        super().__init__()
        bias = _conv_bias(norm)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
                  make_norm(norm, channels), nn.ReLU(inplace=True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
                   make_norm(norm, channels)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet encoder-decoder: [N, input_nc, H, W] -> [N, output_nc, H, W] in [-1, 1].

    7x7 conv to ngf channels, two stride-2 3x3 convs (to 4ngf channels at H/4), ``n_blocks`` residual
    blocks, two stride-2 transposed convs back, 7x7 conv and Tanh. H and W must be divisible by 4.
    """

    def __init__(self, input_nc: int, output_nc: int, n_blocks: int, ngf: int = 64, norm: str = "batch",
                 use_dropout: bool = True):
        super().__init__()
        bias = _conv_bias(norm)
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, bias=bias),
                  make_norm(norm, ngf), nn.ReLU(inplace=True)]
        channels = ngf
        for _ in range(2):  # down-sampling
            layers += [nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=bias),
                       make_norm(norm, 2 * channels), nn.ReLU(inplace=True)]
            channels *= 2
        layers += [ResnetBlock(channels, norm=norm, use_dropout=use_dropout) for _ in range(n_blocks)]
        for _ in range(2):  # up-sampling
            layers += [nn.ConvTranspose2d(channels, channels // 2, kernel_size=3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       make_norm(norm, channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, output_nc, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------------------------------
# Discriminators


class NLayerDiscriminator(nn.Module):
    """PatchGAN: [N, input_nc, H, W] -> [N, 1, H', W'] logits, one per overlapping patch.

    ``n_layers`` stride-2 4x4 convs (channels ndf, 2ndf, ... capped at 8ndf), one stride-1 conv, and a
    stride-1 conv to one channel; LeakyReLU(0.2) after each but the last, norm after each but the first
    and last. With n_layers=3 each logit sees a 70x70 patch and 256x256 input gives 30x30 logits.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        bias = _conv_bias(norm)
        layers = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        channels = ndf
        for n in range(1, n_layers + 1):
            out_channels = ndf * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(channels, out_channels, kernel_size=4, stride=stride, padding=1, bias=bias),
                       make_norm(norm, out_channels), nn.LeakyReLU(0.2, inplace=True)]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: [N, input_nc, H, W] -> [N, 1, H, W] logits from 1x1 convs (ndf, 2ndf, 1)."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        bias = _conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, 2 * ndf, kernel_size=1, bias=bias), make_norm(norm, 2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 1, kernel_size=1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------------------------------
# Factories


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def _parse_generator_name(name: str) -> tuple[str, int]:
    """``"unet_256"`` -> ("unet", 8); ``"resnet_9blocks"`` -> ("resnet", 9). ValueError otherwise."""
    match = _UNET_NAME.fullmatch(name)
    if match:
        size = int(match.group(1))
        depth = size.bit_length() - 1
        if size == 2 ** depth and depth >= _MIN_UNET_DEPTH:
            return "unet", depth
    match = _RESNET_NAME.fullmatch(name)
    if match and int(match.group(1)) >= 1:
        return "resnet", int(match.group(1))
    raise ValueError(f"unknown generator {name!r}; choose one of {GENERATOR_CHOICES}")


def build_generator(name: str, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
                    use_dropout: bool = True) -> nn.Module:
    """The generator called ``name`` (see the module docstring), with the pix2pix init from the global RNG.

    Raises ValueError for an unknown name or norm.
    """
    _check_norm(norm)
    kind, size = _parse_generator_name(name)
    if kind == "unet":
        net = UnetGenerator(input_nc, output_nc, depth=size, ngf=ngf, norm=norm, use_dropout=use_dropout)
    else:
        net = ResnetGenerator(input_nc, output_nc, n_blocks=size, ngf=ngf, norm=norm, use_dropout=use_dropout)
    return init_weights(net)


def build_discriminator(name: str, input_nc: int = 6, ndf: int = 64, n_layers: int = 3,
                        norm: str = "batch") -> nn.Module:
    """The discriminator called ``name`` (basic, n_layers, pixel), with the pix2pix init from the global RNG.

    ``basic`` ignores ``n_layers`` (it is always 3). Raises ValueError for an unknown name or norm.
    """
    _check_norm(norm)
    if name == "basic":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=3, norm=norm)
    elif name == "n_layers":
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        net = NLayerDiscriminator(input_nc, ndf, n_layers=n_layers, norm=norm)
    elif name == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm=norm)
    else:
        raise ValueError(f"unknown discriminator {name!r}; choose one of {', '.join(DISCRIMINATORS)}")
    return init_weights(net)


def required_divisor(name: str) -> int:
    """The number H and W must be divisible by for generator ``name`` (2^depth for a U-Net, 4 for a ResNet)."""
    kind, size = _parse_generator_name(name)
    return 2 ** size if kind == "unet" else 4


def check_image_size(name: str, height: int, width: int | None = None) -> None:
    """Raise ValueError (one line) unless generator ``name`` can process ``height`` x ``width`` images.

    A U-Net with k down steps halves the image k times and concatenates each level with its skip, so
    H and W must be positive multiples of 2^k (unet_256: 256, 512, ...). A ResNet generator needs
    multiples of 4, at least 8 (its reflection padding needs an H/4 of at least 2).
    """
    width = height if width is None else width
    divisor = required_divisor(name)
    minimum = divisor if name.startswith("unet") else 8
    for side, value in (("height", height), ("width", width)):
        if value < minimum or value % divisor:
            at_least = f" and at least {minimum}" if minimum > divisor else ""
            raise ValueError(
                f"image size {height}x{width} does not suit generator {name}: height and width must be"
                f" multiples of {divisor}{at_least}, got {side} {value}"
            )


# --------------------------------------------------------------------------------------------------
# Loading trained generators


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def _strip_wrapper_prefixes(state: dict) -> dict:
    """Drop a prefix that wrapping the model added to every key (``module.``, ``_orig_mod.``)."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix):]: value for key, value in state.items()}
                changed = True
    return state


def _owner(net: nn.Module, key: str) -> nn.Module | None:
    """The module that holds parameter/buffer ``key`` in ``net`` (None if there is no such module)."""
    try:
        return net.get_submodule(key.rpartition(".")[0])
    except AttributeError:
        return None


def _patch_reference_quirks(net: nn.Module, state: dict) -> dict:
    """Make a reference trainer's state_dict fit ``net`` where the difference carries no weights.

    * Old reference checkpoints store running statistics for InstanceNorm layers that track none:
      dropped.
    * With norm ``none`` the reference's convolutions have no bias, ours do: the missing biases are
      zeros, which computes the same function.
    """
    expected = net.state_dict()
    state = dict(state)
    for key in [k for k in state if k not in expected]:
        if key.rpartition(".")[2] in ("running_mean", "running_var", "num_batches_tracked") and \
                isinstance(_owner(net, key), nn.InstanceNorm2d):
            del state[key]
    for key, value in expected.items():
        module = _owner(net, key)
        if (key not in state and key.endswith(".bias") and isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
                and key[: -len("bias")] + "weight" in state):
            state[key] = torch.zeros_like(value)
    return state


def _mismatch(net: nn.Module, state: dict) -> str | None:
    """A one-line description of how ``state`` does not fit ``net``, or None if it fits exactly."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    for key, value in state.items():
        if key in expected and (not isinstance(value, torch.Tensor) or value.shape != expected[key].shape):
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            problems.append(f"{key} has shape {found}, expected {tuple(expected[key].shape)}")
            break
    return "; ".join(problems) or None


def load_generator(path: str | os.PathLike, name: str = "unet_256", norm: str = "batch", **kwargs) -> nn.Module:
    """The generator stored in ``path``, on the CPU, in training mode.

    ``path`` is either one of our training checkpoints (a dict with ``format_version``, ``netG_config``
    and ``netG``; its config decides the architecture and the arguments here are ignored) or a bare
    generator state_dict such as the reference trainer's ``latest_net_G.pth``, built as
    ``build_generator(name, norm=norm, **kwargs)`` (kwargs: input_nc, output_nc, ngf, use_dropout).
    Keys wrapped by DataParallel/DDP (``module.``) or torch.compile (``_orig_mod.``) are accepted.

    Training mode (dropout on, batch norm on the image's own statistics) is the pix2pix test protocol;
    call ``.eval()`` for running statistics and no dropout. Raises CheckpointError naming the file when
    it cannot be read, holds no generator, holds non-finite values, or does not match the architecture.
    """
    config, state = generator_entry(path)
    reference_file = config is None
    if reference_file:
        config = dict(kwargs, name=name, norm=norm)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a generator checkpoint or state_dict (values are not all tensors)")

    try:
        net = build_generator(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build the generator {config}: {exc}") from exc

    bad = nonfinite_entries(state)
    if bad:
        raise CheckpointError(f"{path}: the generator holds non-finite values ({describe_names(bad)}); its training "
                              f"diverged (our training never saves such a checkpoint)")
    state = _strip_wrapper_prefixes(dict(state))
    if reference_file:
        state = _patch_reference_quirks(net, state)
    problem = _mismatch(net, state)
    if problem:
        described = ", ".join(f"{k}={v}" for k, v in config.items())
        raise CheckpointError(f"{path}: weights do not match generator ({described}): {problem}")
    net.load_state_dict(state)
    return net
