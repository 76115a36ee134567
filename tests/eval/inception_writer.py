"""A weights file in torch-fidelity's InceptionV3 layout filled with random values, for tests that must
not download the real one."""
import pytest
import torch


def write_random_inception(path, seed: int = 0):
    """A state_dict of torch-fidelity's FeatureExtractorInceptionV3 with random values (batch-norm
    statistics included), built without its download."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(seed)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    state = net.state_dict()
    g = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = torch.randn(value.shape, generator=g) * 0.1
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
    torch.save(state, path)
    return path
