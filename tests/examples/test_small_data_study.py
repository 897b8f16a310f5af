"""The small-data study runner (drloc_keras.study, examples/small_data_study.py) and the offset
figure (drloc_keras.offsets, examples/visualize_drloc.py).

Most tests replace the study's `train_cell` (drloc_keras.run.train on a cell's flags) by a fake that writes what a finished run writes, so the
grid, the skipping, resuming and failing of cells and the aggregation run without training.
One module fixture trains a real two-cell study of a tiny ViT (16x16, 32 images, 1 epoch),
which the tests of skipping real runs and of visualize_drloc share.
"""

import csv
import json
import math
import os
import sys

import numpy as np
import pytest

from drloc_keras import backbones, options
from drloc_keras import offsets as visualize_drloc
from drloc_keras import study
from drloc_keras.head import DRLocHead

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_ARGS = {
    "vit": {"embed_dim": 16, "depth": 1, "num_heads": 2},
    "cvt": {"embed_dims": [8, 16, 16], "num_heads": [1, 2, 2], "depths": [1, 1, 1]},
    "swin": {"embed_dim": 8, "depths": [1, 1, 1], "num_heads": [1, 2, 2]},
    "resnet50": {"width_multiplier": 0.0625},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_study_argv(output, backbones=("vit",), fractions=("1",), seeds=("0",), lams=("0", "default"),
                    extra=()):
    return [
        "--output", str(output), "--backbones", *backbones, "--fractions", *fractions,
        "--seeds", *seeds, "--lams", *lams, "--image-size", "16", "--epochs", "1", "--batch-size", "8",
        "--epoch-images", "full",
        "--backbone-args", json.dumps({b: TINY_ARGS[b] for b in backbones}),
        "--train-args", "--synthetic-train-size 32 --synthetic-test-size 16 --sample-size 8",
        *extra,
    ]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class FakeTrain:
    """Stands in for the study's `train_cell`: parses the flags as it does (a resumed cell's
    settings come from its config.json) and writes what a finished
    run writes (config.json, state.json, last.keras, metrics.json); records every call.
    `fail` and `interrupt` name cells (folder names) that exit with code 3 or are stopped
    by Ctrl-C instead; `stop` ones stop part-way as a run does on Ctrl-C during an epoch (it saves
    itself and returns metrics marked interrupted)."""

    def __init__(self, fail=(), interrupt=(), stop=()):
        self.calls = []
        self.fail, self.interrupt, self.stop = set(fail), set(interrupt), set(stop)
        self.before = None  # called with each cell's name before it "trains"

    @staticmethod
    def top1(args):
        return 0.5 + 0.01 * args.seed + (0.1 if args.lam > 0 else 0.0) + 0.1 * args.train_fraction

    def __call__(self, argv):
        args, _ = options.parse(argv)
        if args.resume:
            with open(os.path.join(args.output, "config.json")) as f:
                args = options.namespace({**json.load(f), "output": args.output, "resume": True})
        name = os.path.basename(args.output)
        self.calls.append((name, list(argv)))
        if self.before is not None:
            self.before(name)
        os.makedirs(args.output, exist_ok=True)
        if not args.resume:
            with open(os.path.join(args.output, "config.json"), "w") as f:
                json.dump(vars(args), f)
        if name in self.interrupt:
            raise KeyboardInterrupt
        if name in self.fail:
            raise options.UsageError("the loss became NaN")
        if name in self.stop:
            with open(os.path.join(args.output, "state.json"), "w") as f:
                json.dump({"epochs_done": 1}, f)
            return {"final_top1": None, "epochs": 1, "interrupted": True}
        with open(os.path.join(args.output, "state.json"), "w") as f:
            json.dump({"epochs_done": args.epochs}, f)
        open(os.path.join(args.output, "last.keras"), "w").close()
        top1 = self.top1(args)
        metrics = {"final_top1": top1, "best_top1": top1 + 0.01, "final_top5": 1.0, "best_top5": 1.0,
                   "epochs": args.epochs, "parameters": 10, "seconds_per_epoch": 0.1,
                   "interrupted": False, "config": {**vars(args), "resume": False}}
        with open(os.path.join(args.output, "metrics.json"), "w") as f:
            json.dump(metrics, f)
        return metrics


@pytest.fixture
def fake(monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(study, "train_cell", fake)
    return fake


# === The grid ===


def test_the_grid_has_every_cell_with_its_folder_and_flags(tmp_path):
    argv = tiny_study_argv(tmp_path, backbones=("vit", "cvt"), fractions=("0.25", "1"), seeds=("0", "1"))
    args = study.parse_args(argv)
    cells = study.make_grid(args)
    expected = {f"{b}-lam{lam}-frac{f}-seed{s}"
                for b, lams in (("vit", ("0", "0.5")), ("cvt", ("0", "0.1")))
                for lam in lams for f in ("0.25", "1") for s in (0, 1)}
    assert len(cells) == 16 and {c.name for c in cells} == expected
    # Seed by seed, so that an early stop leaves whole comparisons.
    assert [c.seed for c in cells] == [0] * 8 + [1] * 8
    for cell in cells:
        assert cell.folder == os.path.join(str(tmp_path), cell.name)
        parsed = study.parse_cell(cell.argv)
        assert (parsed.backbone, parsed.lam, parsed.train_fraction, parsed.seed) == (
            cell.backbone, cell.lam, cell.fraction, cell.seed)
        assert parsed.output == cell.folder and parsed.epochs == 1 and parsed.image_size == 16
        assert parsed.backbone_args == {**study.SMALL_BACKBONE_ARGS[cell.backbone], **TINY_ARGS[cell.backbone]}
        assert parsed.synthetic_train_size == 32 and parsed.sample_size == 8
        # The synthetic class is a direction: no flips, rotations, mixing or erasing.
        assert not parsed.flip and not parsed.randaugment
        assert parsed.mixup == 0 and parsed.cutmix == 0 and parsed.random_erasing == 0


def test_the_default_grid_is_four_backbones_two_lambdas_three_fractions_three_seeds(tmp_path):
    args = study.parse_args(["--output", str(tmp_path)])
    cells = study.make_grid(args)
    assert len(cells) == 72
    assert {c.backbone for c in cells} == {"vit", "cvt", "swin", "resnet50"}
    assert {(c.backbone, c.lam) for c in cells if c.lam} == {
        (b, backbones.default_lambda(b)) for b in ("vit", "cvt", "swin", "resnet50")}
    assert {c.fraction for c in cells} == {0.05, 0.2, 1.0} and {c.seed for c in cells} == {0, 1, 2}
    resnet = next(c for c in cells if c.backbone == "resnet50")
    parsed = study.parse_cell(resnet.argv)
    assert parsed.dataset == "synthetic" and parsed.image_size == 32
    # Every cell makes as many optimizer steps: each subset is cycled to the full set's size.
    assert all(study.parse_cell(c.argv).epoch_images == "full" for c in cells)
    assert parsed.backbone_args == study.SMALL_BACKBONE_ARGS["resnet50"]


def test_passed_through_flags_reach_every_cell_and_the_grid_flags_are_refused(tmp_path, capsys):
    args = study.parse_args(tiny_study_argv(tmp_path, extra=["--", "--mode", "ce", "--randaugment"]))
    for cell in study.make_grid(args):
        parsed = study.parse_cell(cell.argv)
        assert parsed.mode == "ce" and parsed.randaugment and parsed.sample_size == 8
    for extra in (["--", "--seed", "3"], ["--", "--epochs", "5"], ["--train-args", "--lam 0.2"]):
        with pytest.raises(SystemExit) as exit_info:
            study.parse_args(tiny_study_argv(tmp_path) + extra)
        assert exit_info.value.code == 2
        assert "the study sets" in capsys.readouterr().err


def test_a_batch_larger_than_the_smallest_subset_is_refused_before_training(tmp_path, fake, capsys):
    with pytest.raises(SystemExit):
        study.main(tiny_study_argv(tmp_path, fractions=("0.25",), extra=["--batch-size", "16"]))
    assert "smallest training subset (8 images" in capsys.readouterr().err and not fake.calls


# === Running, skipping, resuming ===


def test_a_second_invocation_skips_the_finished_cells(tmp_path, fake):
    argv = tiny_study_argv(tmp_path, fractions=("0.5", "1"), seeds=("0", "1"))
    report = study.main(argv)
    assert len(fake.calls) == 8 and len(report["ran"]) == 8 and study.exit_code(report) == 0
    rows = read_csv(tmp_path / "results.csv")
    assert sorted(r["cell"] for r in rows) == sorted(c.name for c in study.make_grid(study.parse_args(argv)))
    before = (tmp_path / "results.csv").read_bytes()
    report = study.main(argv)
    assert len(fake.calls) == 8 and report["ran"] == [] and len(report["skipped"]) == 8
    assert (tmp_path / "results.csv").read_bytes() == before
    assert (tmp_path / "results.md").exists() and (tmp_path / "results.png").read_bytes()[:8] == PNG_MAGIC


def test_continue_from_a_committed_csv_trains_only_the_missing_cells(tmp_path, fake, capsys):
    """A study half done on one machine (its results.csv committed) is finished on a fresh one:
    the rows with the same settings are kept, not trained again; rows of other settings are not."""
    first = tmp_path / "first"
    study.main(tiny_study_argv(first, fractions=("1",), seeds=("0",)))
    committed = tmp_path / "committed.csv"
    committed.write_bytes((first / "results.csv").read_bytes())
    assert all(len(row["settings"]) == 12 for row in read_csv(committed))
    fake.calls.clear()
    fresh = tmp_path / "fresh"
    report = study.main(tiny_study_argv(fresh, fractions=("1",), seeds=("0", "1"),
                                        extra=["--continue-from", str(committed)]))
    trained = sorted(name for name, _ in fake.calls)
    assert trained == ["vit-lam0-frac1-seed1", "vit-lam0.5-frac1-seed1"]
    assert len(report["skipped"]) == 2 and study.exit_code(report) == 0
    rows = {row["cell"]: row for row in read_csv(fresh / "results.csv")}
    assert sorted(rows) == ["vit-lam0-frac1-seed0", "vit-lam0-frac1-seed1", "vit-lam0.5-frac1-seed0",
                            "vit-lam0.5-frac1-seed1"]
    committed_rows = {row["cell"]: row for row in read_csv(committed)}
    for name, row in committed_rows.items():
        assert rows[name]["final_top1"] == row["final_top1"] and rows[name]["settings"] == row["settings"]
    assert "| vit | 1 | 0.5 |" in (fresh / "results.md").read_text()
    assert "2 cell(s) of this grid finished there" in capsys.readouterr().out
    # Other settings (here another head width): the committed rows do not count.
    fake.calls.clear()
    other = tmp_path / "other"
    study.main(tiny_study_argv(other, fractions=("1",), seeds=("0",),
                               extra=["--head-hidden", "16", "--continue-from", str(committed)]))
    assert len(fake.calls) == 2
    assert "2 row(s) with other settings ignored" in capsys.readouterr().out


def test_export_keeps_a_committed_csv_current_cell_by_cell_and_continues_from_it(tmp_path, fake):
    """`--export F --continue-from F`: the same command in a later session on a fresh machine
    (another --output) trains only what F lacks, and F gains each cell as it finishes."""
    committed = tmp_path / "docs" / "study.csv"
    study.main(tiny_study_argv(tmp_path / "first", seeds=("0",), extra=["--export", str(committed)]))
    assert sorted(row["cell"] for row in read_csv(committed)) == ["vit-lam0-frac1-seed0", "vit-lam0.5-frac1-seed0"]
    seen = []
    fake.before = lambda name: seen.append(sorted(row["cell"] for row in read_csv(committed)))
    fake.calls.clear()
    study.main(tiny_study_argv(tmp_path / "second", seeds=("0", "1"),
                               extra=["--export", str(committed), "--continue-from", str(committed)]))
    assert sorted(name for name, _ in fake.calls) == ["vit-lam0-frac1-seed1", "vit-lam0.5-frac1-seed1"]
    # While the second new cell trained, the export already held the first.
    assert seen[-1] == ["vit-lam0-frac1-seed0", "vit-lam0-frac1-seed1", "vit-lam0.5-frac1-seed0"]
    assert len(read_csv(committed)) == 4
    assert read_csv(committed) == read_csv(tmp_path / "second" / "results.csv")


def test_continue_from_a_missing_file_is_refused(tmp_path, fake, capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(tiny_study_argv(tmp_path, extra=["--continue-from", str(tmp_path / "none.csv")]))
    assert exit_info.value.code == 2
    assert "--continue-from" in capsys.readouterr().err and not fake.calls


def test_an_interrupted_cell_resumes_and_a_cell_without_an_epoch_restarts(tmp_path, fake):
    argv = tiny_study_argv(tmp_path, fractions=("0.5", "1"))
    study.main(argv)
    # An interrupted run: train_cifar.py wrote metrics.json with interrupted=True.
    interrupted = tmp_path / "vit-lam0.5-frac1-seed0"
    metrics = json.loads((interrupted / "metrics.json").read_text())
    (interrupted / "metrics.json").write_text(json.dumps({**metrics, "interrupted": True}))
    # A run stopped before its first epoch ended: a folder without state.json.
    started = tmp_path / "vit-lam0-frac0.5-seed0"
    for name in ("metrics.json", "state.json", "last.keras"):
        (started / name).unlink()
    (started / "history.csv").write_text("epoch,loss\n")
    fake.calls.clear()
    report = study.main(argv)
    calls = dict(fake.calls)
    assert sorted(calls) == sorted([interrupted.name, started.name])
    assert "--resume" in calls[interrupted.name] and "--resume" not in calls[started.name]
    assert not (started / "history.csv").exists()  # started again in a clean folder
    assert sorted(report["ran"]) == sorted(calls) and len(report["skipped"]) == 2
    assert len(read_csv(tmp_path / "results.csv")) == 4


def test_a_cell_stopped_part_way_is_reported_as_stopped_not_finished(tmp_path, monkeypatch, capsys):
    argv = tiny_study_argv(tmp_path, seeds=("0", "1"))
    order = [c.name for c in study.make_grid(study.parse_args(argv))]
    monkeypatch.setattr(study, "train_cell", FakeTrain(stop={order[1]}))
    report = study.main(argv)
    assert report["interrupted"] and study.exit_code(report) == 130
    assert report["ran"] == order[:1] and report["stopped"] == [order[1]]
    out, err = capsys.readouterr()
    assert "[2/4] vit lam=0.5 fraction=1 seed=0: stopped part-way" in out and "[2/4] vit lam=0.5 fraction=1 seed=0: done" not in out
    assert "interrupted: 1 cell(s) finished in this session" in err and f"{order[1]} stopped part-way" in err
    assert [r["cell"] for r in read_csv(tmp_path / "results.csv")] == order[:1]


def test_changed_settings_are_refused_before_any_training(tmp_path, fake, capsys):
    study.main(tiny_study_argv(tmp_path))
    fake.calls.clear()
    with pytest.raises(SystemExit) as exit_info:
        study.main(tiny_study_argv(tmp_path) + ["--", "--mode", "ce"])
    assert exit_info.value.code == 2 and not fake.calls
    assert "--mode saved 'l1', now 'ce'" in capsys.readouterr().err


def test_a_failed_cell_does_not_stop_the_others(tmp_path, monkeypatch):
    fake = FakeTrain(fail={"vit-lam0-frac1-seed0"})
    monkeypatch.setattr(study, "train_cell", fake)
    report = study.main(tiny_study_argv(tmp_path, seeds=("0", "1")))
    assert list(report["failed"]) == ["vit-lam0-frac1-seed0"] and len(report["ran"]) == 3
    assert study.exit_code(report) == 1
    assert "vit-lam0-frac1-seed0" not in {r["cell"] for r in read_csv(tmp_path / "results.csv")}


def test_ctrl_c_keeps_the_finished_cells_and_the_same_command_goes_on(tmp_path, monkeypatch):
    argv = tiny_study_argv(tmp_path, seeds=("0", "1"))
    order = [c.name for c in study.make_grid(study.parse_args(argv))]
    fake = FakeTrain(interrupt={order[2]})
    monkeypatch.setattr(study, "train_cell", fake)
    report = study.main(argv)
    assert report["interrupted"] and study.exit_code(report) == 130
    assert report["ran"] == order[:2] and len(fake.calls) == 3  # the fourth cell never started
    assert sorted(r["cell"] for r in read_csv(tmp_path / "results.csv")) == sorted(order[:2])
    fake = FakeTrain()
    monkeypatch.setattr(study, "train_cell", fake)
    report = study.main(argv)
    assert [name for name, _ in fake.calls] == order[2:] and report["skipped"] == order[:2]
    assert len(read_csv(tmp_path / "results.csv")) == 4


# === Aggregation ===

HAND_WRITTEN = [
    # cell, backbone, lam, fraction, seed, final_top1
    ("vit", 0.0, 0.1, 0, 0.38), ("vit", 0.0, 0.1, 1, 0.40), ("vit", 0.0, 0.1, 2, 0.42),
    ("vit", 0.5, 0.1, 0, 0.49), ("vit", 0.5, 0.1, 1, 0.50), ("vit", 0.5, 0.1, 2, 0.51),
    ("vit", 0.0, 1.0, 0, 0.60), ("vit", 0.0, 1.0, 1, 0.70),
    ("vit", 0.5, 1.0, 0, 0.75), ("vit", 0.5, 1.0, 1, 0.80), ("vit", 0.5, 1.0, 2, 0.85),
    ("resnet50", 0.0, 1.0, 0, 0.90),
    ("resnet50", 0.5, 0.1, 0, 0.55),
]


def write_hand_written_results(folder):
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=study.RESULT_FIELDS)
        writer.writeheader()
        for backbone, lam, fraction, seed, top1 in HAND_WRITTEN:
            writer.writerow({"cell": study.cell_name(backbone, lam, fraction, seed), "backbone": backbone,
                             "lam": lam, "fraction": fraction, "seed": seed, "dataset": "synthetic",
                             "image_size": 32, "epochs": 10, "final_top1": top1, "best_top1": top1 + 0.05})


def test_aggregation_computes_mean_and_sample_std_over_seeds(tmp_path):
    write_hand_written_results(tmp_path)
    stats = study.aggregate(study.read_results(tmp_path / "results.csv"))
    mean, std, n = stats[("vit", 0.1, 0.0)]
    assert (round(mean, 10), round(std, 10), n) == (40.0, 2.0, 3)
    mean, std, n = stats[("vit", 1.0, 0.0)]
    assert n == 2 and math.isclose(mean, 65.0) and math.isclose(std, np.std([60, 70], ddof=1))
    mean, std, n = stats[("resnet50", 1.0, 0.0)]
    assert math.isclose(mean, 90.0) and (std, n) == (0.0, 1)
    best = study.aggregate(study.read_results(tmp_path / "results.csv"), "best_top1")
    assert math.isclose(best[("vit", 1.0, 0.5)][0], 85.0)
    pairs = study.paired_differences(study.read_results(tmp_path / "results.csv"))
    assert set(pairs) == {("vit", 0.1, 0.5), ("vit", 1.0, 0.5)}  # resnet50 has no pair
    np.testing.assert_allclose(pairs[("vit", 0.1, 0.5)], [11, 10, 9])
    np.testing.assert_allclose(pairs[("vit", 1.0, 0.5)], [15, 10])


def test_aggregate_only_writes_the_table_and_the_plot(tmp_path, fake):
    write_hand_written_results(tmp_path)
    report = study.main(["--output", str(tmp_path), "--aggregate-only", "--backbones", "vit", "resnet50"])
    assert not fake.calls
    table = (tmp_path / "results.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| vit") or line.startswith("| resnet50")]
    assert lines == [
        # Paired: seeds 0, 1, 2 give +11, +10, +9; at fraction 1 seed 2 has no baseline.
        # 95% CI: mean +- t * std / sqrt(n), t = 4.303 (2 df): 10 +- 2.48; t = 12.706 (1 df):
        # 12.5 +- 12.706 * 3.536 / 1.414 = 12.5 +- 31.77.
        "| vit | 0.1 | 0.5 | 40.00 ± 2.00 | 3 | 50.00 ± 1.00 | 3 | +10.00 | +10.00 ± 1.00 | [+7.5, +12.5] | 3/3 |",
        "| vit | 1 | 0.5 | 65.00 ± 7.07 | 2 | 80.00 ± 5.00 | 3 | +15.00 | +12.50 ± 3.54 | [-19.3, +44.3] | 2/2 |",
        "| resnet50 | 0.1 | 0.5 | - | 0 | 55.00 | 1 | - | - | - | - |",
        "| resnet50 | 1 | - | 90.00 | 1 | - | 0 | - | - | - | - |",
    ]
    png = (tmp_path / "results.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 10_000
    assert report["results_png"] == str(tmp_path / "results.png")


def test_aggregate_only_without_results_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--output", str(tmp_path), "--aggregate-only"])
    assert exit_info.value.code == 2 and "results.csv does not exist" in capsys.readouterr().err


# === visualize_drloc: the offsets ===


def _built_head(**kwargs):
    head = DRLocHead(sample_size=2, hidden=4, seed=0, **kwargs)
    head.build((None, 3, 4, 5))  # rows 0..2, columns 0..3
    return head


def test_offsets_of_ce_heads_are_the_argmax_class_shifted_for_signed_targets():
    head = _built_head(mode="ce", use_abs=False)  # classes: 5 for rows, 7 for columns
    rows, cols = np.full((1, 1, 5), -5.0), np.full((1, 1, 7), -5.0)
    rows[0, 0, 4], cols[0, 0, 1] = 3.0, 3.0
    target = np.array([[[3.0, 2.0]]])  # d + (K - 1): offsets +1 and -1
    pred, true = visualize_drloc.head_offsets(head, (rows, cols), target)
    np.testing.assert_allclose(pred, [[2.0, -2.0]])
    np.testing.assert_allclose(true, [[1.0, -1.0]])


def test_offsets_of_cbr_heads_are_the_expected_class_and_l1_is_scaled_back():
    head = _built_head(mode="cbr")  # use_abs: classes 0..2 and 0..3
    pred, _ = visualize_drloc.head_offsets(head, (np.zeros((1, 1, 3)), np.zeros((1, 1, 4))),
                                           np.zeros((1, 1, 2)))
    np.testing.assert_allclose(pred, [[1.0, 1.5]])  # the mean of a uniform distribution
    head = _built_head(mode="l1", normalize=True)
    pred, true = visualize_drloc.head_offsets(head, np.array([[[0.5, 1.0]]]), np.array([[[1.0, 0.0]]]))
    np.testing.assert_allclose(pred, [[1.0, 3.0]])
    np.testing.assert_allclose(true, [[2.0, 0.0]])


def test_visualize_refuses_a_missing_folder_or_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        visualize_drloc.main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2 and "is not a folder" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "synthetic"}))
    with pytest.raises(SystemExit):
        visualize_drloc.main([str(tmp_path)])
    assert "holds no saved model (best.keras or last.keras)" in capsys.readouterr().err


