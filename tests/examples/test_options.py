"""The run's settings (drloc_keras.options): defined once, read by the command line and the
README, importable without Keras."""

import os
import re
import subprocess
import sys

import pytest

from drloc_keras import catalog, options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_options_and_catalog_import_without_keras_or_a_framework():
    code = ("import sys, drloc_keras.options, drloc_keras.catalog; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _readme_flag_table():
    """`{flag: default as written}` from the README's flag table (rows naming several flags
    list their defaults in the same order)."""
    text = open(os.path.join(ROOT, "README.md")).read()
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`--"):
            continue
        flags = re.findall(r"`(--[a-z0-9-]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(",")]
        if len(flags) == len(defaults):
            table.update(zip(flags, defaults))
    return table


def _written(value):
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value == "none":
        return "none"
    return str(value)


def test_the_readme_flag_table_states_the_defaults_of_drloc_keras_options():
    table = _readme_flag_table()
    assert len(table) >= 20, sorted(table)
    computed = {"--lam", "--flip", "--output", "--epoch-images", "--data-dir"}  # worked out per run
    for flag, written in table.items():
        name = options.dest(flag)
        assert name in options.DEFAULTS, flag
        if flag in computed:
            continue
        default = options.DEFAULTS[name]
        if isinstance(default, float) and written.replace(".", "").replace("e-", "").isdigit():
            assert float(written) == default, (flag, written, default)
        else:
            assert written == _written(default), (flag, written, default)


def test_parse_fills_in_the_defaults_and_names_the_given_flags():
    args, given = options.parse(["--backbone", "swin", "--epochs", "3"])
    assert given == {"backbone", "epochs"}
    assert args.lam == catalog.default_lambda("swin") and args.batch_size == options.DEFAULTS["batch_size"]
    assert args.output == os.path.join("runs", "cifar10-swin-lam0.5")
    assert args.flip is True and options.parse(["--dataset", "synthetic"])[0].flip is False


def test_an_old_config_gets_the_settings_it_trained_with():
    old = {"backbone": "cvt", "lam": 0.1, "dataset": "synthetic"}
    settings = options.namespace(old)
    for name, value in options.LEGACY_DEFAULTS.items():
        assert getattr(settings, name) == value, name
    assert settings.batch_size == options.DEFAULTS["batch_size"]
    assert set(options.LEGACY_DEFAULTS) <= set(options.DEFAULTS)


@pytest.mark.parametrize("argv,message", [
    (["--val-fraction", "1"], "--val-fraction must be in [0, 1)"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--dataset", "svhn"], "--dataset svhn needs --data-dir"),
    (["--resume", "--eval-only"], "exclude each other"),
    (["--clip-grad", "-1"], "--clip-grad must be a number >= 0 (0: no clipping); found -1.0"),
    (["--clip-grad", "nan"], "--clip-grad must be a number >= 0"),
    (["--clip-grad", "inf"], "--clip-grad must be a number >= 0"),
    (["--min-lr", "1e-3"], "--min-lr must be in [0, --lr (0.0005)]"),
    (["--warmup-lr=-1e-7"], "--warmup-lr must be in [0, --lr (0.0005)]"),
    (["--cutmix", "-1"], "--cutmix must be >= 0 (CutMix's Beta alpha"),
    (["--mixup", "-0.5"], "--mixup must be >= 0 (MixUp's Beta alpha"),
    (["--randaugment", "rand-m9"], "add '-inc1'"),
    (["--randaugment", "rand-m9-inc1-z2"], "unknown section 'z2'"),
])
def test_values_out_of_range_are_refused_with_the_flag_and_what_is_allowed(argv, message):
    with pytest.raises(options.UsageError, match=re.escape(message)):
        options.parse(argv)


def test_a_clip_grad_that_is_not_a_number_ends_in_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit:
        options.parse(["--clip-grad", "five"])
    assert exit.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--clip-grad" in errors[0] and "'five'" in errors[0], errors


@pytest.mark.parametrize("argv", [["--cutmix", "2"], ["--mixup", "0.2", "--cutmix", "0"],
                                  ["--randaugment", "rand-m7-n3-mstd1-inc1"], ["--no-randaugment", "--crop", "none"]])
def test_what_the_flags_accept_the_augmentation_accepts(argv):
    """The program's checks are the augmentation's: a value the flags take builds the layer
    (`--cutmix 2` once passed the flags and failed inside Keras with a traceback)."""
    from drloc_keras import recipe

    args, _ = options.parse(argv)
    layer = recipe.augmentation(args)
    assert layer.cutmix == args.cutmix and layer.mixup == args.mixup
    assert layer.randaugment == args.randaugment
