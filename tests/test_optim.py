"""TRAdam / TRSGD / TrajectoryRegularizer against a straightforward implementation of the contract.

The reference below is written from the four rules of the contract (anchor at k = 0; direction
d = g + wd·w + c·(w − w_t); base step with lr/(k+1); grads and lr untouched), one parameter at a
time with plain tensor arithmetic, independently of gan/optim.py.
"""
import io
import itertools
import pytest
import torch

from gan.optim import TRAdam, TRSGD, TrajectoryRegularizer

STEPS = 35  # 3.5 inner rounds of S = 10


# ----------------------------------------------------------------------------- a tiny problem
def make_params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 4), (6,), (3, 6), (3,)]
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]


def batch(n, dtype):
    g = torch.Generator().manual_seed(1000 + n)
    return torch.randn(5, 4, generator=g, dtype=torch.float64).to(dtype), torch.randn(5, 3, generator=g,
                                                                                       dtype=torch.float64).to(dtype)


def loss_fn(params, n):
    w1, b1, w2, b2 = params
    x, y = batch(n, w1.dtype)
    return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - y) ** 2).mean()


def lr_at(n, lr0):
    """A schedule that changes lr in the middle of inner rounds (steps 13 and 27)."""
    return lr0 * (0.5 ** (n // 13))


# ----------------------------------------------------------------------------- reference
class ReferenceTR:
    """The contract, literally: one parameter at a time, no fused kernels."""

    def __init__(self, params, base, lr, prox, inner_steps, inner_decay, prox_mode, weight_decay=0.0,
                 betas=(0.9, 0.999), eps=1e-8, momentum=0.0, dampening=0.0, nesterov=False):
        self.w = [p.detach().clone() for p in params]
        self.base, self.lr0, self.prox, self.S = base, lr, prox, inner_steps
        self.inner_decay, self.mode, self.wd = inner_decay, prox_mode, weight_decay
        self.betas, self.eps = betas, eps
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.n = 0
        self.m = [torch.zeros_like(w) for w in self.w]
        self.v = [torch.zeros_like(w) for w in self.w]
        self.buf = [None for _ in self.w]

    def step(self, grads, lr):
        k = self.n % self.S
        if k == 0:
            self.anchor = [w.clone() for w in self.w]
        c = self.prox if self.mode == "paper" else 2 * self.prox * self.lr0 / lr
        eta = lr / (k + 1) if self.inner_decay else lr
        t = self.n + 1
        for i, (w, g) in enumerate(zip(self.w, grads)):
            d = g + c * (w - self.anchor[i])
            if self.base == "adamw":
                w.mul_(1 - eta * self.wd)
            else:
                d = d + self.wd * w
            if self.base in ("adam", "adamw"):
                b1, b2 = self.betas
                self.m[i] = b1 * self.m[i] + (1 - b1) * d
                self.v[i] = b2 * self.v[i] + (1 - b2) * d * d
                m_hat = self.m[i] / (1 - b1 ** t)
                v_hat = self.v[i] / (1 - b2 ** t)
                w.sub_(eta * m_hat / (v_hat.sqrt() + self.eps))
            else:  # sgd
                update = d
                if self.momentum:
                    if self.buf[i] is None:
                        self.buf[i] = d.clone()
                    else:
                        self.buf[i] = self.momentum * self.buf[i] + (1 - self.dampening) * d
                    update = d + self.momentum * self.buf[i] if self.nesterov else self.buf[i]
                w.sub_(eta * update)
        self.n += 1


def run_reference(ref, steps=STEPS):
    for n in range(steps):
        params = [w.clone().requires_grad_() for w in ref.w]
        grads = torch.autograd.grad(loss_fn(params, n), params)
        ref.step(grads, lr_at(n, ref.lr0))
    return ref.w


def run_optimizer(params, opt, lr0, steps=STEPS, start=0):
    for n in range(start, start + steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(n, lr0)
        opt.zero_grad()
        loss_fn(params, n).backward()
        opt.step()
    return [p.detach() for p in params]


def assert_close(actual, expected, rtol=1e-9, atol=1e-11):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- trajectory
ADAM_CASES = list(itertools.product(["paper", "reference"], [True, False], [0.0, 0.01], [True, False]))


@pytest.mark.parametrize("prox_mode,inner_decay,weight_decay,fused", ADAM_CASES)
def test_tradam_matches_reference(prox_mode, inner_decay, weight_decay, fused):
    lr = 0.01
    params = make_params()
    ref = ReferenceTR(params, "adam", lr, 0.1, 10, inner_decay, prox_mode, weight_decay=weight_decay)
    opt = TRAdam(params, lr=lr, weight_decay=weight_decay, prox=0.1, inner_steps=10, inner_decay=inner_decay,
                 prox_mode=prox_mode, fused=fused, chunk_size=7)  # small chunks: exercise the chunking
    assert_close(run_optimizer(params, opt, lr), run_reference(ref))


SGD_CASES = [
    (mode, decay, wd, mom, damp, nest, fused)
    for mode in ["paper", "reference"]
    for decay in [True, False]
    for wd, mom, damp, nest in [(0.0, 0.0, 0.0, False), (0.01, 0.9, 0.0, False), (0.0, 0.9, 0.1, False),
                                (0.01, 0.9, 0.0, True)]
    for fused in [True, False]
]


@pytest.mark.parametrize("prox_mode,inner_decay,weight_decay,momentum,dampening,nesterov,fused", SGD_CASES)
def test_trsgd_matches_reference(prox_mode, inner_decay, weight_decay, momentum, dampening, nesterov, fused):
    lr = 0.05
    params = make_params()
    ref = ReferenceTR(params, "sgd", lr, 0.1, 10, inner_decay, prox_mode, weight_decay=weight_decay,
                      momentum=momentum, dampening=dampening, nesterov=nesterov)
    opt = TRSGD(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, prox=0.1, inner_steps=10, inner_decay=inner_decay, prox_mode=prox_mode,
                fused=fused)
    assert_close(run_optimizer(params, opt, lr), run_reference(ref))


@pytest.mark.parametrize("prox_mode", ["paper", "reference"])
def test_wrapper_matches_reference_adamw(prox_mode):
    lr = 0.01
    params = make_params()
    ref = ReferenceTR(params, "adamw", lr, 0.1, 10, True, prox_mode, weight_decay=0.05)
    opt = TrajectoryRegularizer(torch.optim.AdamW(params, lr=lr, weight_decay=0.05), prox=0.1, inner_steps=10,
                                prox_mode=prox_mode)
    assert_close(run_optimizer(params, opt, lr), run_reference(ref))


def test_wrapper_matches_trsgd():
    lr = 0.05
    a, b = make_params(), make_params()
    tr = TRSGD(a, lr=lr, momentum=0.9, weight_decay=0.01, fused=False)
    wrapped = TrajectoryRegularizer(torch.optim.SGD(b, lr=lr, momentum=0.9, weight_decay=0.01))
    assert_close(run_optimizer(b, wrapped, lr), run_optimizer(a, tr, lr), rtol=0, atol=0)


def test_groups_carry_their_own_prox_and_inner_steps():
    lr = 0.01
    params = make_params()
    opt = TRAdam([{"params": params[:2], "prox": 0.3, "inner_steps": 4},
                  {"params": params[2:], "inner_steps": 7}], lr=lr, prox=0.1)
    first = ReferenceTR(params[:2], "adam", lr, 0.3, 4, True, "paper")
    second = ReferenceTR(params[2:], "adam", lr, 0.1, 7, True, "paper")
    got = run_optimizer(params, opt, lr)
    for n in range(STEPS):  # both references see gradients of the joint loss
        joint = [w.clone().requires_grad_() for w in first.w + second.w]
        grads = torch.autograd.grad(loss_fn(joint, n), joint)
        first.step(grads[:2], lr_at(n, lr))
        second.step(grads[2:], lr_at(n, lr))
    assert_close(got, first.w + second.w)


# ----------------------------------------------------------------------------- equal to torch's own
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay,amsgrad", [(0.0, False), (0.01, True)])
def test_tradam_without_prox_is_torch_adam(fused, weight_decay, amsgrad):
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours = TRAdam(a, lr=0.01, weight_decay=weight_decay, amsgrad=amsgrad, prox=0.0, inner_decay=False,
                  fused=fused)
    torchs = torch.optim.Adam(b, lr=0.01, weight_decay=weight_decay, amsgrad=amsgrad,
                              fused=fused, foreach=False if not fused else None)
    assert_close(run_optimizer(a, ours, 0.01), run_optimizer(b, torchs, 0.01), rtol=0, atol=0)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_trsgd_without_prox_is_torch_sgd(fused, momentum, nesterov):
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours = TRSGD(a, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=0.01, prox=0.0,
                 inner_decay=False, fused=fused)
    torchs = torch.optim.SGD(b, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=0.01,
                             fused=fused, foreach=False if not fused else None)
    assert_close(run_optimizer(a, ours, 0.05), run_optimizer(b, torchs, 0.05), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fused_and_plain_paths_follow_the_same_trajectory(dtype):
    a, b = make_params(dtype), make_params(dtype)
    fused = run_optimizer(a, TRAdam(a, lr=0.01, weight_decay=0.01, fused=True, chunk_size=5), 0.01)
    plain = run_optimizer(b, TRAdam(b, lr=0.01, weight_decay=0.01, fused=False), 0.01)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 2e-2}[dtype]
    assert_close(fused, plain, rtol=tol, atol=tol)
    assert all(p.dtype == dtype for p in a)


# ----------------------------------------------------------------------------- contract details
def all_optimizers(params):
    return {
        "tradam_fused": lambda: TRAdam(params, lr=0.01, fused=True),
        "tradam_plain": lambda: TRAdam(params, lr=0.01, fused=False),
        "trsgd": lambda: TRSGD(params, lr=0.01, momentum=0.9),
        "wrapper": lambda: TrajectoryRegularizer(torch.optim.RMSprop(params, lr=0.01)),
    }


@pytest.mark.parametrize("name", ["tradam_fused", "tradam_plain", "trsgd", "wrapper"])
def test_step_leaves_grad_and_lr_untouched(name):
    params = make_params(torch.float32)
    opt = all_optimizers(params)[name]()
    for n in range(12):
        opt.zero_grad()
        loss_fn(params, n).backward()
        grads = [p.grad.clone() for p in params]
        opt.param_groups[0]["lr"] = 0.01 * (n + 1)
        opt.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))
        assert opt.param_groups[0]["lr"] == 0.01 * (n + 1)


@pytest.mark.parametrize("name", ["tradam_fused", "tradam_plain", "trsgd", "wrapper"])
def test_resume_in_the_middle_of_an_inner_round(name):
    lr = 0.01
    whole = make_params()
    run_optimizer(whole, all_optimizers(whole)[name](), lr, steps=30)

    first = make_params()
    opt = all_optimizers(first)[name]()
    run_optimizer(first, opt, lr, steps=17)  # k = 7 of the second round
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = [p.clone().requires_grad_() for p in saved["params"]]
    opt = all_optimizers(resumed)[name]()
    opt.load_state_dict(saved["opt"])
    run_optimizer(resumed, opt, lr, steps=13, start=17)
    assert_close(resumed, whole, rtol=0, atol=0)


def test_works_with_lr_schedulers_and_closures():
    params = make_params()
    opt = TRAdam(params, lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    ref = ReferenceTR(params, "adam", 0.01, 0.1, 10, True, "paper")
    for n in range(STEPS):
        def closure():
            opt.zero_grad()
            loss = loss_fn(params, n)
            loss.backward()
            return loss
        with torch.no_grad():
            expected = loss_fn(params, n)
        assert torch.equal(opt.step(closure).detach(), expected)  # the closure's loss is returned
        scheduler.step()
    for n in range(STEPS):
        w = [x.clone().requires_grad_() for x in ref.w]
        ref.step(torch.autograd.grad(loss_fn(w, n), w), 0.01 * 0.5 ** (n // 5))
    assert_close(params, ref.w)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** (STEPS // 5))


def test_grad_scaler_step_gives_the_unscaled_trajectory():
    a, b = make_params(torch.float32), make_params(torch.float32)
    plain = run_optimizer(b, TRAdam(b, lr=0.01), 0.01, steps=15)
    opt = TRAdam(a, lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    for n in range(15):
        opt.param_groups[0]["lr"] = lr_at(n, 0.01)
        opt.zero_grad()
        scaler.scale(loss_fn(a, n)).backward()
        scaler.step(opt)
        scaler.update()
    assert_close(a, plain, rtol=0, atol=0)


def test_params_without_grad_are_skipped_and_get_no_state():
    params = make_params()
    unused = torch.zeros(3, requires_grad=True)
    opt = TRAdam(params + [unused], lr=0.01)
    run_optimizer(params, opt, 0.01, steps=12)
    assert torch.equal(unused, torch.zeros(3)) and unused not in opt.state


def test_memory_is_one_anchor_beyond_adams_state():
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours, torchs = TRAdam(a, lr=0.01), torch.optim.Adam(b, lr=0.01)
    run_optimizer(a, ours, 0.01, steps=3)
    run_optimizer(b, torchs, 0.01, steps=3)

    def state_elements(opt):
        return sum(t.numel() for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0)

    assert state_elements(ours) - state_elements(torchs) == sum(p.numel() for p in a)


def test_anchor_is_reset_every_inner_steps():
    params = make_params()
    opt = TRAdam(params, lr=0.01, inner_steps=4)
    for n in range(9):
        opt.zero_grad()
        loss_fn(params, n).backward()
        before = [p.detach().clone() for p in params]
        opt.step()
        if n % 4 == 0:
            assert all(torch.equal(opt.state[p]["anchor"], w) for p, w in zip(params, before))
    assert opt.distance_to_anchor() > 0


@pytest.mark.parametrize("make,argument", [
    (lambda p: TRAdam(p, lr=-1.0), "lr"),
    (lambda p: TRAdam(p, prox=-0.1), "prox"),
    (lambda p: TRAdam(p, inner_steps=0), "inner_steps"),
    (lambda p: TRAdam(p, prox_mode="code"), "prox_mode"),
    (lambda p: TRAdam(p, betas=(1.0, 0.999)), "beta1"),
    (lambda p: TRSGD(p, lr=-1.0), "lr"),
    (lambda p: TRSGD(p, lr=0.1, prox=-1.0), "prox"),
    (lambda p: TRSGD(p, lr=0.1, inner_steps=0), "inner_steps"),
    (lambda p: TRSGD(p, lr=0.1, prox_mode="x"), "prox_mode"),
    (lambda p: TRSGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: TrajectoryRegularizer(torch.optim.SGD(p, lr=0.1), prox=-1.0), "prox"),
    (lambda p: TrajectoryRegularizer(torch.optim.SGD(p, lr=0.1), inner_steps=0), "inner_steps"),
    (lambda p: TRAdam([{"params": p, "inner_steps": 0}]), "inner_steps"),
])
def test_invalid_arguments_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=f"Invalid {argument}"):
        make(make_params())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fused_matches_cpu():
    a = [p.detach().cuda().requires_grad_() for p in make_params(torch.float32)]
    b = make_params(torch.float32)
    gpu = run_optimizer(a, TRAdam(a, lr=0.01), 0.01)
    cpu = run_optimizer(b, TRAdam(b, lr=0.01), 0.01)
    assert_close([p.cpu() for p in gpu], cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [lambda p: TRAdam(p, lr=0.01, fused=True, chunk_size=16),
                                  lambda p: TRSGD(p, lr=0.05, momentum=0.9, fused=True)])
def test_channels_last_parameters_follow_the_contiguous_trajectory(make):
    torch.manual_seed(0)
    conv_a = torch.nn.Conv2d(3, 4, 3)
    conv_b = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    conv_b.load_state_dict(conv_a.state_dict())
    assert conv_b.weight.is_contiguous(memory_format=torch.channels_last)
    opt_a, opt_b = make(list(conv_a.parameters())), make(list(conv_b.parameters()))
    for n in range(12):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(n))
        for conv, opt, inp in ((conv_a, opt_a, x), (conv_b, opt_b, x.contiguous(memory_format=torch.channels_last))):
            opt.zero_grad()
            conv(inp).pow(2).mean().backward()
            opt.step()
    assert_close(list(conv_b.parameters()), list(conv_a.parameters()), rtol=1e-5, atol=1e-6)
