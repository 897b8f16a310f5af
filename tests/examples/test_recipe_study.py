"""scripts/recipe_study.py: the jobs of both recipes, from committed calibrations (--dry-run), and
where each job's log, wall time and results land."""

import os
import sys

from tests.examples.test_converged_study import dry_run as converged_dry_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "recipe_study.py")
NO_AUGMENTATION = "--no-randaugment --mixup 0 --cutmix 0 --random-erasing 0 --crop none"


def dry_run(part, results, *extra):
    return converged_dry_run(part, results, *extra, script=SCRIPT)


def write_calibration(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["cell,backbone,fraction,seed,dataset,epochs,steps_per_epoch,plateau_epoch,plateau_steps"]
    lines += [f"c{i},{b},0.01,0,fashion,60,50,{steps // 50 if steps else ''},{steps or ''}"
              for i, (b, steps) in enumerate(rows)]
    (folder / "calibration-fashion-calibration.csv").write_text("\n".join(lines) + "\n")


def test_each_recipe_calibrates_every_unsettled_backbone_in_its_own_job_with_its_flags(tmp_path):
    results = tmp_path / "results"
    write_calibration(results / "none", [("vit", 1500), ("cct", None)])
    jobs = dry_run("calibrate", results)
    names = [line.split(":")[0] for line in jobs]
    # The recipes alternate; the none recipe's ViT is settled, its CCT (no plateau yet) is not.
    assert names[:4] == ["full-calibration-vit", "none-calibration-swin", "full-calibration-swin",
                         "none-calibration-t2t"]
    assert sorted(names) == sorted([f"full-calibration-{b}" for b in ("vit", "swin", "t2t", "cct", "resnet50", "cvt")]
                                   + [f"none-calibration-{b}" for b in ("swin", "t2t", "cct", "resnet50", "cvt")])
    for line in jobs:
        recipe, backbone = line.split(":")[0].split("-calibration-")
        assert f"--backbones {backbone} --epochs {160 if recipe == 'full' else 60}" in line
        assert f"--output {results}/runs/{recipe}/calibration-{backbone}" in line
        assert "--fractions 0.01 --seeds 0" in line and "--epoch-images 1600" in line
        assert line.endswith("-- --val-fraction 0.02" + (" " + NO_AUGMENTATION if recipe == "none" else ""))
    longer = dry_run("calibrate", results, "--recipes", "full", "--backbones", "cct", "--calibration-epochs", "240")
    assert len(longer) == 1 and "--backbones cct --epochs 240" in longer[0]


def test_the_grid_of_each_recipe_trains_its_own_calibrated_length(tmp_path):
    results = tmp_path / "results"
    write_calibration(results / "full", [("swin", 4600)])
    write_calibration(results / "none", [("swin", 1840), ("vit", 900)])
    jobs = dry_run("grid", results)
    assert [line.split(":")[0] for line in jobs] == ["full-grid-fashion-0.01-swin", "none-grid-fashion-0.01-vit",
                                                     "none-grid-fashion-0.01-swin"]
    full, none_vit, none_swin = jobs
    assert "--epochs 50 --epoch-images 2944" in full  # 4600 steps at 92 a step-epoch
    assert "--epochs 20 --epoch-images 2944" in none_swin and "--epochs 10 " in none_vit
    assert "--seeds 0 1 2 3 4" in full and "--lams 0 default" in full
    assert f"--export {results}/full/grid-fashion-0.01-swin.csv" in full
    assert f"--export {results}/none/grid-fashion-0.01-swin.csv" in none_swin
    assert full.endswith("-- --val-fraction 0.02") and none_swin.endswith(NO_AUGMENTATION)


def test_each_job_logs_and_records_its_wall_time_in_its_recipe_folder(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_study", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    procedure = script.procedure
    results, runs = str(tmp_path / "results"), str(tmp_path / "runs")
    monkeypatch.setattr(script, "_folders", (results, runs))
    monkeypatch.setattr(procedure, "_record_wall_time", script._record_wall_time)
    done = []

    class Args:
        pass

    args = Args()
    args.results, args.runs = results, runs
    jobs = []
    for recipe in ("full", "none"):
        script.configure(recipe, results, runs)
        job = procedure.Job("heads-x", [sys.executable, "-c", f"print('{recipe}')"],
                            after=lambda recipe=recipe: done.append((recipe, procedure.RESULTS)))
        monkeypatch.setattr(procedure, "heads_jobs", lambda args, job=job: [job])
        jobs += script.recipe_jobs("heads", args, recipe)
    procedure.run_jobs(jobs, workers=2, deadline=None)
    # Each job's callback ran with its own recipe's folders in place, whichever ran last.
    assert sorted(done) == [("full", os.path.join(results, "full")), ("none", os.path.join(results, "none"))]
    for recipe in ("full", "none"):
        log = (tmp_path / "runs" / recipe / "logs" / f"{recipe}-heads-x.log").read_text()
        assert log.endswith(f"\n{recipe}\n")
        rows = (tmp_path / "results" / recipe / "wall-times.csv").read_text().splitlines()
        assert len(rows) == 2 and rows[1].split(",")[1] == "heads-x"  # its own name, as the report reads it
