"""TRAdam / TRSGD / TrajectoryRegularizer against a straightforward implementation of the contract.

The reference below is written from the four rules of the contract (anchor at k = 0; direction
d = g + wd·w + c·(w − w_t); base step with lr/(k+1); grads and lr untouched), one parameter at a
time with plain tensor arithmetic, independently of gan/optim.py.
"""
import io
import weakref
import itertools
import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode

from gan.optim import TRAdam, TRSGD, TrajectoryRegularizer

STEPS = 35  # 3.5 inner rounds of S = 10


# ----------------------------------------------------------------------------- a tiny problem
def make_params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 4), (6,), (3, 6), (3,)]
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]


def batch(n, dtype, device="cpu"):
    g = torch.Generator().manual_seed(1000 + n)
    x, y = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    return x.to(device, dtype), y.to(device, dtype)


def loss_fn(params, n):
    """A two-layer net's loss on batch n, computed where (device) and as (dtype) its weights are."""
    w1, b1, w2, b2 = params
    x, y = batch(n, w1.dtype, w1.device)
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


# group keys each optimizer gained over time (or might): a state saved before they existed lacks them
LATER_GROUP_KEYS = {"tradam": ["foreach", "fused", "amsgrad", "inner_decay", "prox_mode"],
                    "trsgd": ["foreach", "fused", "nesterov", "inner_decay", "prox_mode"],
                    "wrapper": ["inner_decay", "prox_mode"]}


@pytest.mark.parametrize("name", ["tradam", "trsgd", "wrapper"])
def test_a_state_saved_without_later_group_keys_loads_and_continues(name):
    """An older version's state_dict (simulated by deleting the group keys added since) loads, gets
    the keys back with the values that version behaved as, and continues the same trajectory."""
    make = {"tradam": lambda p: TRAdam(p, lr=0.01),
            "trsgd": lambda p: TRSGD(p, lr=0.05, momentum=0.9),
            "wrapper": lambda p: TrajectoryRegularizer(torch.optim.RMSprop(p, lr=0.01))}[name]
    whole = make_params()
    run_optimizer(whole, make(whole), 0.01, steps=30)

    first = make_params()
    opt = make(first)
    run_optimizer(first, opt, 0.01, steps=17)
    expected_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    saved = opt.state_dict()
    for groups in ([saved["base"]["param_groups"], saved["regularizer"]["param_groups"]] if name == "wrapper"
                   else [saved["param_groups"]]):
        for group in groups:
            for key in LATER_GROUP_KEYS[name]:
                del group[key]

    resumed = [p.detach().clone().requires_grad_() for p in first]
    opt = make(resumed)
    opt.load_state_dict(saved)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == expected_groups
    run_optimizer(resumed, opt, 0.01, steps=13, start=17)
    assert_close(resumed, whole, rtol=0, atol=0)


@pytest.mark.parametrize("make,kernel", [(lambda p, fused: TRAdam(p, lr=0.01, fused=fused), "_fused_adam_"),
                                         (lambda p, fused: TRSGD(p, lr=0.05, momentum=0.9, fused=fused),
                                          "_fused_sgd_")], ids=["tradam", "trsgd"])
def test_a_torch_without_the_fused_kernel_falls_back_or_refuses(monkeypatch, make, kernel):
    """fused=None takes the plain formula where torch lacks the kernel; fused=True names the problem."""
    plain_params = make_params(torch.float32)
    plain = run_optimizer(plain_params, make(plain_params, False), 0.01, steps=12)
    monkeypatch.delattr(torch, kernel)
    params = make_params(torch.float32)
    assert_close(run_optimizer(params, make(params, None), 0.01, steps=12), plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"Invalid fused: True .*torch.{kernel}"):
        make(make_params(torch.float32), True)


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


