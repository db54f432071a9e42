"""Every TrainConfig field on `streamrec train` / `streamrec trainer` (and `python -m models.train.cli`),
generated from the dataclass, with the trainer's defaults from one place."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from models.towers.config import TOWERS
from models.train.cli import build_parser
from models.train.config import TRAINER_DEFAULTS, TrainConfig, trainer_config
from models.train.options import click_options, config_from_options, field_options
from tests.helpers import REPO

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
FLAGS = ["--" + name.replace("_", "-") for name in FIELDS]


def _command() -> click.Command:
    """A plain click command with the generated options that returns the TrainConfig it parsed."""

    def run(**values):
        return config_from_options(values, trainer_config())

    for decorate in click_options(defaults=trainer_config()):
        run = decorate(run)
    return click.command()(run)


def _parse(*args: str) -> TrainConfig:
    result = CliRunner().invoke(_command(), list(args), standalone_mode=False, catch_exceptions=False)
    return result.return_value


def test_every_field_is_an_option_of_its_kind():
    options = {o.name: o for o in field_options()}
    assert list(options) == FIELDS and [o.flag for o in options.values()] == FLAGS
    assert options["tower"].choices == TOWERS
    assert options["loss"].choices == ("sampled_softmax", "full_softmax", "bce")
    assert options["progress"].type is bool and options["lr"].type is float
    assert options["max_steps"].optional and options["max_steps"].type is int and options["max_steps"].default is None
    assert all(o.help for o in options.values()), [o.name for o in options.values() if not o.help]


def test_no_options_give_the_trainer_defaults():
    config = _parse()
    assert config == trainer_config()
    assert (config.loss, config.epochs, config.patience) == ("full_softmax", 30, 4)  # differ from TrainConfig's
    assert all(getattr(TrainConfig(), k) != v for k, v in TRAINER_DEFAULTS.items())


def test_parsed_options_map_to_the_config():
    config = _parse("--tower", "gru", "--dim", "16", "--loss", "bce", "--n-negatives", "3", "--lr", "0.01",
                    "--no-progress", "--max-steps", "5", "--num-threads", "none", "--windows", "last",
                    "--device", "cpu")
    assert config == trainer_config(tower="gru", dim=16, loss="bce", n_negatives=3, lr=0.01, progress=False,
                                    max_steps=5, num_threads=None, windows="last", device="cpu")


@pytest.mark.parametrize("args,needle", [(["--epochs", "0"], "epochs=0"), (["--tower", "lstm"], "lstm"),
                                         (["--dropout", "1.5"], "dropout=1.5"), (["--max-steps", "x"], "none")])
def test_bad_values_are_usage_errors(args, needle):
    result = CliRunner().invoke(_command(), args)
    assert result.exit_code == 2 and needle in result.output, result.output


def test_the_argparse_cli_reads_the_same_fields():
    args = build_parser().parse_args(["--tower", "cnn", "--max-steps", "none", "--no-progress"])
    assert config_from_options(vars(args)) == TrainConfig(tower="cnn", progress=False)  # library defaults there


def test_reading_the_options_loads_no_torch():
    code = ("import sys, models.train.options as o; o.click_options(); "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m == 'models.train.loop']; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("command,extra", [("train", []), ("trainer", ["--every", "--runs"])])
def test_streamrec_help_lists_every_field(command, extra):
    done = subprocess.run([sys.executable, "-m", "stream.cli", command, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for flag in [*FLAGS, "--no-progress", "--margin", "--publish", "--no-publish", "--warm-start", "--retrain",
                 *extra]:
        assert flag in done.stdout, flag
    assert "[default: full_softmax]" in done.stdout  # the trainer's default, not TrainConfig's
