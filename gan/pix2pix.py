"""The pix2pix model (Isola et al. 2017): G, D, their optimizers and one training step.

One step on a pair (a, b), as the reference trainer does it:
  1. one forward of G: fake = G(a);
  2. D step: loss_D = ½·(GAN(D(a, fake.detach()), fake) + GAN(D(a, b), real));
  3. G step with D frozen: loss_G = GAN(D(a, fake), real) + λ_L1·‖fake − b‖₁ (D re-run on the same fake).
The optimizer of each network is chosen by name from :mod:`gan.optimizers`.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.distributed import wrap_ddp
from gan.losses import GANLoss
from gan.networks import build_discriminator, build_generator
from gan.optimizers import OptimConfig, build_optimizer


@dataclass
class ModelConfig:
    """The networks and the loss (the pix2pix defaults)."""

    netG: str = "unet_256"
    netD: str = "basic"
    ngf: int = 64
    ndf: int = 64
    n_layers_D: int = 3
    norm: str = "batch"
    use_dropout: bool = True
    input_nc: int = 3
    output_nc: int = 3
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0

    def generator_config(self) -> dict:
        """The keyword arguments of build_generator (stored in checkpoints as ``netG_config``)."""
        return dict(name=self.netG, input_nc=self.input_nc, output_nc=self.output_nc, ngf=self.ngf,
                    norm=self.norm, use_dropout=self.use_dropout)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


class Pix2Pix:
    """G, D, the GAN loss and both optimizers.

    ``G`` and ``D`` may be replaced by wrapped versions (DistributedDataParallel, channels_last, compiled)
    after construction through :meth:`wrap`, and ``D_frozen`` (D inside the G step, where it is not
    trained) by a compiled ``netD``; ``netG``/``netD`` always name the plain modules whose state_dicts go
    into checkpoints.
    """

    def __init__(self, model_config: ModelConfig, optim_config_G: OptimConfig, optim_config_D: OptimConfig,
                 device: torch.device | str = "cpu"):
        self.config = model_config
        self.netG = build_generator(**model_config.generator_config()).to(device)
        self.netD = build_discriminator(model_config.netD, input_nc=model_config.input_nc + model_config.output_nc,
                                        ndf=model_config.ndf, n_layers=model_config.n_layers_D,
                                        norm=model_config.norm).to(device)
        self.G, self.D, self.D_frozen = self.netG, self.netD, self.netD
        self.criterion_gan = GANLoss(model_config.gan_mode)
        self.optimizer_G = build_optimizer(self.netG.parameters(), optim_config_G)
        self.optimizer_D = build_optimizer(self.netD.parameters(), optim_config_D)

    def wrap(self, G: nn.Module, D: nn.Module, D_frozen: nn.Module | None = None) -> None:
        """Use ``G``/``D`` (wrappers around netG/netD, e.g. DDP) for the forward passes of a step, and
        ``D_frozen`` (a wrapper of netD without DDP: its gradients are not synchronised) inside the G step."""
        self.G, self.D, self.D_frozen = G, D, D_frozen if D_frozen is not None else self.netD

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor, autocast=None) -> dict[str, torch.Tensor]:
        """One D update then one G update on the pair (a, b); returns the four losses (detached).

        ``autocast`` is an optional context-manager factory (bf16 autocast on CUDA).
        """
        amp = autocast or nullcontext
        with amp():
            fake_b = self.G(real_a)

        # D step: fake pairs labelled fake, real pairs real.
        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        with amp():
            pred_fake = self.D(torch.cat((real_a, fake_b.detach()), 1))
            loss_D_fake = self.criterion_gan(pred_fake, False)
            pred_real = self.D(torch.cat((real_a, real_b), 1))
            loss_D_real = self.criterion_gan(pred_real, True)
            loss_D = 0.5 * (loss_D_fake + loss_D_real)
        loss_D.backward()
        self.optimizer_D.step()

        # G step with D frozen: D without DDP, so no gradient synchronisation is set up for D.
        set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        with amp():
            loss_G_GAN, loss_G_L1 = self.generator_loss_terms(self.D_frozen, real_a, fake_b, real_b)
            loss_G = loss_G_GAN + loss_G_L1
        loss_G.backward()
        self.optimizer_G.step()
        return {"G_GAN": loss_G_GAN.detach(), "G_L1": loss_G_L1.detach(),
                "D_real": loss_D_real.detach(), "D_fake": loss_D_fake.detach()}

    def generator_loss_terms(self, netD: nn.Module, real_a: torch.Tensor, fake_b: torch.Tensor,
                             real_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G's loss on a generated ``fake_b``: (GAN(D(a, fake), real), λ_L1·‖fake − b‖₁)."""
        pred_fake = netD(torch.cat((real_a, fake_b), 1))
        loss_G_GAN = self.criterion_gan(pred_fake, True, for_discriminator=False)
        loss_G_L1 = F.l1_loss(fake_b.float(), real_b.float()) * self.config.lambda_l1
        return loss_G_GAN, loss_G_L1

    def generator_loss(self, netG: nn.Module, netD: nn.Module, real_a: torch.Tensor,
                       real_b: torch.Tensor) -> torch.Tensor:
        """G's training loss on the pair (a, b) with the given networks (e.g. copies, for probes)."""
        return sum(self.generator_loss_terms(netD, real_a, netG(real_a), real_b))

    def state_dict(self) -> dict:
        """Networks and optimizers as plain state_dicts (for a checkpoint; the keys old checkpoints have)."""
        return {"netG_config": self.config.generator_config(), "model_config": asdict(self.config),
                "netG": self.netG.state_dict(), "netD": self.netD.state_dict(),
                "optimizer_G": self.optimizer_G.state_dict(), "optimizer_D": self.optimizer_D.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Networks and optimizers from :meth:`state_dict` (or a checkpoint holding its keys)."""
        self.netG.load_state_dict(state["netG"])
        self.netD.load_state_dict(state["netD"])
        self.optimizer_G.load_state_dict(state["optimizer_G"])
        self.optimizer_D.load_state_dict(state["optimizer_D"])


def wrap_for_training(pix2pix: Pix2Pix, device: torch.device, *, channels_last: bool = False,
                      distributed: bool = False, sync_batchnorm: bool = False, compile: bool = False) -> None:
    """Set the modules a step runs: channels_last, DistributedDataParallel (under torchrun), torch.compile
    (of every forward a step runs: G, D in the D step and D inside the G step).

    Under DDP neither network's buffers are broadcast before each forward: G's and D's batch-norm
    statistics are not used in training mode, and rank 0's are the ones saved and taken by every rank
    when training ends (common.distributed.leave).
    """
    G, D = pix2pix.netG, pix2pix.netD
    if channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    D_frozen = D
    if distributed:
        if sync_batchnorm:
            G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
            D_frozen = D
        G = wrap_ddp(G, device, sync_buffers_each_forward=False)
        # D runs twice (fake, real) before its backward: broadcasting its buffers before the second
        # forward modifies batch-norm statistics the first one saved (an autograd error on torch >= 2.6
        # before the upstream fix). D trains in training mode only, where they are not used; they are
        # broadcast when training ends.
        D = wrap_ddp(D, device, sync_buffers_each_forward=False)
    if compile:
        G, D, D_frozen = torch.compile(G), torch.compile(D), torch.compile(D_frozen)
    pix2pix.wrap(G, D, D_frozen)
