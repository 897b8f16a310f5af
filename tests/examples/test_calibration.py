"""The calibration of a study's length (drloc_keras.calibration, examples/calibrate_steps.py):
the plateau rule on made-up curves, and one tiny real run trained, then lengthened."""

import csv
import json

import pytest

from drloc_keras import calibration
from tests.examples.test_small_data_study import PNG_MAGIC, TINY_ARGS


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rise_is_the_least_squares_rise_over_the_last_fifth():
    curve = [10.0] * 10 + [10.0 + 2 * i for i in range(1, 11)]  # 20 epochs, the last 10 rise 2 a epoch
    assert calibration.window(20) == (16, 20)  # epochs 16-20: a fifth, its first epoch included
    assert calibration.window(6) == (4, 6)     # at least 3 epochs
    assert calibration.rise(curve, 20) == pytest.approx(8.0)  # 4 epochs of 2 points
    assert calibration.level(curve, 20) == pytest.approx((22 + 24 + 26 + 28 + 30) / 5)  # epochs 16-20
    noisy = [50.0, 52.0, 48.0, 52.0, 48.0]
    assert calibration.window(5) == (3, 5)
    assert calibration.rise(noisy, 5) == pytest.approx(0.0)  # 48, 52, 48: no trend


def test_a_curve_still_rising_at_the_end_has_no_plateau():
    assert calibration.plateau_epoch([10.0 + 3 * i for i in range(30)]) is None


def test_the_plateau_is_the_first_epoch_where_the_rule_holds_and_the_rest_confirms_it():
    curve = [10.0 + 5 * i for i in range(10)] + [55.0] * 20  # rises to epoch 10, flat after
    plateau = calibration.plateau_epoch(curve)
    # At epoch 12 the window (epochs 10-12) is flat; at 11 it (9-11) still holds the last rise.
    assert plateau == 12
    assert calibration.rise(curve, plateau) < 1 <= calibration.rise(curve, plateau - 1)


def test_a_pause_before_the_accuracy_takes_off_is_not_the_plateau():
    curve = [10.0] * 8 + [10.0 + 4 * i for i in range(1, 13)] + [58.0] * 12
    assert calibration.rise(curve, 6) < 1  # the flat start alone would pass the rule
    assert calibration.plateau_epoch(curve) == 24  # epochs 20-24 flat at 58, and so are 25-32


def test_noise_around_a_level_does_not_hide_the_plateau_but_a_slow_climb_is_no_plateau():
    rng = __import__("random").Random(0)
    level = [min(80.0, 30.0 + 5 * i) for i in range(60)]  # 80 from epoch 11 on
    noisy = [v + rng.uniform(-1.5, 1.5) for v in level]
    plateau = calibration.plateau_epoch(noisy)
    assert plateau is not None and 11 <= plateau <= 20
    climbing = [60.0 + 0.25 * i for i in range(60)]  # 0.25 a epoch: < 1 a window early, not later
    assert calibration.plateau_epoch(climbing) is None


def test_a_fall_counts_as_a_plateau_and_a_plateau_at_the_very_end_is_not_yet_one():
    falling = [10.0 + 5 * i for i in range(10)] + [55.0 - i for i in range(15)]
    assert calibration.plateau_epoch(falling) == 12  # epochs 10-12: 55, 55, 54
    late = [10.0 + 5 * i for i in range(20)] + [105.0] * 6  # flat from epoch 20 to 26
    assert calibration.rise(late, 26) < 1 and calibration.rise(late, 24) < 1 <= calibration.rise(late, 23)
    assert calibration.plateau_epoch(late) is None  # 26 epochs < 1.25 x 24
    assert calibration.plateau_epoch(late + [105.0] * 4) == 24


def test_tolerance_must_be_positive():
    with pytest.raises(ValueError, match="tolerance.*> 0"):
        calibration.plateau_epoch([1.0, 2.0, 3.0], tolerance=0)


def test_study_steps_is_the_largest_plateau_and_none_while_a_run_has_none():
    rows = [{"backbone": "vit", "plateau_steps": 300}, {"backbone": "vit", "plateau_steps": 500},
            {"backbone": "cvt", "plateau_steps": 200}, {"backbone": "cvt", "plateau_steps": ""}]
    assert calibration.study_steps(rows) == {"vit": 500, "cvt": None}


