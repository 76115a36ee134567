"""The gradient-noise estimator against known variances and an independent two-pass computation."""
import numpy as np
import pytest
import torch

from gan.optimizers import OptimConfig
from gan.pix2pix import ModelConfig, Pix2Pix
from training.noise import GradientMoments, direction_offset, gradient_noise, probe_generator_noise
from tralgo import TRAdam


def linear_regression(d, sigma, w_star, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ w_star + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    return list(zip(x, y))


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_linear_regression_with_gaussian_noise(shift):
    """Loss ½(x·w − y)², x ~ N(0, I_d), y = x·w* + N(0, σ²): with u = w − w*, the per-sample gradient
    x xᵀu − xε has mean u and tr Cov = (d + 1)‖u‖² + dσ² (Isserlis' theorem)."""
    d, sigma, n = 8, 0.7, 20000
    w_star = torch.linspace(-1, 1, d, dtype=torch.float64)
    u = torch.full((d,), shift, dtype=torch.float64)
    w = torch.nn.Parameter(w_star + u)
    stats = gradient_noise(lambda s: 0.5 * (s[0] @ w - s[1]) ** 2, [w], linear_regression(d, sigma, w_star, n, 0))
    expected_variance = (d + 1) * float(u @ u) + d * sigma ** 2
    assert stats["variance"] == pytest.approx(expected_variance, rel=0.05)
    # ‖ḡ‖² − V/M estimates ‖u‖² without bias; its standard error here is below 0.1.
    assert stats["signal"] == pytest.approx(float(u @ u), abs=0.25)
    assert stats["mean_sq"] - stats["signal"] == pytest.approx(stats["variance"] / n)
    assert stats["samples"] == n


def test_welford_matches_two_pass_numpy():
    rng = np.random.default_rng(1)
    samples = [[rng.normal(5.0, 0.01, (3, 4)), rng.normal(-2.0, 0.3, 7)] for _ in range(50)]
    moments = GradientMoments([torch.zeros(3, 4), torch.zeros(7)])
    for grads in samples:
        moments.add([torch.from_numpy(g) for g in grads])
    flat = np.stack([np.concatenate([g.ravel() for g in grads]) for grads in samples])
    mean = flat.mean(0)
    variance = ((flat - mean) ** 2).sum(1).sum() / (len(flat) - 1)
    offset = [torch.ones(3, 4), torch.full((7,), 2.0)]
    stats = moments.stats(offset)
    assert stats["variance"] == pytest.approx(variance, rel=1e-10)
    assert stats["mean_sq"] == pytest.approx((mean ** 2).sum(), rel=1e-12)
    shifted = mean + np.concatenate([np.ones(12), np.full(7, 2.0)])
    assert stats["direction_ratio"] == pytest.approx(variance / (shifted ** 2).sum(), rel=1e-10)
    with pytest.raises(ValueError):
        GradientMoments([torch.zeros(1)]).stats()


def test_direction_offset_is_the_proximal_pull_of_the_next_step():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    optimizer = TRAdam([w], lr=0.1, prox=0.3, inner_steps=3, weight_decay=0.01)
    round_start = w.detach().clone()
    for n in range(5):
        k = n % 3
        if k == 0:
            round_start = w.detach().clone()
            assert torch.allclose(direction_offset(optimizer, [w])[0], 0.01 * w.detach())
        else:
            expected = 0.01 * w.detach() + 0.3 * (w.detach() - round_start)
            assert torch.allclose(direction_offset(optimizer, [w])[0], expected)
        w.grad = torch.randn(5)
        optimizer.step()
    adam = torch.optim.Adam([w], lr=0.1)
    assert torch.equal(direction_offset(adam, [w])[0], torch.zeros(5))


def test_probe_leaves_the_model_untouched_and_repeats():
    torch.manual_seed(0)
    model = Pix2Pix(ModelConfig(netG="unet_32", ngf=4, ndf=4), OptimConfig("tradam"), OptimConfig("tradam"))
    probe = [(torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1) for _ in range(3)]
    for a, b in probe[:2]:
        model.training_step(a, b)
    before = {k: v.clone() for k, v in model.netG.state_dict().items()}
    rng = torch.get_rng_state()
    first = probe_generator_noise(model, probe, seed=5)
    second = probe_generator_noise(model, probe, seed=5)
    assert first == second
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.netG.state_dict().items())
    assert first["variance"] > 0 and first["direction_ratio"] > 0 and first["distance_to_anchor"] > 0


class HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the ops that copy one value of a tensor to the host (what float(), .item() and bool() run)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_probe_reads_the_device_once_and_matches_the_optimizers_own_figures(monkeypatch):
    """The probe's sums stay on the device (no per-tensor float()); its numbers come back in one read,
    equal to what the optimizer and a per-tensor float64 computation give."""
    import training.noise
    torch.manual_seed(0)
    model = Pix2Pix(ModelConfig(netG="unet_32", ngf=4, ndf=4), OptimConfig("tradam"), OptimConfig("tradam"))
    probe = [(torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1) for _ in range(3)]
    for a, b in probe[:2]:
        model.training_step(a, b)
    reads = []
    real_read = getattr(training.noise, "read_once", None)
    monkeypatch.setattr(training.noise, "read_once", lambda values: reads.append(len(values)) or real_read(values),
                        raising=False)
    with HostReads() as host_reads:
        stats = probe_generator_noise(model, probe, seed=5)
    assert host_reads.count == 0, f"{host_reads.count} single-value reads of the device"
    assert len(reads) == 1
    assert stats["distance_to_anchor"] == pytest.approx(model.optimizer_G.distance_to_anchor(), rel=1e-6)
    assert stats["samples"] == 3
    assert stats["mean_sq"] - stats["signal"] == pytest.approx(stats["variance"] / 3)


def read_scalars(events) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: {e.step: e.value for e in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]}


def test_a_training_run_probes_every_inner_position_and_sees_the_proximal_pull_only_where_it_acts(synthetic_root,
                                                                                                   tmp_path):
    """train.py --noise-freq F probes after steps F..F+S-1 (k = 0..S-1 of the next step): TRAdam's direction
    noise r_d differs from the gradient noise r_g where the proximal pull acts (k > 0) and equals it at
    k = 0, where the anchor is the weights themselves; Adam's never differs."""
    import train
    tiny = ["--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
            "--n-epochs", "3", "--n-epochs-decay", "0", "--num-workers", "0", "--log-freq", "100",
            "--image-freq", "100", "--inner-steps", "3", "--noise-freq", "4", "--noise-probe", "3", "--lr", "0.01",
            "--prox", "10",
            "--dataroot", str(synthetic_root), "--checkpoints-dir", str(tmp_path), "--device", "cpu"]
    for optim in ("tradam", "adam"):
        assert train.main([*tiny, "--optim", optim]) == 0
        noise = read_scalars(tmp_path / f"{optim}_seed0" / "events")
        assert sorted(noise["noise/k"].items()) == [(4, 1.0), (5, 2.0), (6, 0.0), (8, 2.0), (9, 0.0), (10, 1.0), (12, 0.0)]
        for step, k in noise["noise/k"].items():
            r_g, r_d = noise["noise/grad_ratio"][step], noise["noise/direction_ratio"][step]
            if optim == "tradam" and k > 0:
                assert r_d != pytest.approx(r_g, rel=1e-4), (step, k)
            else:
                assert r_d == pytest.approx(r_g, rel=1e-6), (step, k)
        assert noise["noise/samples"][4] == 3


def test_the_probe_pairs_are_drawn_at_random_from_the_seed_alone(synthetic_root):
    from training.options import parse_args
    from training.run import noise_probe
    pick = {}
    for optim, seed in (("adam", 0), ("tradam", 0), ("adam", 1)):
        options = parse_args(["--dataroot", str(synthetic_root), "--crop-size", "32", "--optim", optim,
                              "--seed", str(seed), "--noise-probe", "3"])
        pick[optim, seed] = torch.stack([a for a, _ in noise_probe(options, torch.device("cpu"))])
    assert torch.equal(pick["adam", 0], pick["tradam", 0]) and not torch.equal(pick["adam", 0], pick["adam", 1])
