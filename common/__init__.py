"""What every package and command line shares, with no model, dataset or scoring knowledge.

Modules:
  command_line  InputError (bad input: one line, exit status 2) and run_main (a command line's
                errors -> one stderr line and its exit status)
  device        the --device option: checked, then resolved to a torch.device
  files         atomic writes (bytes, text, JSON, PNG, figures) and reading images as uint8 arrays
  checkpoint    torch checkpoints: atomic save, weights-only load, finiteness of a state
  run_folder    a training run's folder: one writer at a time, an old run kept until the new one saved
  interrupts    SIGINT/SIGTERM as a stop request honoured at a safe point
  progress      progress bars on a terminal, plain periodic lines in logs
"""