def calibration_argv(output, epochs):
    return ["--output", str(output), "--backbones", "vit", "--fractions", "1", "--seeds", "0",
            "--image-size", "16", "--epochs", str(epochs), "--batch-size", "8", "--epoch-images", "24",
            "--warmup-epochs", "1", "--backbone-args", json.dumps({"vit": TINY_ARGS["vit"]}),
            "--train-args", "--synthetic-train-size 40 --synthetic-test-size 16 --sample-size 8 --val-fraction 0.2"]


def test_a_calibration_run_trains_at_a_constant_rate_and_lengthens_without_retraining(tmp_path, capsys,
                                                                                       monkeypatch):
    rows = calibration.main(calibration_argv(tmp_path, 2))
    assert [r["epochs"] for r in rows] == [2]
    folder = tmp_path / "vit-lam0-frac1-seed0"
    config = json.loads((folder / "config.json").read_text())
    assert config["lam"] == 0 and config["lr_schedule"] == "constant"
    first = read_csv(folder / "history.csv")

    rows = calibration.main(calibration_argv(tmp_path, 4))  # the same command, longer
    out = capsys.readouterr().out
    assert "lengthening from 2 to 4 epochs" in out
    history = read_csv(folder / "history.csv")
    assert len(history) == 4 and history[:2] == first  # the first two epochs were not trained again
    rates = [float(r["learning_rate"]) for r in history]
    assert rates[1] == rates[2] == rates[3] > 0  # constant after the warm-up epoch, past the first run's end
    assert [r["epochs"] for r in rows] == [4] and rows[0]["steps_per_epoch"] == 4  # 32 images (40 less the validation set)

    table = read_csv(tmp_path / "calibration.csv")
    assert [r["cell"] for r in table] == ["vit-lam0-frac1-seed0"] and table[0]["epochs"] == "4"
    curves = read_csv(tmp_path / "curves.csv")
    assert [int(c["epoch"]) for c in curves] == [1, 2, 3, 4]
    assert [float(c["val_top1"]) for c in curves] == [round(100 * float(r["val_accuracy"]), 2) for r in history]
    assert (tmp_path / "calibration.png").read_bytes()[:8] == PNG_MAGIC

    calibration.main(calibration_argv(tmp_path, 4))  # nothing left to train
    assert "4 epochs trained before, skipped" in capsys.readouterr().out
    assert read_csv(folder / "history.csv") == history

    # A run stopped before its report: its steps per epoch come from state.json, and it is not
    # judged (whatever its curve), since its first epochs can look flat before it takes off.
    (folder / "metrics.json").unlink()
    args = calibration.parse_args(calibration_argv(tmp_path, 4))
    monkeypatch.setattr(calibration, "plateau_epoch", lambda top1, tolerance: 1)  # as if flat
    rows, _ = calibration.calibration_rows(calibration.study.make_grid(args))
    assert rows[0]["steps_per_epoch"] == 4 and rows[0]["epochs"] == 4 and rows[0]["plateau_epoch"] == ""


def test_a_run_that_has_plateaued_is_not_lengthened(tmp_path, capsys, monkeypatch):
    calibration.main(calibration_argv(tmp_path, 2))
    history = read_csv(tmp_path / "vit-lam0-frac1-seed0" / "history.csv")
    monkeypatch.setattr(calibration, "_history", lambda folder: [50.0] * 2)  # as if flat
    monkeypatch.setattr(calibration, "plateau_epoch", lambda top1, tolerance: 1)
    calibration.main(calibration_argv(tmp_path, 4))
    assert "plateaued at epoch 1 of the 2 trained before, not lengthened" in capsys.readouterr().out
    assert read_csv(tmp_path / "vit-lam0-frac1-seed0" / "history.csv") == history


def test_calibration_refuses_lambdas_and_changed_settings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        calibration.main(calibration_argv(tmp_path, 1) + ["--lams", "0.5"])
    assert "--lams" in capsys.readouterr().err
    calibration.main(calibration_argv(tmp_path, 1))
    argv = calibration_argv(tmp_path, 2)
    argv[argv.index("--batch-size") + 1] = "4"
    with pytest.raises(SystemExit):
        calibration.main(argv)
    assert "--batch-size saved 8, now 4" in capsys.readouterr().err
