"""Complex parameters: TRAdam and TRSGD update them as torch.optim does, as ``torch.view_as_real`` of them
(parameter, gradient, anchor and state), on every path; TrajectoryRegularizer leaves them to its base."""
import pytest
import torch

from tests.tralgo.reference import assert_close
from tralgo import TRAdam, TRSGD, TrajectoryRegularizer

STEPS = 25  # 2.5 inner rounds of S = 10: anchors are taken and the proximal term acts
KINDS = {"complex": [True, True], "mixed": [True, False, True]}  # which parameters are complex
SHAPES = [(4, 3), (5,), (2, 3)]
PATHS = [(False, False), (True, False), (None, None), (False, None), (True, None)]  # (foreach, fused)


def complex_params(kind: str) -> list[torch.Tensor]:
    """The parameters of ``kind``: complex128 where KINDS says so, else float64."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=g, dtype=torch.complex128 if is_complex else torch.float64).requires_grad_()
            for shape, is_complex in zip(SHAPES, KINDS[kind])]


def real_views(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of ``params`` as real parameters: each complex one as ``view_as_real`` of it."""
    return [torch.view_as_real(p.detach()).clone().requires_grad_() if p.is_complex() else p.detach().clone()
            .requires_grad_() for p in params]


def complex_loss(weights: list[torch.Tensor], n: int) -> torch.Tensor:
    """A loss of batch n that is neither linear nor rotation-invariant in the complex weights."""
    g = torch.Generator().manual_seed(1000 + n)
    total = torch.zeros((), dtype=torch.float64)
    for w in weights:
        t = torch.randn(w.shape, generator=g, dtype=w.dtype)
        total = total + (torch.tanh((w * t).real) ** 2).sum() + ((w - t).abs() ** 2).mean()
    return total


def run(params: list[torch.Tensor], opt, kind: str, steps: int = STEPS) -> list[torch.Tensor]:
    """``steps`` steps of ``opt``; ``params`` are complex where KINDS says, or their real views."""
    for n in range(steps):
        opt.zero_grad()
        weights = [torch.view_as_complex(p) if c and not p.is_complex() else p for p, c in zip(params, KINDS[kind])]
        complex_loss(weights, n).backward()
        opt.step()
    return [torch.view_as_real(p.detach()) if p.is_complex() else p.detach() for p in params]


MAKERS = {
    "tradam": lambda ps, foreach, fused: TRAdam(ps, lr=0.05, weight_decay=0.01, foreach=foreach, fused=fused),
    "tradam_amsgrad": lambda ps, foreach, fused: TRAdam(ps, lr=0.05, amsgrad=True, prox_mode="reference",
                                                        foreach=foreach, fused=fused, chunk_size=7),
    "trsgd": lambda ps, foreach, fused: TRSGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                                              foreach=foreach, fused=fused, chunk_size=7),
    "wrapper": lambda ps, foreach, fused: TrajectoryRegularizer(torch.optim.Adam(ps, lr=0.05, foreach=foreach,
                                                                                 fused=fused)),
}


@pytest.mark.parametrize("kind", ["complex", "mixed"])
@pytest.mark.parametrize("foreach,fused", PATHS)
@pytest.mark.parametrize("name", list(MAKERS))
def test_complex_parameters_follow_their_real_views(name, foreach, fused, kind):
    """Weights, anchors and distance_to_anchor() of complex parameters are those of the same optimizer
    on their real views; the state keeps the complex dtype."""
    params = complex_params(kind)
    views = real_views(params)
    opt, opt_views = MAKERS[name](params, foreach, fused), MAKERS[name](views, foreach, fused)
    assert_close(run(params, opt, kind), run(views, opt_views, kind), rtol=1e-10, atol=1e-12)
    anchors = [torch.view_as_real(opt.state[p]["anchor"]) if p.is_complex() else opt.state[p]["anchor"]
               for p in params]
    assert_close(anchors, [opt_views.state[p]["anchor"] for p in views], rtol=1e-10, atol=1e-12)
    assert all(t.dtype == p.dtype for p in params for t in opt.state[p].values() if torch.is_tensor(t) and t.dim())
    assert opt.distance_to_anchor() == pytest.approx(opt_views.distance_to_anchor(), rel=1e-10)
    assert opt.distance_to_anchor() > 0


TORCH = {
    "tradam": (lambda ps, **path: TRAdam(ps, lr=0.1, weight_decay=0.01, prox=0.0, inner_decay=False, **path),
               lambda ps, **path: torch.optim.Adam(ps, lr=0.1, weight_decay=0.01, **path)),
    "tradam_amsgrad": (lambda ps, **path: TRAdam(ps, lr=0.1, amsgrad=True, prox=0.0, inner_decay=False, **path),
                       lambda ps, **path: torch.optim.Adam(ps, lr=0.1, amsgrad=True, **path)),
    "trsgd": (lambda ps, **path: TRSGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01, prox=0.0, inner_decay=False,
                                       **path),
              lambda ps, **path: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01, **path)),
}


@pytest.mark.parametrize("kind", ["complex", "mixed"])
@pytest.mark.parametrize("foreach,fused", PATHS)
@pytest.mark.parametrize("name", list(TORCH))
def test_complex_parameters_without_prox_move_as_in_torch(name, foreach, fused, kind):
    """With prox=0, inner_decay=False: torch.optim.Adam / SGD on the same complex (and real) parameters,
    path for path, bit for bit (but for the real tensors of a mixed list with fused=None, which take
    torch's fused kernel, not torch's default formula)."""
    ours, torchs = TORCH[name]
    a, b = complex_params(kind), complex_params(kind)
    got = run(a, ours(a, foreach=foreach, fused=fused), kind)
    expected = run(b, torchs(b, foreach=foreach, fused=fused), kind)
    tol = 1e-12 if fused is None and kind == "mixed" else 0.0
    assert_close(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("ours,torchs", [(TRAdam, torch.optim.Adam), (TRSGD, torch.optim.SGD)])
def test_fused_true_is_refused_for_complex_parameters_as_in_torch(ours, torchs):
    """torch's fused kernels take no complex tensors: torch refuses them at the first step, TRAdam and
    TRSGD when they are built."""
    with pytest.raises(RuntimeError, match="fused=True"):
        params = complex_params("complex")
        opt = torchs(params, lr=0.1, fused=True)
        run(params, opt, "complex", steps=1)
    with pytest.raises(ValueError, match="Invalid fused: True"):
        ours(complex_params("mixed"), lr=0.1, fused=True)
