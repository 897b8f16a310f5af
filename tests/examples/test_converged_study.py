"""scripts/converged_study.py: the jobs it would run, from a committed calibration (--dry-run)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "converged_study.py")


def dry_run(part, results, *extra, script=SCRIPT):
    """The job lines `script --dry-run` prints for `part`, with its results under `results`."""
    out = subprocess.run([sys.executable, script, part, "--dry-run", "--results", str(results),
                          "--runs", str(results / "runs"), *extra],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env=dict(os.environ, KERAS_BACKEND="jax")).stdout
    return [line for line in out.splitlines() if ": " in line and "examples/" in line]


def write_calibration(results, dataset, rows):
    results.mkdir(parents=True, exist_ok=True)
    lines = ["cell,backbone,fraction,seed,dataset,epochs,steps_per_epoch,plateau_epoch,plateau_steps"]
    fractions = {"fashion": ("0.05", "0.01"), "synthetic": ("0.2",)}[dataset]
    lines += [f"c{i}{f},{b},{f},0,{dataset},40,91,{steps // 91 if steps else ''},{steps or ''}"
              for i, (b, steps) in enumerate(rows) for f in fractions]
    (results / f"calibration-{dataset}-calibration.csv").write_text("\n".join(lines) + "\n")


def test_grid_trains_each_calibrated_backbone_its_largest_plateau_and_skips_the_others(tmp_path):
    results = tmp_path / "results"
    write_calibration(results, "fashion", [("vit", 1000), ("vit", 1500), ("cvt", 900), ("cvt", None)])
    jobs = dry_run("grid", results)
    names = [line.split(":")[0] for line in jobs]
    assert names == ["grid-fashion-0.01-vit", "grid-fashion-0.05-vit"]  # cvt has a run without a plateau
    # The calibration trains again only what is not settled: here all but vit.
    calibrate = dry_run("calibrate", results, "--datasets", "fashion")
    assert len(calibrate) == 1 and "--backbones swin resnet50 cvt --epochs 40" in calibrate[0]
    first = jobs[0]
    # 1500 steps at 92 a step-epoch (2944 images of 32): 17 epochs, the same for both fractions.
    assert "--epochs 17 --epoch-images 2944" in first and "--epochs 17" in jobs[1]
    assert "--seeds 0 1 2 3 4" in first and "--seeds 0 1 2 --" in jobs[1]
    assert "--lams 0 default" in first and f"--export {results}/grid-fashion-0.01-vit.csv" in first
    assert "--continue-from" not in first
    (results / "grid-fashion-0.01-vit.csv").write_text("settings,cell\n")
    assert f"--continue-from {results}/grid-fashion-0.01-vit.csv" in dry_run("grid", results)[0]
    # A backbone calibrated at one of the dataset's calibration fractions only waits.
    calibration_csv = results / "calibration-fashion-calibration.csv"
    calibration_csv.write_text("\n".join(line for line in calibration_csv.read_text().splitlines()
                                          if ",0.01," not in line or ",vit," not in line) + "\n")
    assert dry_run("grid", results) == []


def test_the_ablation_changes_one_setting_per_job_against_the_grid(tmp_path):
    results = tmp_path / "results"
    write_calibration(results, "fashion", [("vit", 1840)])  # 20 epochs of 92 steps
    jobs = dry_run("ablation", results)
    names = [line.split(":")[0].rsplit("-", 1)[-1] if "warmup" not in line.split(":")[0] else "warmup-decay"
             for line in jobs]
    assert names == ["lam0.1", "lam1", "m16", "m256", "ce", "cbr", "signed", "warmup-decay"]
    for line in jobs:
        assert "--seeds 0 1 2 " in line and "--epochs 20 " in line and "--lams 0 " not in line
    by_name = dict(zip(names, jobs))
    assert "--lams 0.1 --fractions" in by_name["lam0.1"]
    assert by_name["m16"].endswith("--sample-size 16") and by_name["signed"].endswith("--offsets signed")
    assert by_name["warmup-decay"].endswith("--lam-schedule warmup-decay --lam-warmup-epochs 4 --lam-total-epochs 60")


def test_calibration_runs_at_other_fractions_are_read_but_not_used(tmp_path):
    results = tmp_path / "results"
    write_calibration(results, "synthetic", [("vit", 1000)])
    file = results / "calibration-synthetic-calibration.csv"
    file.write_text(file.read_text() + "c9,vit,1,0,synthetic,40,62,80,4960\n")  # all 2000 images
    jobs = dry_run("grid", results, "--datasets", "synthetic")
    assert [line.split(":")[0] for line in jobs] == ["grid-synthetic-0.2-vit"]
    assert "--epochs 20 --epoch-images 1600" in jobs[0] and "--seeds 0 1 2 3 4" in jobs[0]


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("converged_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jobs_run_two_at_a_time_with_logs_and_wall_times_and_stop_at_the_deadline(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(script, "RUNS", str(tmp_path / "runs"))
    done = []
    jobs = [script.Job(f"job{i}", [sys.executable, "-c", f"print('hello {i}')"], after=lambda i=i: done.append(i))
            for i in range(3)]
    script.run_jobs(jobs, workers=2, deadline=None)
    assert sorted(done) == [0, 1, 2]
    for i in range(3):
        log = (tmp_path / "runs" / "logs" / f"job{i}.log").read_text()
        assert log.startswith(f"\n$ {sys.executable} -c ") and log.endswith(f"\nhello {i}\n")  # command, output
    rows = (tmp_path / "results" / "wall-times.csv").read_text().splitlines()
    assert rows[0] == "finished,job,minutes,exit,machine" and len(rows) == 4
    assert all(row.split(",")[3] == "0" for row in rows[1:])

    # At the deadline the running job gets Ctrl-C (it exits as Python does on one) and no other starts.
    import time

    slow = [script.Job("slow", [sys.executable, "-c", "import time; time.sleep(60)"]),
            script.Job("never", [sys.executable, "-c", "print('started')"])]
    start = time.time()
    script.run_jobs(slow, workers=1, deadline=time.time() + 1)
    assert time.time() - start < 30
    assert not (tmp_path / "runs" / "logs" / "never.log").exists()
    last = (tmp_path / "results" / "wall-times.csv").read_text().splitlines()[-1].split(",")
    assert last[1] == "slow" and last[3] != "0"

    # A job that ignores Ctrl-C is terminated after the grace period.
    monkeypatch.setattr(script, "STOP_GRACE", 1)
    stubborn = [script.Job("stubborn", [sys.executable, "-c", "import signal, time; "
                                        "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"])]
    start = time.time()
    script.run_jobs(stubborn, workers=1, deadline=time.time() + 1)
    assert time.time() - start < 30
    last = (tmp_path / "results" / "wall-times.csv").read_text().splitlines()[-1].split(",")
    assert last[1] == "stubborn" and last[3] == str(-15)  # SIGTERM


def test_a_calibration_job_merges_its_runs_into_the_committed_files(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "RESULTS", str(tmp_path / "results"))
    fields = "cell,backbone,fraction,seed,dataset,epochs,steps_per_epoch,plateau_epoch,plateau_steps"

    def rows(*cells):
        return "\n".join([fields] + [f"{c},{b},0.05,0,fashion_mnist,{e},91,{p},{p and p * 91}"
                                     for c, b, e, p in cells]) + "\n"

    def curves(*cells):
        return "\n".join(["cell,backbone,fraction,seed,epoch,steps,val_top1"]
                         + [f"{c},{b},0.05,0,{e},{e * 91},{50 + e}" for c, b, n in cells for e in range(1, n + 1)]) + "\n"

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "calibration-fashion-calibration.csv").write_text(rows(("a", "vit", 40, 21), ("b", "cvt", 10, "")))
    (tmp_path / "results" / "calibration-fashion-curves.csv").write_text(curves(("a", "vit", 40), ("b", "cvt", 10)))
    output = tmp_path / "run"
    output.mkdir()
    (output / "calibration.csv").write_text(rows(("b", "cvt", 40, 30), ("c", "swin", 40, 32)))
    (output / "curves.csv").write_text(curves(("b", "cvt", 40), ("c", "swin", 40)))
    script.publish_calibration(str(output), "fashion")
    merged = read_csv(tmp_path / "results" / "calibration-fashion-calibration.csv")
    assert [(r["cell"], r["epochs"], r["plateau_steps"]) for r in merged] == [
        ("a", "40", "1911"), ("b", "40", "2730"), ("c", "40", "2912")]
    merged_curves = read_csv(tmp_path / "results" / "calibration-fashion-curves.csv")
    assert [sum(c["cell"] == x for c in merged_curves) for x in "abc"] == [40, 40, 40]
    assert (tmp_path / "results" / "calibration-fashion-calibration.png").read_bytes()[:4] == b"\x89PNG"


def read_csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_grid_job_of_the_smallest_fraction_draws_the_heads_when_it_ends(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(script, "RUNS", str(tmp_path / "runs"))
    write_calibration(tmp_path / "results", "fashion", [("vit", 1840)])
    started = []
    monkeypatch.setattr(script, "run_jobs", lambda jobs, workers, deadline: started.extend(jobs))
    args = script.argparse.Namespace(datasets=["fashion"], backbones=["vit"])
    small, large = script.grid_jobs(args)
    assert small.name == "grid-fashion-0.01-vit" and large.after is None
    small.after()  # the DRLoc run of seed 0 has not finished: nothing to draw
    assert started == []
    folder = tmp_path / "runs" / "grid-fashion-0.01-vit" / "vit-lam0.5-frac0.01-seed0"
    folder.mkdir(parents=True)
    whole = {"interrupted": False, "final_top1": 0.7, "epochs": 20, "config": {"epochs": 20}}
    (folder / "metrics.json").write_text(json.dumps(dict(whole, interrupted=True, final_top1=None, epochs=8)))
    small.after()  # stopped part-way (it writes metrics.json too): not drawn
    assert started == []
    (folder / "metrics.json").write_text(json.dumps(whole))
    small.after()
    assert [job.name for job in started] == ["offsets-fashion-vit"]
    assert started[0].argv[1:] == [os.path.join(script.ROOT, "examples", "visualize_drloc.py"), str(folder),
                                   "--model", "last", "--images", "256", "--output",
                                   str(tmp_path / "results" / "offsets-fashion-vit.png")]
    (tmp_path / "results" / "offsets-fashion-vit.png").write_bytes(b"")  # drawn already: not again
    small.after()
    assert len(started) == 1 and script.heads_jobs(args) == []


def test_the_report_pairs_the_seeds_and_sums_the_wall_time_of_each_part(tmp_path, monkeypatch):
    script = load_script()
    results = tmp_path / "results"
    monkeypatch.setattr(script, "RESULTS", str(results))
    results.mkdir()
    fields = "cell,backbone,lam,fraction,seed,dataset,image_size,epochs,final_top1,best_top1,settings"
    top1 = {(0.0, 0): 0.70, (0.0, 1): 0.72, (0.5, 0): 0.73, (0.5, 1): 0.74}
    (results / "grid-fashion-0.01-vit.csv").write_text("\n".join(
        [fields] + [f"vit-lam{lam:g}-seed{seed},vit,{lam},0.01,{seed},fashion_mnist,32,21,{t},{t},s"
                    for (lam, seed), t in top1.items()]) + "\n")
    (results / "wall-times.csv").write_text(
        "finished,job,minutes,exit,machine\n2026-12-04 22:18,calibration-synthetic,6.3,0,2 cores\n"
        "2026-12-04 23:00,grid-fashion-0.01-vit,60.0,0,2 cores\n2026-12-05 01:00,grid-fashion-0.01-vit,30.0,0,2 cores\n"
        "2026-12-05 01:10,grid-fashion-0.05-vit,45.0,130,2 cores\n")
    docs = tmp_path / "results.md"
    docs.write_text("# Results\n\n<!-- grid table -->\nold\n<!-- end of grid table -->\n\nafter\n")
    monkeypatch.setattr(script, "DOCS", str(docs))
    script.report(script.argparse.Namespace(ablation=["fashion", "0.01", "vit"]))
    summary = (results / "summary.md").read_text()
    # The grid's table replaces the marked region of the docs, and nothing else there.
    head, region, tail = docs.read_text().split("grid table -->")
    assert head == "# Results\n\n<!-- " and tail == "\n\nafter\n"
    assert region.startswith("\n**Fashion-MNIST**\n\n| backbone | fraction |") and "old" not in region
    assert "| vit | 0.01 | 0.5 | 71.00 ± 1.41 | 2 |" in region and region.endswith("|\n<!-- end of ")
    # Without DRLoc 71 +- 1.41, with 73.5 +- 0.71; paired differences +3 and +2: mean +2.5, std 0.71,
    # half width t(0.975, 1) * 0.71 / sqrt(2) = 12.706 * 0.5 = 6.35.
    assert "| vit | 0.01 | 0.5 | 71.00 ± 1.41 | 2 | 73.50 ± 0.71 | 2 | +2.50 | +2.50 ± 0.71 | [-3.9, +8.9] | 2/2 |" in summary
    assert "| grid-fashion-0.01-vit | 2 | 90 |" in summary and "| calibration-synthetic | 1 | 6 |" in summary
    assert "| **grid, all jobs** | | **135** (2.2 h) |" in summary
    assert "| **calibration, all jobs** | | **6** (0.1 h) |" in summary
    # Results kept elsewhere (--results) leave the docs' tables alone.
    before = docs.read_text()
    grid = results / "grid-fashion-0.01-vit.csv"
    grid.write_text(grid.read_text().replace("0.74,0.74", "0.76,0.76"))  # with DRLoc 74.50 now
    monkeypatch.setattr(script, "RESULTS", os.path.join("docs", "results", "converged"))  # the default
    script.main(["report", "--results", str(results)])
    assert docs.read_text() == before and "| 74.50 ± 2.12 | 2 |" in (results / "summary.md").read_text()


def test_every_job_runs_on_the_study_backend_whatever_the_shell_holds(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(script, "RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    job = script.Job("which", [sys.executable, "-c", "import os; print('backend', os.environ['KERAS_BACKEND'])"])
    script.run_jobs([job], workers=1, deadline=None)
    assert (tmp_path / "runs" / "logs" / "which.log").read_text().endswith(f"\nbackend {script.BACKEND}\n")
    assert script.BACKEND == "tensorflow"  # the backend the committed results were trained on

    # Another backend is refused for the committed results, and allowed for others.
    refused = subprocess.run([sys.executable, SCRIPT, "report", "--backend", "jax"], capture_output=True,
                             text=True, cwd=ROOT, env=dict(os.environ, KERAS_BACKEND="jax"))
    assert refused.returncode == 2 and "--backend jax" in refused.stderr and "another --results" in refused.stderr
    assert dry_run("grid", tmp_path / "other", "--backend", "jax") == []  # nothing calibrated there: no jobs


def test_the_heads_job_names_paths_inside_the_repository_relative_to_it(tmp_path, monkeypatch):
    script = load_script()
    inside = os.path.join(script.ROOT, "runs", "converged", "grid-fashion-0.01-vit")
    assert script.in_repo(inside) == os.path.join("runs", "converged", "grid-fashion-0.01-vit")
    assert script.in_repo(os.path.join("docs", "results")) == os.path.join("docs", "results")
    # A relative path is the repository's, wherever this process runs (here in one of its folders).
    monkeypatch.chdir(os.path.join(script.ROOT, "tests"))
    assert script.in_repo(os.path.join("docs", "results")) == os.path.join("docs", "results")
    outside = str(tmp_path / "runs")
    assert script.in_repo(outside) == outside  # elsewhere: as given
    sibling = script.ROOT + "-copy"  # a name that starts like the repository's is not inside it
    assert script.in_repo(sibling) == sibling


def test_the_docs_are_written_only_when_a_region_changes(tmp_path):
    script = load_script()
    docs = tmp_path / "results.md"
    docs.write_text("# Results\n<!-- grid table -->\nold\n<!-- end of grid table -->\n")
    script.fill_docs(str(docs), {"grid table": ["new"]})
    assert docs.read_text() == "# Results\n<!-- grid table -->\nnew\n<!-- end of grid table -->\n"
    os.utime(docs, (1_000_000, 1_000_000))
    script.fill_docs(str(docs), {"grid table": ["new"]})  # the same text: left untouched
    assert os.stat(docs).st_mtime == 1_000_000
    script.fill_docs(str(docs), {"grid table": ["newer"]})
    assert os.stat(docs).st_mtime != 1_000_000 and "newer" in docs.read_text()


def write_grid(results, name, top1):
    """A grid export: `top1` maps (lam, seed) to the test top-1 (fraction)."""
    dataset, fraction, backbone = name.split("-")[1:4]
    fields = "cell,backbone,lam,fraction,seed,dataset,image_size,epochs,final_top1,best_top1,settings"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.csv").write_text("\n".join(
        [fields] + [f"{backbone}-lam{lam:g}-seed{seed},{backbone},{lam},{fraction},{seed},{dataset},32,9,{t},{t},s"
                    for (lam, seed), t in top1.items()]) + "\n")


def paired(base, gains, lam=0.5):
    """Top-1 of both arms: seed s without DRLoc `base[s]`, with it `base[s] + gains[s]` (points)."""
    return {**{(0.0, s): b / 100 for s, b in enumerate(base)},
            **{(lam, s): (b + g) / 100 for s, (b, g) in enumerate(zip(base, gains))}}


def write_levels(results, levels):
    """A calibration of each dataset in `levels`: {(dataset, fraction, backbone): level at the plateau}."""
    results.mkdir(parents=True, exist_ok=True)
    for dataset in {d for d, _, _ in levels}:
        (results / f"calibration-{dataset}-calibration.csv").write_text("\n".join(
            ["cell,backbone,fraction,seed,dataset,epochs,steps_per_epoch,plateau_epoch,plateau_steps,level_at_plateau"]
            + [f"{b}-{f},{b},{f},0,{d},40,50,20,1000,{level}" for (d, f, b), level in levels.items() if d == dataset])
            + "\n")


def test_the_ablation_cell_is_the_finished_converged_cell_where_drloc_helps_most(tmp_path, monkeypatch):
    script = load_script()
    results = tmp_path / "results"
    monkeypatch.setattr(script, "RESULTS", str(results))
    fallback = ("fashion", "0.01", "vit")
    assert script.ablation_cell()[0] == fallback  # nothing measured: ViT at the smallest fraction
    write_levels(results, {("fashion", "0.01", "swin"): 71.0, ("fashion", "0.01", "vit"): 72.0,
                           ("synthetic", "0.2", "resnet50"): 62.0, ("synthetic", "0.2", "vit"): 90.0})
    # Swin at 1%: +2 in every seed (interval above 0); ViT at 1%: larger mean, interval across 0.
    write_grid(results, "grid-fashion-0.01-swin", paired([70, 71, 72, 73, 74], [1.5, 2, 2.5, 2, 2]))
    write_grid(results, "grid-fashion-0.01-vit", paired([70, 71, 72, 73, 74], [9, -5, 8, -4, 10]))
    # Synthetic ResNet-50: +20 in each seed, but only 4 of its 5 seeds so far: not compared.
    write_grid(results, "grid-synthetic-0.2-resnet50", paired([60, 61, 62, 63], [20, 19, 21, 20]))
    # Synthetic ViT: +15 in every seed, but its baselines (mean 72) end 18 points below the 90 its
    # calibration reached: they had not finished learning, so it is not compared.
    write_grid(results, "grid-synthetic-0.2-vit", paired([70, 71, 72, 73, 74], [15, 14, 16, 15, 15]))
    cell, why = script.ablation_cell()
    assert cell == ("fashion", "0.01", "swin"), why
    assert "paired +2.00 [+1.56, +2.44], 5/5" in why
    assert "synthetic 0.2 resnet50" in why.split("not finished, so not compared: ")[1].split(";")[0]
    assert "so not compared: synthetic 0.2 vit (72.0 against 90.0)" in why
    assert "fashion 0.01 vit" not in why  # finished and converged, but its interval holds 0
    # Its fifth seed in, ResNet-50 helps more, and the smaller effect is named beside it.
    write_grid(results, "grid-synthetic-0.2-resnet50", paired([60, 61, 62, 63, 64], [20, 19, 21, 20, 22]))
    cell, why = script.ablation_cell()
    assert cell == ("synthetic", "0.2", "resnet50") and "also above 0: fashion 0.01 swin +2.00" in why
    # A baseline within 3 points of its calibration counts as converged: ViT (mean 72 against 74.9)
    # takes part, second to ResNet-50's +20.40.
    write_levels(results, {("fashion", "0.01", "swin"): 71.0, ("fashion", "0.01", "vit"): 72.0,
                           ("synthetic", "0.2", "resnet50"): 62.0, ("synthetic", "0.2", "vit"): 74.9})
    cell, why = script.ablation_cell()
    assert cell == ("synthetic", "0.2", "resnet50") and "also above 0: synthetic 0.2 vit +15.00, fashion 0.01 swin" in why
    assert "more than 3 points" not in why
    # Once an ablation has begun, its cell stays the ablation's, whatever the grid shows later.
    write_grid(results, "ablation-fashion-0.01-swin-warmup-decay", {(0.5, 0): 0.72})
    assert script.ablation_cell()[0] == ("fashion", "0.01", "swin")
    # Where DRLoc helps nowhere: back to ViT at the smallest fraction.
    for name in ("ablation-fashion-0.01-swin-warmup-decay", "grid-synthetic-0.2-resnet50", "grid-fashion-0.01-swin",
                 "grid-synthetic-0.2-vit"):
        (results / f"{name}.csv").unlink()
    assert script.ablation_cell()[0] == fallback


def test_the_report_writes_an_ablation_table_for_every_ablated_cell(tmp_path, monkeypatch):
    script = load_script()
    results = tmp_path / "results"
    monkeypatch.setattr(script, "RESULTS", str(results))
    write_grid(results, "grid-synthetic-0.2-vit", paired([60, 70, 80, 90, 65], [10, 20, 5, 1, 3]))
    write_grid(results, "ablation-synthetic-0.2-vit-lam1", {(1.0, 0): 0.72, (1.0, 1): 0.80, (1.0, 2): 0.86})
    write_grid(results, "ablation-synthetic-0.2-vit-warmup-decay", {(0.5, 0): 0.61})
    write_grid(results, "grid-fashion-0.01-swin", paired([70, 71, 72, 73, 74], [2, 2, 2, 2, 2]))
    write_grid(results, "ablation-fashion-0.01-swin-m16", {(0.5, 0): 0.75, (0.5, 1): 0.70})
    docs = tmp_path / "results.md"
    docs.write_text("# Results\n<!-- ablation table -->\n<!-- end of ablation table -->\n")
    monkeypatch.setattr(script, "DOCS", str(docs))
    script.report(script.argparse.Namespace())
    region = docs.read_text().split("ablation table -->")[1]
    assert region.index("**swin, Fashion-MNIST, fraction 0.01**") < region.index("**vit, Synthetic, fraction 0.2**")
    # The grid's own DRLoc runs of seeds 0-2: 70, 90, 85, i.e. +10, +20, +5 over the baselines 60, 70, 80:
    # mean 11.67, std 7.64, half width t(0.975, 2) * 7.64 / sqrt(3) = 4.303 * 4.41 = 18.98.
    assert "| grid (λ default, m 64, l1, absolute, constant) | 3 | 81.67 ± 10.41 | +11.67 [-7.31, +30.64] | 3/3 | - | - |" in region
    # lam 1: 72, 80, 86 against 60, 70, 80: +12, +10, +6 (std 3.06, half width 7.59); against the
    # grid's DRLoc runs 70, 90, 85: +2, -10, +1 (mean -2.33, std 6.66, half width 4.303 * 3.84 = 16.54).
    assert "| lam1 | 3 | 79.33 ± 7.02 | +9.33 [+1.74, +16.92] | 3/3 | -2.33 [-18.87, +14.21] | 2/3 |" in region
    assert "| warmup-decay | 1 | 61.00 ± 0.00 | +1.00 - | 1/1 | -9.00 - | 0/1 |" in region
    # m16: 75 and 70 against 70 and 71: +5, -1 (std 4.24, half width 12.706 * 3 = 38.12); against
    # the grid's 72 and 73: +3, -3 (std 4.24).
    assert "| m16 | 2 | 72.50 ± 3.54 | +2.00 [-36.12, +40.12] | 1/2 | +0.00 [-38.12, +38.12] | 1/2 |" in region
    assert region == "\n" + "\n".join(script.ablation_tables()).strip("\n") + "\n<!-- end of "


def test_the_length_check_trains_one_cell_longer_with_both_arms(tmp_path):
    results = tmp_path / "results"
    write_calibration(results, "synthetic", [("vit", 5350)])  # 107 epochs of 50 steps
    jobs = dry_run("length", results)
    assert len(jobs) == 1 and jobs[0].startswith("length-synthetic-0.2-vit-x2: ")
    assert "--lams 0 default --fractions 0.2 --seeds 0 1 2 --epochs 214 --epoch-images 1600 " in jobs[0]
    write_calibration(results, "fashion", [("swin", 1840)])  # 20 epochs of 92 steps
    jobs = dry_run("length", results, "--length", "fashion", "0.01", "swin", "--length-factor", "1.5")
    assert len(jobs) == 1 and jobs[0].startswith("length-fashion-0.01-swin-x1.5: ") and "--epochs 30 " in jobs[0]
    for bad, message in ((["--length-factor", "0"], "--length-factor must be > 0; found 0"),
                         (["--length", "fashion", "0.2", "vit"], "--length: a dataset of"),
                         (["--ablation", "mnist", "0.01", "vit"], "--ablation: a dataset of")):
        out = subprocess.run([sys.executable, SCRIPT, "length", "--dry-run", "--results", str(results), *bad],
                             capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, KERAS_BACKEND="jax"))
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_the_report_sets_each_baseline_against_its_calibration_and_the_length_check_beside_the_grid(tmp_path, monkeypatch):
    script = load_script()
    results = tmp_path / "results"
    monkeypatch.setattr(script, "RESULTS", str(results))
    results.mkdir()
    (results / "calibration-synthetic-calibration.csv").write_text(
        "cell,backbone,fraction,seed,dataset,epochs,steps_per_epoch,plateau_epoch,plateau_steps,level_at_plateau,"
        "level_at_end,val_top1_at_end\na,vit,0.2,0,synthetic,140,50,107,5350,82.12,82.95,85.2\n"
        "b,vit,1.0,0,synthetic,40,62,,,,,98.0\n")
    write_grid(results, "grid-synthetic-0.2-vit", paired([64, 72, 86, 54, 78], [20, 18, 4, 34, 14]))
    write_grid(results, "length-synthetic-0.2-vit-x2", paired([90, 91, 92], [1, -1, 0.5]))
    docs = tmp_path / "results.md"
    docs.write_text("<!-- length table -->\n<!-- end of length table -->\n")
    monkeypatch.setattr(script, "DOCS", str(docs))
    script.report(script.argparse.Namespace())
    region = docs.read_text()
    # Baselines 64, 72, 86, 54, 78: mean 70.8, std sqrt(612.8 / 4) = 12.4; 82.12 at the calibration's plateau.
    assert "| Synthetic | 0.2 | vit | 82.1 | 64.0 | 70.8 ± 12.4 (5) | -11.3 |" in region
    # Seeds 0-2 of the grid (84, 90, 90: +20, +18, +4) beside the check (91, 90, 92.5: +1, -1, +0.5).
    assert "| grid length | vit | 0.2 | 0.5 | 74.00 ± 11.14 | 3 | 88.00 ± 3.46 | 3 | +14.00 | +14.00 ± 8.72 |" in region
    assert "| 2 times as long | vit | 0.2 | 0.5 | 91.00 ± 1.00 | 3 | 91.17 ± 1.26 | 3 | +0.17 | +0.17 ± 1.04 |" in region
    assert "| Fashion-MNIST" not in region  # no calibration there


def test_by_seed_splits_a_cell_into_seed_jobs_that_share_its_results(tmp_path, monkeypatch):
    results = tmp_path / "results"
    write_calibration(results, "synthetic", [("cvt", 1000)])
    jobs = dry_run("grid", results, "--datasets", "synthetic", "--by-seed")
    assert [line.split(":")[0] for line in jobs] == [f"grid-synthetic-0.2-cvt-seed{s}" for s in range(5)]
    for seed, line in enumerate(jobs):
        assert f"--seeds {seed} --epochs 20 " in line and "--lams 0 default" in line
        assert f"--export {results}/grid-synthetic-0.2-cvt-seed{seed}.csv" in line and "--continue-from" not in line
        assert f"--output {results}/runs/grid-synthetic-0.2-cvt-seed{seed} " in line

    # Runs finished by the cell's own job (seed 0, both arms; seed 1 without DRLoc) and by a seed job
    # (seed 1 with DRLoc, and seed 0's baseline again): every job reads them all, each run once.
    script = load_script()
    monkeypatch.setattr(script, "RESULTS", str(results))
    monkeypatch.setattr(script, "RUNS", str(tmp_path / "runs"))
    write_grid(results, "grid-synthetic-0.2-cvt", {(0.0, 0): 0.80, (0.1, 0): 0.85, (0.0, 1): 0.70})
    write_grid(results, "grid-synthetic-0.2-cvt-seed1", {(0.1, 1): 0.78, (0.0, 0): 0.80})
    for other in ("grid-synthetic-0.2-cvtx.csv", "grid-synthetic-0.2-cvt-seed1b.csv"):  # not files of the cell
        (results / other).write_text("settings,cell\n")
    assert [os.path.basename(f) for f in script.cell_files("grid-synthetic-0.2-cvt")] == [
        "grid-synthetic-0.2-cvt-seed1.csv", "grid-synthetic-0.2-cvt.csv"]
    rows = script.grid_rows("synthetic", "0.2", "cvt")
    assert sorted((r["lam"], r["seed"], r["final_top1"]) for r in rows) == [
        (0.0, 0, 0.80), (0.0, 1, 0.70), (0.1, 0, 0.85), (0.1, 1, 0.78)]
    diffs, complete = script.grid_cells()[("synthetic", "0.2", "cvt")]
    assert sorted(round(d, 6) for d in diffs) == [5.0, 8.0] and not complete
    for by_seed, name in ((True, "grid-synthetic-0.2-cvt-seed2"), (False, "grid-synthetic-0.2-cvt")):
        args = script.argparse.Namespace(datasets=["synthetic"], backbones=["cvt"], by_seed=by_seed)
        job = [j for j in script.grid_jobs(args) if j.name == name][0]
        merged = tmp_path / "runs" / name / "continue-from.csv"
        assert job.argv[job.argv.index("--continue-from") + 1] == str(merged) and not merged.exists()
        script.run_jobs([script.Job(job.name, [sys.executable, "-c", ""], before=job.before)], 1, None)
        merged_rows = script.results.read_results(str(merged))  # written when the job starts
        assert sorted((r["lam"], r["seed"]) for r in merged_rows) == [(0.0, 0), (0.0, 1), (0.1, 0), (0.1, 1)]
    # The heads' figure hangs on the seed-0 job alone.
    args = script.argparse.Namespace(datasets=["synthetic"], backbones=["cvt"], by_seed=True)
    assert [j.after is not None for j in script.grid_jobs(args)] == [True, False, False, False, False]
    # and finds the seed job's run folder.
    folder = tmp_path / "runs" / "grid-synthetic-0.2-cvt-seed0" / "cvt-lam0.1-frac0.2-seed0"
    folder.mkdir(parents=True)
    assert script.heads_job("synthetic", "cvt") is None
    (folder / "metrics.json").write_text(json.dumps({"interrupted": False, "final_top1": 0.8, "epochs": 20,
                                                     "config": {"epochs": 20}}))
    assert str(folder) in script.heads_job("synthetic", "cvt").argv


def test_the_wall_time_table_counts_the_minutes_the_runs_recorded_once_each(tmp_path, monkeypatch):
    script = load_script()
    results = tmp_path / "results"
    monkeypatch.setattr(script, "RESULTS", str(results))
    results.mkdir()
    fields = "cell,backbone,lam,fraction,seed,dataset,image_size,epochs,final_top1,best_top1,seconds_per_epoch,settings"
    (results / "grid-synthetic-0.2-cvt.csv").write_text(
        f"{fields}\ncvt-lam0-seed0,cvt,0,0.2,0,synthetic,32,100,0.9,0.9,30,s\n")
    # A seed job repeats seed 0's baseline (carried over) and adds a run of its own; one run has no time.
    (results / "grid-synthetic-0.2-cvt-seed1.csv").write_text(
        f"{fields}\ncvt-lam0-seed0,cvt,0,0.2,0,synthetic,32,100,0.9,0.9,30,s\n"
        f"cvt-lam0-seed1,cvt,0,0.2,1,synthetic,32,100,0.8,0.8,60,s\n"
        f"cvt-lam0.1-seed1,cvt,0.1,0.2,1,synthetic,32,100,0.8,0.8,,s\n")
    (results / "wall-times.csv").write_text(  # the session that trained seed 1 ended before it wrote a line
        "finished,job,minutes,exit,machine\n2026-12-06 03:00,grid-synthetic-0.2-cvt,55.0,0,2 cores\n"
        "2026-12-06 03:01,offsets-synthetic-cvt,0.5,0,2 cores\n")
    table = "\n".join(script.wall_time_table())
    assert "| grid-synthetic-0.2-cvt | 1 | 55 | 50 (1 run) |" in table  # 30 s x 100 epochs
    assert "| offsets-synthetic-cvt | 1 | 0 | - |" in table
    assert "| **grid, all jobs** | | **55** (0.9 h) | 150 (2 runs) |" in table  # 50 + 100, seed 0 once
