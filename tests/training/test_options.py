"""train.py's options as a TrainOptions: one field per option of the parser, the record options.json holds."""
import dataclasses

from training.options import PRESETS, TrainOptions, build_parser, parse_args


def test_train_options_has_a_field_for_every_option_and_no_other():
    dests = [action.dest for action in build_parser()._actions if action.dest != "help"]
    fields = [field.name for field in dataclasses.fields(TrainOptions) if field.name not in ("lr_changes", "given")]
    assert fields == dests  # the same order too: checkpoints and options.json list them so


def test_the_record_is_every_option_and_lr_changes_only_once_there_is_one():
    options = parse_args(["--preset", "demo", "--optim", "tradam", "--seed", "3"])
    record = options.record()
    assert set(record) == {f.name for f in dataclasses.fields(TrainOptions)} - {"lr_changes", "given"}
    assert (record["ngf"], record["name"], record["optim_d"]) == (PRESETS["demo"]["ngf"], "demo_tradam_seed3", "tradam")
    assert options.given == {"preset", "optim", "seed", *PRESETS["demo"]}
    changed = TrainOptions.from_values({**record, "lr_changes": [[10, 2e-4, 2e-5]], "retired_option": 1})
    assert changed.record()["lr_changes"] == [[10, 2e-4, 2e-5]] and "retired_option" not in changed.record()