# === A real tiny study, and the figure of its DRLoc head ===


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    output = tmp_path_factory.mktemp("study")
    # Half of the 32 images, cycled back to 32 per epoch (the default --epoch-images full).
    argv = tiny_study_argv(output, fractions=("0.5",))
    report = study.main(argv)
    return output, argv, report


@pytest.mark.xdist_group("real_study")  # one worker trains the shared study once
def test_a_real_tiny_study_writes_every_result_and_skips_it_the_second_time(real_study, monkeypatch):
    output, argv, report = real_study
    assert sorted(report["ran"]) == ["vit-lam0-frac0.5-seed0", "vit-lam0.5-frac0.5-seed0"] and not report["failed"]
    rows = read_csv(output / "results.csv")
    for row in rows:
        metrics = json.loads((output / row["cell"] / "metrics.json").read_text())
        assert float(row["final_top1"]) == metrics["final_top1"] and int(row["epochs"]) == 1
        # 16 images, cycled to the full set's 32 per epoch: 4 steps of 8.
        # 32 images, 4 held out for validation: 28 an epoch, 3 batches of 8.
        assert metrics["epoch_images"] == 24 and metrics["config"]["epoch_images"] == "full"
    assert "| vit | 0.5 | 0.5 |" in (output / "results.md").read_text()
    assert (output / "results.png").read_bytes()[:8] == PNG_MAGIC
    # A real run's settings fingerprint is the one its cell expects (so --continue-from takes it).
    cells = {cell.name: cell for cell in study.make_grid(study.parse_args(argv))}
    assert {row["settings"] for row in rows} and all(
        row["settings"] == study.cell_settings_key(cells[row["cell"]]) for row in rows)
    before = (output / "results.csv").read_bytes()
    calls = []
    real_train = study.train_cell
    monkeypatch.setattr(study, "train_cell", lambda a: calls.append(a) or real_train(a))
    again = study.main(argv)
    assert calls == [] and len(again["skipped"]) == 2
    assert (output / "results.csv").read_bytes() == before


