"""The run files' one home: what latest.pt and epoch files hold, and what is read back without tensors."""
import pytest
import torch

from common.checkpoint import CheckpointError
from gan import run_files
from gan.networks import build_generator


def model_state() -> dict:
    net = build_generator("unet_32", ngf=4)
    return {"netG_config": {"name": "unet_32", "ngf": 4}, "model_config": {}, "netG": net.state_dict(),
            "netD": {}, "optimizer_G": {"state": {}}, "optimizer_D": {"state": {}}}


def test_latest_and_epoch_files_hold_their_keys_and_are_summarised_without_their_tensors(tmp_path):
    state = model_state()
    latest = run_files.latest_state(state, options={"lr": 2e-4}, epoch=2, epoch_step=0, step=12, schedulers=({}, {}),
                                    rng_ranks=[{}], world_size=1, finished=True, data_fingerprint={})
    epoch = run_files.epoch_state(state, options={"lr": 2e-4}, epoch=2, step=12, world_size=1)
    assert set(epoch) == {*run_files.NETWORK_KEYS, "format_version", "options", "epoch", "step", "world_size",
                          "weights_only"}
    assert set(latest) == {*state, *run_files.SCHEDULER_KEYS, *run_files.POSITION_FIELDS, "format_version",
                           "options", "rng", "world_size", "finished", "data_fingerprint"}
    run_files.write(run_files.latest_path(tmp_path), latest)
    run_files.write(run_files.epoch_path(tmp_path, 2), epoch)
    torch.save(state["netG"], tmp_path / "latest_net_G.pth")
    assert run_files.summarize(tmp_path / "latest.pt") == run_files.RunFileSummary(True, "unet_32", True, 2, 12)
    assert run_files.summarize(tmp_path / "epoch_002.pt") == run_files.RunFileSummary(True, "unet_32", None, 2, 12)
    assert run_files.summarize(tmp_path / "latest_net_G.pth") == run_files.RunFileSummary(False, None, None, None, None)
    assert run_files.is_finished(tmp_path / "latest.pt") and not run_files.is_finished(tmp_path / "none.pt")
    assert run_files.epoch_files(tmp_path) == [(2, tmp_path / "epoch_002.pt")]
    config, weights = run_files.generator_entry(tmp_path / "epoch_002.pt")
    assert config["name"] == "unet_32" and weights.keys() == state["netG"].keys()
    assert run_files.generator_entry(tmp_path / "latest_net_G.pth")[0] is None
    (tmp_path / "cut.pt").write_bytes((tmp_path / "latest.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.pt: cannot be read"):
        run_files.summarize(tmp_path / "cut.pt")
