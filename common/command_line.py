"""The one way a command line reports failure: one line on stderr and an exit status.

    def main(argv=None) -> int:
        args = parse_args(argv)
        return run_main(lambda: work(args))

Exit statuses: 0 done; 2 bad input (:class:`InputError` or one of its subclasses, or an ``OSError``
such as a folder that cannot be written, reported with its path); 1 a run that diverged
(``FloatingPointError``); 128 + N after signal N stopped the job at a safe point
(:class:`common.interrupts.Stopped`). Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Mapping

from common.interrupts import Stopped


class InputError(ValueError):
    """Bad input (an option, a file, a folder); the message is one line naming it and the problem."""


def run_main(work: Callable[[], str | None]) -> int:
    """Run ``work``; print the line it returns (if any) on success; return the exit status."""
    try:
        done = work()
    except InputError as error:
        return _fail(str(error), 2)
    except OSError as error:  # a file or folder that cannot be read or written
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"{where}{error.strerror or error}", 2)
    except FloatingPointError as error:
        return _fail(str(error), 1)
    except Stopped as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    if done:
        print(done, flush=True)
    return 0


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def option_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser every command line starts from: ``--help`` shows each option's default."""
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


Presets = Mapping[str, Mapping[str, object]]  # preset name -> {option name (dest): value}


def parse_with_presets(parser: argparse.ArgumentParser, argv, presets: Presets | Callable[[dict], Presets]
                       ) -> tuple[argparse.Namespace, set[str]]:
    """Every command's one way to apply ``--preset NAME``: defaults < the preset's values < the command line.

    ``presets`` maps a preset name to option values (by ``dest``; a value may also set a name that has no
    option); it may be a function of the options given on the command line when the presets depend on
    one of them (e.g. a segmenter's architecture). An option that adds to a list (``action="append"``)
    adds to the preset's list, as it adds to its default. Returns the options and the names the command
    line set, where a ``--preset`` given on the command line counts as setting every value it holds.
    """
    # argparse fills in a default only where the namespace has no value yet; an action that adds to a value
    # (append, count) starts from None instead
    unset = object()
    adding = (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction)
    starts = {action.dest: None if isinstance(action, adding) else unset
              for action in parser._actions if action.dest != "help"}
    given = vars(parser.parse_args(argv, namespace=argparse.Namespace(**starts)))
    given = {key: value for key, value in given.items() if value is not starts[key]}
    dests = set(starts)
    defaults = {dest: parser.get_default(dest) for dest in dests if parser.get_default(dest) is not argparse.SUPPRESS}
    table = presets(given) if callable(presets) else presets
    name = given.get("preset", defaults.get("preset"))
    values = dict(table.get(name, {})) if name is not None else {}
    options = {**defaults, **values, **given}
    for action in parser._actions:
        if isinstance(action, argparse._AppendAction) and action.dest in given:
            options[action.dest] = list(values.get(action.dest, defaults.get(action.dest)) or []) + given[action.dest]
    return argparse.Namespace(**options), set(given) | (set(values) if "preset" in given else set())


def flag(name: str) -> str:
    """The command-line spelling of option ``name`` (``n_layers_D`` -> ``--n-layers-D``)."""
    return "--" + name.replace("_", "-")


class _FormerSpelling(argparse.Action):
    """A hidden former spelling of an option: notes the new one on stderr, then acts as it."""

    def __init__(self, option_strings, dest, current: argparse.Action, **kwargs):
        super().__init__(option_strings, dest, nargs=current.nargs, type=current.type, choices=current.choices,
                         default=argparse.SUPPRESS, help=argparse.SUPPRESS, metavar=current.metavar)
        self.current = current

    def __call__(self, parser, namespace, values, option_string=None):
        new = self.current.option_strings[0]
        print(f"note: {option_string} is now spelled {new}", file=sys.stderr)
        self.current(parser, namespace, values, new)


def add_former_spelling(parser: argparse.ArgumentParser, current: argparse.Action, former: str) -> None:
    """Accept ``former`` (hidden from --help) for the option ``current`` (what ``add_argument`` returned),
    with a one-line note naming the current spelling."""
    parser.add_argument(former, action=_FormerSpelling, dest=current.dest, current=current)
