"""What every package and command line shares, with no model, dataset or scoring knowledge.

Modules:
  command_line  InputError (bad input: one line, exit status 2), run_main (a command line's errors ->
                one stderr line and its exit status), option_parser and flag (an option's spelling)
  device        the --device option: checked, then resolved to a torch.device
  files         atomic writes (bytes, text, JSON, PNG, figures) and file digests
  checkpoint    torch checkpoints: atomic save, weights-only load, finiteness of a state
  run_folder    a training run's folder: one writer at a time, an old run kept until the new one saved
  interrupts    SIGINT/SIGTERM as a stop request honoured at a safe point
  progress      progress bars on a terminal, plain periodic lines in logs
  amp           --amp: bf16 autocast where the device has bf16
  rng           seeding from one --seed; capturing and restoring a process's generators
  distributed   what training under torchrun needs beyond DDP (decisions all ranks take together)
"""