@pytest.mark.xdist_group("real_study")  # one worker trains the shared study once
def test_visualize_drloc_draws_the_offsets_of_a_trained_head(real_study, tmp_path):
    output, _, _ = real_study
    figure = tmp_path / "offsets.png"
    report = visualize_drloc.main([str(output / "vit-lam0.5-frac0.5-seed0"), "--images", "12",
                                   "--output", str(figure)])
    assert figure.read_bytes()[:8] == PNG_MAGIC and not report["untrained"]
    (head,) = report["heads"]
    # The run's validation set has 4 images (fewer than the 12 asked for), 8 pairs each.
    assert report["images"] == 4 and head["pairs"] == 4 * 8
    assert head["grid"] == [4, 4] and head["mode"] == "l1"
    for axis in ("rows", "columns"):
        assert 0 <= head[f"mae_{axis}"] < 100 and math.isfinite(head[f"mae_{axis}"])
    assert json.loads((tmp_path / "offsets.json").read_text())["heads"] == report["heads"]
    untrained = visualize_drloc.main([str(output / "vit-lam0-frac0.5-seed0"), "--images", "4",
                                      "--output", str(tmp_path / "lam0.png")])
    assert untrained["untrained"] and (tmp_path / "lam0.png").exists()


def test_epoch_images_off_trains_each_subset_for_its_own_size_and_bad_values_are_refused(tmp_path, capsys):
    args = study.parse_args(tiny_study_argv(tmp_path, fractions=("0.5",), extra=("--epoch-images", "off")))
    (cell, _) = study.make_grid(args)
    assert "--epoch-images" not in cell.argv and study.parse_cell(cell.argv).epoch_images is None
    args = study.parse_args([*tiny_study_argv(tmp_path), "--epoch-images", "64"])
    assert all(study.parse_cell(c.argv).epoch_images == 64 for c in study.make_grid(args))
    for bad in ("0", "-3", "half"):
        with pytest.raises(SystemExit):
            study.parse_args(tiny_study_argv(tmp_path, extra=("--epoch-images", bad)))
        assert "--epoch-images" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            study.parse_cell(["--epoch-images", bad])
        assert "must be a positive number of images or 'full'" in capsys.readouterr().err
    # The study sets it per cell: passing it through is refused.
    with pytest.raises(SystemExit):
        study.parse_args([*tiny_study_argv(tmp_path), "--", "--epoch-images", "64"])
    assert "--epoch-images (use the study's --epoch-images)" in capsys.readouterr().err


