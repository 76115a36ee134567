"""The learning-rate schedule of pix2pix: constant for ``n_epochs``, then a linear decay over ``n_epochs_decay``."""
from __future__ import annotations

from torch.optim.lr_scheduler import LambdaLR


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Multiplier of the initial lr in (0-based) ``epoch``: 1 for the first n_epochs, then linear decay.

    factor = 1 − max(0, epoch + 1 − n_epochs) / (n_epochs_decay + 1), so the last epoch trains at
    lr0/(n_epochs_decay + 1) rather than at 0 (the reference trainer spends its last epoch at lr 0).
    """
    return 1.0 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)


def lr_schedulers(optimizers, n_epochs: int, n_epochs_decay: int) -> tuple[LambdaLR, ...]:
    """One scheduler per optimizer: lr0 · lr_factor(epoch), stepped once per epoch."""
    def schedule(epoch: int) -> float:
        return lr_factor(epoch, n_epochs, n_epochs_decay)
    return tuple(LambdaLR(optimizer, schedule) for optimizer in optimizers)


def set_initial_lr(scheduler: LambdaLR, lr: float) -> None:
    """Continue with ``lr`` as the initial learning rate of the scheduler's optimizer (--allow-change lr):
    the schedule's factor at the current epoch is kept, TR's lr0 becomes ``lr``."""
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in scheduler.optimizer.param_groups:
        group["initial_lr"], group["lr"] = lr, lr * factor
        if "tr_lr0" in group:
            group["tr_lr0"] = lr
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
