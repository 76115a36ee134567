"""One process of bench/gpu.py's torchrun measurement: ``train.py`` itself, timed and its collectives counted.

    torchrun --nproc_per_node N bench/torchrun_steps.py OUT.json <train.py options>

Runs train.py's training (train.main) with every torch.distributed collective that Python code calls
counted (the project's and DDP's buffer broadcasts; DDP's gradient all-reduce runs in its C++ reducer and
is not), and writes, on rank 0, the wall-clock time and the collective count at the start of every step
(the device synchronised at the first and the last) to OUT.json.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402

COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_object", "all_gather_into_tensor", "barrier",
               "reduce", "gather", "scatter", "reduce_scatter_tensor", "broadcast_object_list", "_broadcast_coalesced")


def main(out: str, argv: list[str]) -> int:
    calls, starts = [0], []
    for name in COLLECTIVES:
        def counted(*args, _real=getattr(dist, name), **kwargs):
            calls[0] += 1
            return _real(*args, **kwargs)
        setattr(dist, name, counted)
    real_step = train.Pix2Pix.training_step

    def timed_step(self, real_a, *args, **kwargs):
        if not starts and real_a.is_cuda:
            torch.cuda.synchronize(real_a.device)
        starts.append((time.perf_counter(), calls[0]))
        return real_step(self, real_a, *args, **kwargs)

    train.Pix2Pix.training_step = timed_step
    code = train.main(argv)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    starts.append((time.perf_counter(), calls[0]))
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps({"times": [t for t, _ in starts], "collectives": [c for _, c in starts]}))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
