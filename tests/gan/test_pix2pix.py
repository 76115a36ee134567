"""gan/pix2pix.py: the training step against a literal transcription of the reference update order."""
import copy

import pytest
import torch
import torch.nn.functional as F

from gan.optimizers import OPTIMIZERS, OptimConfig, build_optimizer
from gan.pix2pix import ModelConfig, Pix2Pix
from tralgo import TRSGD, TRAdam


def reference_step(G, D, opt_G, opt_D, a, b):
    """pix2pix's optimize_parameters(): forward G; D on (a, fake.detach()) and (a, b); G with D frozen."""
    fake = G(a)
    for p in D.parameters():
        p.requires_grad_(True)
    opt_D.zero_grad()
    pred_fake = D(torch.cat((a, fake.detach()), 1))
    pred_real = D(torch.cat((a, b), 1))
    loss_D = 0.5 * (F.binary_cross_entropy_with_logits(pred_fake, torch.zeros_like(pred_fake))
                    + F.binary_cross_entropy_with_logits(pred_real, torch.ones_like(pred_real)))
    loss_D.backward()
    opt_D.step()
    for p in D.parameters():
        p.requires_grad_(False)
    opt_G.zero_grad()
    pred_fake = D(torch.cat((a, fake), 1))
    loss_G = F.binary_cross_entropy_with_logits(pred_fake, torch.ones_like(pred_fake)) + 100 * (fake - b).abs().mean()
    loss_G.backward()
    opt_G.step()


@pytest.mark.parametrize("optim", ["adam", "tradam"])
def test_training_step_matches_the_reference_order(optim):
    torch.manual_seed(0)
    config = ModelConfig(netG="unet_32", ngf=8, ndf=8)
    model = Pix2Pix(config, OptimConfig(optim, fused=False), OptimConfig(optim, fused=False))
    G, D = copy.deepcopy(model.netG), copy.deepcopy(model.netD)
    opt_G = build_optimizer(G.parameters(), OptimConfig(optim, fused=False))
    opt_D = build_optimizer(D.parameters(), OptimConfig(optim, fused=False))
    for n in range(4):
        g = torch.Generator().manual_seed(n)
        a, b = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
        torch.manual_seed(100 + n)  # the same dropout masks for both
        losses = model.training_step(a, b)
        torch.manual_seed(100 + n)
        reference_step(G, D, opt_G, opt_D, a, b)
        assert set(losses) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    for ours, theirs in ((model.netG, G), (model.netD, D)):
        for (name, x), y in zip(ours.state_dict().items(), theirs.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=name)


def test_optimizer_choice_and_paper_settings():
    params = [torch.zeros(3, requires_grad=True)]
    kinds = {name: type(build_optimizer(params, OptimConfig(name))) for name in OPTIMIZERS}
    assert kinds == {"adam": torch.optim.Adam, "tradam": TRAdam, "sgd": torch.optim.SGD, "trsgd": TRSGD}
    group = build_optimizer(params, OptimConfig("tradam")).param_groups[0]
    assert (group["lr"], group["betas"], group["prox"], group["inner_steps"]) == (2e-4, (0.5, 0.999), 0.1, 10)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(params, OptimConfig("lamb"))


def _tiny_pix2pix():
    torch.manual_seed(0)
    return Pix2Pix(ModelConfig(netG="unet_32", ngf=4, ndf=4), OptimConfig("adam"), OptimConfig("adam"))


def test_compile_covers_every_forward_of_d_including_the_one_inside_the_g_step(monkeypatch):
    """With compile, each of D's three forwards in a step (fake and real in the D step, fake in the G step)
    runs through a compiled module: torch.compile is replaced by a wrapper that counts the calls it sees."""
    from gan.pix2pix import wrap_for_training

    class Compiled(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module, self.calls = module, 0

        def forward(self, x):
            self.calls += 1
            return self.module(x)

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(Compiled(module)) or compiled[-1])
    model = _tiny_pix2pix()
    plain_d_forwards = []
    model.netD.register_forward_hook(lambda *args: plain_d_forwards.append(1))
    wrap_for_training(model, torch.device("cpu"), compile=True)
    model.training_step(torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1)
    through_compiled_d = sum(c.calls for c in compiled if c.module is model.netD)
    assert len(plain_d_forwards) == 3 and through_compiled_d == 3


def test_ddp_broadcasts_no_buffers_before_the_forwards_of_g_or_d(monkeypatch):
    """Under DDP (a one-process gloo group here) a step issues no buffer broadcast: DDP's per-forward buffer
    sync is off for G as for D (their batch-norm statistics are unused in training mode; rank 0's are saved)."""
    import socket

    import torch.distributed as dist

    from gan.pix2pix import wrap_for_training

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        model = _tiny_pix2pix()
        wrap_for_training(model, torch.device("cpu"), distributed=True)
        broadcasts = []
        real = dist._broadcast_coalesced
        monkeypatch.setattr(dist, "_broadcast_coalesced", lambda *a, **k: broadcasts.append(1) or real(*a, **k))
        for _ in range(2):
            model.training_step(torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1)
        assert broadcasts == []
    finally:
        dist.destroy_process_group()