# === The training program does not flip the synthetic images (a mirror changes their class) ===


def test_train_cifar_flips_by_default_except_the_synthetic_dataset():
    assert study.parse_cell(["--dataset", "cifar10"]).flip is True
    assert study.parse_cell(["--dataset", "synthetic"]).flip is False
    assert study.parse_cell(["--dataset", "synthetic", "--flip"]).flip is True
    assert study.parse_cell(["--dataset", "cifar10", "--no-flip"]).flip is False


# === Two studies side by side (scripts/compare_studies.py) ===


def test_compare_studies_pairs_each_seed_and_gives_a_t_interval(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import compare_studies

    assert compare_studies.t_quantile(2) == 4.303 and compare_studies.t_quantile(11) == 2.228
    assert compare_studies.t_quantile(100) == 1.96
    with pytest.raises(ValueError, match="df"):
        compare_studies.t_quantile(0)

    def write(path, with_drloc):
        rows = []
        for seed, (without, with_) in enumerate(zip((0.50, 0.60, 0.70), with_drloc)):
            for lam, top1 in ((0.0, without), (0.5, with_)):
                rows.append({"cell": study.cell_name("vit", lam, 1, seed), "backbone": "vit", "lam": lam,
                             "fraction": 1.0, "seed": seed, "final_top1": top1})
        study.write_results(path, rows)

    write(tmp_path / "a.csv", (0.52, 0.61, 0.73))  # +2, +1, +3 points: mean 2, std 1
    write(tmp_path / "b.csv", (0.50, 0.58, 0.70))  # 0, -2, 0
    text = compare_studies.table(study.read_results(tmp_path / "a.csv"), study.read_results(tmp_path / "b.csv"),
                                 ["A", "B"])
    row = text.splitlines()[2]
    half = 4.303 * 1.0 / math.sqrt(3)  # t(2) * std / sqrt(n)
    assert row.startswith("| vit | 1 | 0.5 | 60.0 ± 10.0 → 62.0 ± 10.5 |")
    assert f"+2.0 [{2 - half:+.1f}, {2 + half:+.1f}] (3/3)" in row
    assert "-0.7 [" in row and "(0/3)" in row