# ----------------------------------------------------------------------------- other devices
DEVICES = [pytest.param("meta", id="meta"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("make", [lambda p: TRAdam(p, lr=0.01, weight_decay=0.01),
                                  lambda p: TRAdam(p, lr=0.01, foreach=False, fused=False),
                                  lambda p: TRAdam(p, lr=0.01, foreach=True, fused=False),
                                  lambda p: TRSGD(p, lr=0.05, momentum=0.9),
                                  lambda p: TRSGD(p, lr=0.05, momentum=0.9, foreach=True, fused=False)],
                         ids=["tradam", "tradam_plain", "tradam_foreach_unfused", "trsgd", "trsgd_foreach_unfused"])
def test_other_devices_follow_the_cpu_trajectory(device, make):
    """Everything (parameters, batches, state) stays on the parameters' device; on CUDA the result is
    the CPU's (meta runs the same code without numbers: it catches device mix-ups and host syncs)."""
    on_device = [p.detach().to(device).requires_grad_() for p in make_params(torch.float32)]
    opt = make(on_device)
    result = run_optimizer(on_device, opt, 0.01, steps=12)
    assert all(p.device.type == device for p in result)
    assert all(t.device.type in (device, "cpu") for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    if device != "meta":
        cpu = make_params(torch.float32)
        assert_close([p.cpu() for p in result], run_optimizer(cpu, make(cpu), 0.01, steps=12), rtol=1e-4, atol=1e-5)


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


# ----------------------------------------------------------------------------- kernel grouping and host syncs
def mixed_precision_params():
    """The tiny problem with its weights in bf16 and its biases in fp32 (one parameter group)."""
    params = make_params(torch.float32)
    return [p.detach().to(torch.bfloat16 if p.dim() == 2 else torch.float32).requires_grad_() for p in params]


def mixed_loss(params, n):
    return loss_fn([p.float() for p in params], n)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("prox", [0.0, 0.1])
def test_fused_kernel_gets_one_dtype_per_call(monkeypatch, foreach, prox):
    """torch's fused Adam kernel needs one device and dtype per call (CUDA raises otherwise)."""
    kernel, calls = torch._fused_adam_, []

    def one_dtype_per_call(params, grads, exp_avgs, exp_avg_sqs, *args, **kwargs):
        dtypes = {t.dtype for t in [*params, *grads, *exp_avgs, *exp_avg_sqs]}
        devices = {t.device for t in [*params, *grads, *exp_avgs, *exp_avg_sqs]}
        assert len(dtypes) == 1 and len(devices) == 1, f"one call mixes {dtypes} on {devices}"
        calls.append(dtypes.pop())
        return kernel(params, grads, exp_avgs, exp_avg_sqs, *args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adam_", one_dtype_per_call)
    params = mixed_precision_params()
    opt = TRAdam(params, lr=0.01, prox=prox, fused=True, foreach=foreach)
    for n in range(3):
        opt.zero_grad()
        mixed_loss(params, n).backward()
        opt.step()
    assert {torch.bfloat16, torch.float32} <= set(calls)
    # the same as one optimizer per dtype
    separate = mixed_precision_params()
    opts = [TRAdam([p for p in separate if p.dtype == dtype], lr=0.01, prox=prox, fused=True, foreach=foreach)
            for dtype in (torch.bfloat16, torch.float32)]
    for n in range(3):
        for o in opts:
            o.zero_grad()
        mixed_loss(separate, n).backward()
        for o in opts:
            o.step()
    assert_close(params, separate, rtol=0, atol=0)


class SyncCounter(TorchDispatchMode):
    """Counts device-to-host reads of tensor values (``aten._local_scalar_dense``: ``.item()``, ``float()``)."""

    def __init__(self, only_off_cpu: bool = False):
        super().__init__()
        self.only_off_cpu, self.syncs = only_off_cpu, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            if not (self.only_off_cpu and args[0].device.type == "cpu"):
                self.syncs += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("make", [lambda p: TRAdam(p, lr=0.01, foreach=False, fused=False),
                                  lambda p: TRAdam(p, lr=0.01, foreach=True, fused=False),
                                  lambda p: TRSGD(p, lr=0.05, momentum=0.9, foreach=False, fused=False),
                                  lambda p: TRSGD(p, lr=0.05, momentum=0.9, foreach=True, fused=False)],
                         ids=["tradam_plain", "tradam_foreach", "trsgd_plain", "trsgd_foreach"])
def test_steps_never_read_device_values(make):
    """No step waits for the device: on an accelerator (here the meta device) nothing is read back."""
    params = [p.detach().to("meta").requires_grad_() for p in make_params(torch.float32)]
    opt = make(params)
    for n in range(12):
        opt.zero_grad()
        loss_fn(params, n).backward()
        with SyncCounter(only_off_cpu=True) as counter:
            opt.step()
        assert counter.syncs == 0


def test_distance_to_anchor_reads_one_value_for_all_tensors():
    params = make_params(torch.float32) + [p.detach().clone().requires_grad_() for p in make_params(torch.float32)]
    opt = TRAdam(params, lr=0.01, inner_steps=4)
    for n in range(3):
        opt.zero_grad()
        (loss_fn(params[:4], n) + loss_fn(params[4:], n)).backward()
        opt.step()
    with SyncCounter() as counter:
        distance = opt.distance_to_anchor()
    assert counter.syncs == 1
    expected = sum(float((p.detach().double() - opt.state[p]["anchor"].double()).pow(2).sum()) for p in params)
    assert distance == pytest.approx(expected ** 0.5, rel=1e-6)


# ----------------------------------------------------------------------------- the multi-tensor path
FOREACH_CASES = list(itertools.product(["paper", "reference"], [0.0, 0.01], [torch.float32, torch.bfloat16]))


def run_mixed(params, opt, steps=STEPS):
    for n in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(n, 0.01)
        opt.zero_grad()
        mixed_loss(params, n).backward()
        opt.step()
    return [p.detach() for p in params]


def two_groups(params, weight_decay):
    """bf16 weights in one group, fp32 biases in another with its own prox."""
    return [{"params": [p for p in params if p.dtype == torch.bfloat16]},
            {"params": [p for p in params if p.dtype == torch.float32], "prox": 0.2, "weight_decay": weight_decay}]


@pytest.mark.parametrize("prox_mode,weight_decay,dtype", FOREACH_CASES)
def test_multi_tensor_path_follows_the_plain_trajectory(prox_mode, weight_decay, dtype):
    """foreach=True with the fused kernel equals the per-tensor fused path bit for bit (same kernel, same
    d); foreach=True without it equals the plain path bit for bit in fp32 (torch's CPU multi-tensor ops
    round scalar factors of bf16 tensors differently); both follow the plain trajectory. Chunks of 7
    elements cut every tensor across kernel calls."""
    def make(foreach, fused):
        params = mixed_precision_params() if dtype == torch.bfloat16 else make_params(torch.float32)
        opt = TRAdam(two_groups(params, weight_decay) if dtype == torch.bfloat16 else params, lr=0.01,
                     weight_decay=weight_decay, prox_mode=prox_mode, foreach=foreach, fused=fused, chunk_size=7)
        return run_mixed(params, opt)

    multi_fused, per_tensor_fused = make(True, True), make(False, True)
    multi_plain, plain = make(True, False), make(False, False)
    assert_close(multi_fused, per_tensor_fused, rtol=0, atol=0)
    assert_same_trajectory(multi_plain, plain)
    assert_same_trajectory(multi_fused, plain, fp32_tol=1e-5)


def assert_same_trajectory(actual, expected, fp32_tol=0.0):
    """Bit for bit (or within ``fp32_tol``) for an fp32 model; within bf16 rounding once bf16 weights
    are involved (their rounding reaches the fp32 biases through the loss)."""
    tol = 2e-2 if any(a.dtype == torch.bfloat16 for a in actual) else fp32_tol
    assert_close(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("prox_mode,weight_decay,dtype", [case for case in FOREACH_CASES if case[1] != 0])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_trsgd_multi_tensor_path_follows_the_plain_trajectory(prox_mode, weight_decay, dtype, momentum, nesterov):
    def make(foreach, fused):
        params = mixed_precision_params() if dtype == torch.bfloat16 else make_params(torch.float32)
        opt = TRSGD(two_groups(params, weight_decay) if dtype == torch.bfloat16 else params, lr=0.05,
                    momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, prox_mode=prox_mode,
                    foreach=foreach, fused=fused, chunk_size=7)
        return run_mixed(params, opt)

    plain = make(False, False)
    assert_same_trajectory(make(True, False), plain)
    assert_same_trajectory(make(True, True), plain, fp32_tol=1e-5)


def test_multi_tensor_path_matches_the_reference_in_float64():
    for prox_mode in ("paper", "reference"):
        params = make_params()
        ref = ReferenceTR(params, "adam", 0.01, 0.1, 10, True, prox_mode, weight_decay=0.01)
        opt = TRAdam(params, lr=0.01, weight_decay=0.01, prox_mode=prox_mode, foreach=True, chunk_size=11)
        assert_close(run_optimizer(params, opt, 0.01), run_reference(ref))


@pytest.mark.parametrize("name", ["tradam", "trsgd"])
def test_multi_tensor_resume_in_the_middle_of_an_inner_round(name):
    make = {"tradam": lambda p: TRAdam(p, lr=0.01, foreach=True, chunk_size=9),
            "trsgd": lambda p: TRSGD(p, lr=0.05, momentum=0.9, foreach=True, chunk_size=9)}[name]
    whole = make_params()
    run_optimizer(whole, make(whole), 0.01, steps=20)
    first = make_params()
    opt = make(first)
    run_optimizer(first, opt, 0.01, steps=13)
    resumed = [p.detach().clone().requires_grad_() for p in first]
    opt_resumed = make(resumed)
    opt_resumed.load_state_dict(opt.state_dict())
    run_optimizer(resumed, opt_resumed, 0.01, steps=7, start=13)
    assert_close(resumed, whole, rtol=0, atol=0)


def test_foreach_defaults_to_cuda_only():
    params = make_params(torch.float32)
    assert TRAdam(params).param_groups[0]["foreach"] is None
    assert TRAdam._multi_tensor_default(torch.device("cuda", 0)) and not TRAdam._multi_tensor_default(
        torch.device("cpu"))


# ----------------------------------------------------------------------------- launches and memory of one step
class OpCounter(TorchDispatchMode):
    """Records the non-view aten calls and the peak bytes held by tensors created while it is active.

    The profiler's markers around every ``Optimizer.step`` (``_record_function_*``) launch nothing
    and are left out."""

    def __init__(self):
        super().__init__()
        self.calls, self.live, self.peak = [], 0, 0

    def _track(self, tensor):
        size = tensor.untyped_storage().nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._release, size)

    def _release(self, size):
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and not func.__name__.startswith("_record_function"):
            self.calls.append(func.__name__)
            if func._schema.is_mutable is False and not func.__name__.startswith("_local_scalar"):
                for t in out if isinstance(out, (list, tuple)) else [out]:
                    if isinstance(t, torch.Tensor):
                        self._track(t)
        return out


@pytest.fixture(scope="module")
def pix2pix_shapes():
    """Shapes of the unet_256 + basic D parameters (57.2 M), read from networks built on the meta device."""
    from gan.networks import build_discriminator, build_generator
    with torch.device("meta"):
        nets = [build_generator("unet_256"), build_discriminator("basic")]
    return [p.shape for net in nets for p in net.parameters()]


@pytest.mark.parametrize("make", [lambda p: TRAdam(p, lr=2e-4, betas=(0.5, 0.999), foreach=True),
                                  lambda p: TRSGD(p, lr=2e-4, momentum=0.9, foreach=True)], ids=["tradam", "trsgd"])
def test_multi_tensor_step_launches_and_memory_on_pix2pix(pix2pix_shapes, make):
    """One step over all of G's and D's parameters: at most 10 non-view aten calls when no anchor is
    taken (each one multi-tensor launch on CUDA), and no more transient memory than 64 MB of scratch."""
    params = [torch.zeros(shape, requires_grad=True) for shape in pix2pix_shapes]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    opt = make(params)
    with OpCounter() as first:
        opt.step()  # anchors taken, state created
    with OpCounter() as second:
        opt.step()
    state_bytes = sum(t.untyped_storage().nbytes() for s in opt.state.values() for t in s.values()
                      if torch.is_tensor(t) and t.dim() > 0)
    print(f"\n{len(params)} tensors, {sum(p.numel() for p in params) / 1e6:.1f} M parameters; step without anchor "
          f"refresh: {len(second.calls)} aten calls {sorted(set(second.calls))}, peak transient "
          f"{second.peak / 1e6:.1f} MB; first step: peak {first.peak / 1e6:.1f} MB over {state_bytes / 1e6:.1f} MB "
          f"of state")
    assert len(second.calls) <= 10
    assert second.peak <= 64e6
    assert first.peak <= state_bytes + 64e6 + 1e6  # + the step counters


@pytest.mark.parametrize("make", [lambda p: TRAdam(p, lr=0.01, foreach=True, chunk_size=16),
                                  lambda p: TRAdam(p, lr=0.01, foreach=False, chunk_size=16),
                                  lambda p: TRSGD(p, lr=0.05, momentum=0.9, foreach=True, chunk_size=16)],
                         ids=["tradam_multi_tensor", "tradam_per_tensor", "trsgd_multi_tensor"])
def test_a_model_moved_to_channels_last_mid_run_keeps_its_trajectory(make):
    """train.py --channels-last --resume converts the model after its optimizer state was loaded: the
    anchor and moments, still contiguous, must keep pairing with the right weights."""
    torch.manual_seed(0)
    conv_a, conv_b = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3)
    conv_b.load_state_dict(conv_a.state_dict())
    opt_a, opt_b = make(list(conv_a.parameters())), make(list(conv_b.parameters()))
    for n in range(12):
        if n == 5:
            conv_b.to(memory_format=torch.channels_last)
            assert conv_b.weight.is_contiguous(memory_format=torch.channels_last)
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(n))
        for conv, opt in ((conv_a, opt_a), (conv_b, opt_b)):
            opt.zero_grad()
            conv(x).pow(2).mean().backward()
            opt.step()
    assert_close(list(conv_b.parameters()), list(conv_a.parameters()), rtol=1e-5, atol=1e-6)
