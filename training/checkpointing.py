"""Saving a run as it trains: ``latest.pt`` (the complete state, checked finite on every rank first) and the
``epoch_<NNN>.pt`` / ``full_<NNN>.pt`` files of an epoch's end. What each file holds is
:mod:`gan.run_files`'s."""
from __future__ import annotations

from pathlib import Path

from common import rng
from common.checkpoint import nonfinite_entries
from common.distributed import gather, is_main_process
from common.interrupts import StopSignals
from gan import run_files
from gan.pix2pix import Pix2Pix
from training.run import Run, agree


def save_checkpoint(path: Path, losses: dict, run: Run, pix2pix: Pix2Pix, schedulers, signals: StopSignals) -> None:
    """Write the complete training state to ``path`` (the main process; a collective), after checking
    that the last ``losses`` and the whole state are finite on every rank."""
    state = pix2pix.state_dict()
    bad = nonfinite_entries(state)  # weights, batch-norm buffers, optimizer moments: one sync
    agree(run, signals, losses, bad)  # every rank stops, or none
    rng_states = gather(rng.capture(run.device))  # every rank's own generators
    if is_main_process():  # every rank knows what is on disk, for the same divergence message
        checkpoint = run_files.latest_state(
            state, options=run.options.record(), epoch=run.epoch, epoch_step=run.epoch_step, step=run.step,
            schedulers=tuple(scheduler.state_dict() for scheduler in schedulers), rng_ranks=rng_states,
            world_size=run.world_size, finished=path == run.latest and run.epoch >= run.total_epochs,
            data_fingerprint=run.data_fingerprint)
        with signals.saving(path):
            run_files.write(path, checkpoint)
        if path == run.latest:
            signals.safe_note = f"the last checkpoint is {run.latest} (step {run.step})"
        if not run.folder.committed and run.folder.commit() is not None:
            print(f"--overwrite: deleted the previous run at {run.folder.path}", flush=True)
    if path == run.latest:
        run.latest_step, run.latest_options = run.step, None


def save_snapshot(run: Run, pix2pix: Pix2Pix, signals: StopSignals) -> None:
    """epoch_<NNN>.pt of the epoch just ended (:func:`gan.run_files.epoch_state`), written by the main process
    right after latest.pt, whose save checked the same weights. With --keep-full K, latest.pt is also copied
    to full_<NNN>.pt, of which the newest K are kept."""
    if not is_main_process():
        return
    snapshot = run_files.epoch_state(pix2pix.state_dict(), options=run.options.record(), epoch=run.epoch,
                                     step=run.step, world_size=run.world_size)
    path = run_files.epoch_path(run.folder.path, run.epoch)
    with signals.saving(path):
        run_files.write(path, snapshot)
    if run.options.keep_full:
        run_files.keep_full_copy(run.latest, run_files.full_path(run.folder.path, run.epoch), run.options.keep_full)
