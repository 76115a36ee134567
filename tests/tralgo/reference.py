"""The tiny problem the optimizer tests run on, and TRAlgo written straight from its contract.

The reference below is written from the four rules of the contract (anchor at k = 0; direction
d = g + wd·w + c·(w − w_t); base step with lr/(k+1); grads and lr untouched), one parameter at a
time with plain tensor arithmetic, independently of tralgo/.
"""
import itertools

import torch

STEPS = 35  # 3.5 inner rounds of S = 10


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


def mixed_precision_params():
    """The tiny problem with its weights in bf16 and its biases in fp32 (one parameter group)."""
    params = make_params(torch.float32)
    return [p.detach().to(torch.bfloat16 if p.dim() == 2 else torch.float32).requires_grad_() for p in params]


def mixed_loss(params, n):
    return loss_fn([p.float() for p in params], n)


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


def assert_same_trajectory(actual, expected, fp32_tol=0.0):
    """Bit for bit (or within ``fp32_tol``) for an fp32 model; within bf16 rounding once bf16 weights
    are involved (their rounding reaches the fp32 biases through the loss)."""
    tol = 2e-2 if any(a.dtype == torch.bfloat16 for a in actual) else fp32_tol
    assert_close(actual, expected, rtol=tol, atol=tol)
