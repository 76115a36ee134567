"""The one optimizer registry: what it builds, and that its checkpoint keys are what each optimizer holds."""
import torch

from gan.optimizers import OPTIMIZERS, OptimConfig, build_optimizer, optimizer_label, optimizer_of_state


def test_each_registered_optimizer_holds_the_state_its_entry_says_and_is_told_apart_by_its_group():
    for name, spec in OPTIMIZERS.items():
        p = torch.nn.Parameter(torch.randn(3, 2))
        optimizer = build_optimizer([p], OptimConfig(name))
        (p ** 2).sum().backward()
        optimizer.step()
        state = optimizer.state_dict()
        assert tuple(state["state"][0]) == spec.state_keys, name
        assert optimizer_of_state(state["param_groups"][0]) == name
        assert optimizer_label(name.upper()) == spec.label
    assert optimizer_label("lamb") == "lamb" and optimizer_of_state({"lr": 1}) is None
