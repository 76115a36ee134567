"""What every TR optimizer shares (tralgo/_base.py): the contract's details, resume, anchors, argument
checks, devices, host syncs, launches and memory of one step.
"""
import io
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.tralgo.reference import assert_close, loss_fn, make_params, run_optimizer
from tralgo import TRAdam, TRSGD, TrajectoryRegularizer


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


def four_optimizers(params):
    return {"Adam": lambda: torch.optim.Adam(params, lr=0.01),
            "SGD": lambda: torch.optim.SGD(params, lr=0.01, momentum=0.9),
            "TRAdam": lambda: TRAdam(params, lr=0.01, inner_steps=4),
            "TRSGD": lambda: TRSGD(params, lr=0.01, momentum=0.9, inner_steps=4)}


FIRST_MISSING = {("TRAdam", "Adam"): "tr_step", ("TRAdam", "SGD"): "tr_step", ("TRAdam", "TRSGD"): "betas",
                 ("TRSGD", "Adam"): "tr_step", ("TRSGD", "SGD"): "tr_step", ("TRSGD", "TRAdam"): "momentum"}


def params_with_an_unused_one():
    """The tiny problem's parameters and one that never gets a gradient (it has no state)."""
    return make_params() + [torch.zeros(2, dtype=torch.float64, requires_grad=True)]


def saved_state(name: str, steps: int) -> dict:
    params = params_with_an_unused_one()
    opt = four_optimizers(params)[name]()
    run_optimizer(params[:4], opt, 0.01, steps=steps)
    return opt.state_dict()


def assert_refused_and_unchanged(name: str, state_dict: dict, match: str) -> None:
    """Loading ``state_dict`` into a ``name`` that has taken 6 steps raises ValueError matching ``match``
    and leaves it to continue exactly as its twin that never saw the state dict."""
    params, twin_params = params_with_an_unused_one(), params_with_an_unused_one()
    opt, twin = four_optimizers(params)[name](), four_optimizers(twin_params)[name]()
    run_optimizer(params[:4], opt, 0.01, steps=6)
    run_optimizer(twin_params[:4], twin, 0.01, steps=6)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state_dict)
    assert opt.param_groups[0].keys() == twin.param_groups[0].keys()
    run_optimizer(params[:4], opt, 0.01, steps=7, start=6)
    run_optimizer(twin_params[:4], twin, 0.01, steps=7, start=6)
    assert_close(params, twin_params, rtol=0, atol=0)
    assert opt.distance_to_anchor() == twin.distance_to_anchor()


@pytest.mark.parametrize("steps", [0, 3], ids=["before_any_step", "after_3_steps"])
@pytest.mark.parametrize("source", ["Adam", "SGD", "TRAdam", "TRSGD"])
@pytest.mark.parametrize("target", ["TRAdam", "TRSGD"])
def test_load_state_dict_takes_its_own_and_refuses_another_optimizers(target, source, steps):
    """Its own state dict (one parameter never had a gradient) loads and steps; a foreign one is refused
    with a ValueError naming the missing group key, before anything changed."""
    state_dict = saved_state(source, steps)
    if source == target:
        params = params_with_an_unused_one()
        opt = four_optimizers(params)[target]()
        opt.load_state_dict(state_dict)
        run_optimizer(params[:4], opt, 0.01, steps=2, start=steps)
        assert params[4] not in opt.state
        return
    missing = FIRST_MISSING[target, source]
    assert_refused_and_unchanged(
        target, state_dict, rf"^{target}\.load_state_dict: param group 0 has no (.*, )?'{missing}'.*another optimizer")


@pytest.mark.parametrize("target,entry", [("TRAdam", "anchor"), ("TRAdam", "anchor_round"), ("TRAdam", "step"),
                                          ("TRAdam", "exp_avg"), ("TRAdam", "exp_avg_sq"), ("TRSGD", "anchor")])
def test_load_state_dict_names_the_missing_entry_of_a_parameters_state(target, entry):
    state_dict = saved_state(target, 3)
    del state_dict["state"][2][entry]
    assert_refused_and_unchanged(target, state_dict, rf"parameter 2 \(param group 0\) has .* but no '{entry}'")


def test_load_state_dict_refuses_adams_state_under_tradams_groups():
    """A parameter with 'step' but no 'anchor': the group keys alone do not make a state dict TRAdam's."""
    state_dict = saved_state("Adam", 3)
    state_dict["param_groups"] = saved_state("TRAdam", 3)["param_groups"]
    assert_refused_and_unchanged("TRAdam", state_dict,
                                 r"parameter 0 \(param group 0\) has 'step', .* but no 'anchor', 'anchor_round'")


def test_wrapper_load_state_dict_refuses_a_state_dict_of_another_optimizer():
    params = make_params()
    opt = TrajectoryRegularizer(torch.optim.Adam(params, lr=0.01))
    with pytest.raises(ValueError, match="TrajectoryRegularizer.load_state_dict: no 'base', 'regularizer'"):
        opt.load_state_dict(saved_state("TRAdam", 3))
    adam = torch.optim.Adam(params, lr=0.01).state_dict()
    with pytest.raises(ValueError, match=r"TrajectoryRegularizer.load_state_dict: param group 0 has no 'tr_step'"):
        opt.load_state_dict({"base": adam, "regularizer": adam})


@pytest.mark.parametrize("foreach", [None, False, True])
@pytest.mark.parametrize("fused", [None, False, True])
@pytest.mark.parametrize("ours,torchs", [(TRAdam, torch.optim.Adam), (TRSGD, torch.optim.SGD)], ids=["adam", "sgd"])
def test_fused_and_foreach_are_refused_together_as_torch_refuses_them(ours, torchs, fused, foreach):
    """Each combination is accepted by both, or refused by both with the same exception and message."""
    def outcome(cls):
        try:
            cls(make_params(torch.float32), lr=0.01, fused=fused, foreach=foreach)
        except Exception as error:  # compared, not handled
            return type(error), str(error)
        return None

    assert outcome(ours) == outcome(torchs)
