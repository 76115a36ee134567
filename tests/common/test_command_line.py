"""The one way every command applies --preset: defaults < preset < command line, and what was given."""
import argparse

from common.command_line import option_parser, parse_with_presets

PRESETS = {"small": {"size": 8, "items": ["a=1"], "hidden": "from the preset"}, "big": {"size": 64}}


def parser() -> argparse.ArgumentParser:
    p = option_parser("test")
    p.add_argument("--preset", choices=sorted(PRESETS), default="big")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--items", action="append", default=[])
    p.add_argument("--flag", action="store_true")
    return p


def test_defaults_then_the_preset_then_the_command_line():
    options, given = parse_with_presets(parser(), [], PRESETS)
    assert (options.preset, options.size, options.rate, options.items, given) == ("big", 64, 0.5, [], set())
    options, given = parse_with_presets(parser(), ["--preset", "small", "--rate", "0.1"], PRESETS)
    assert (options.size, options.rate, options.items, options.hidden) == (8, 0.1, ["a=1"], "from the preset")
    assert given == {"preset", "rate", "size", "items", "hidden"}  # a given preset gives its values
    options, given = parse_with_presets(parser(), ["--preset", "small", "--size", "16", "--flag"], PRESETS)
    assert (options.size, options.flag) == (16, True) and {"size", "flag"} <= given


def test_an_appending_option_adds_to_the_presets_list_and_presets_may_depend_on_the_command_line():
    options, given = parse_with_presets(parser(), ["--preset", "small", "--items", "a=2"], PRESETS)
    assert options.items == ["a=1", "a=2"] and "items" in given  # the later item wins where it is read
    options, _ = parse_with_presets(parser(), ["--items", "b=1"], PRESETS)
    assert options.items == ["b=1"]
    by_size = lambda given: {"big": {"rate": 1.0 if given.get("size") == 1 else 2.0}}  # noqa: E731
    assert parse_with_presets(parser(), ["--size", "1"], by_size)[0].rate == 1.0
    assert parse_with_presets(parser(), [], by_size)[0].rate == 2.0
