"""Mutate one formula of drloc_ref at a time and check that the reference tests catch it.

Each mutation is applied to a copy of what the reference tests need (drloc_ref, tests, the
project's configuration; not the virtual environment, which the copy's pytest does not use);
the script runs `pytest tests/ref` on the copy and reports the tests that failed. A mutation that no test catches makes the
script exit non-zero.

    python scripts/check_ref_mutations.py
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = "drloc_ref/reference.py"

# What a copy holds: the reference, the tests (tests/ref imports tests/__init__ and
# tests/conftest.py), and the pytest configuration. Nothing else: the virtual environment
# alone (.venv) is gigabytes.
COPIED = ("drloc_ref", "tests", "pyproject.toml")

# (name, text in reference.py, replacement)
MUTATIONS = [
    ("sign of the offset", "d = (p - q)", "d = (q - p)"),
    ("K-1 shift -> K", "k_minus_1 = np.array([height - 1, width - 1]", "k_minus_1 = np.array([height, width]"),
    ("signed shift drops K-1", "target = d + k_minus_1", "target = d"),
    ("signed divisor 2(K-1) -> 2K", "scale = 2.0 * k_minus_1", "scale = 2.0 * k_minus_1 + 2.0"),
    ("abs divisor K-1 -> K", "scale = k_minus_1\n", "scale = k_minus_1 + 1.0\n"),
    ("rows and columns swapped in K", "[height - 1, width - 1]", "[width - 1, height - 1]"),
    ("l1 mean -> sum over the two axes", "np.mean(np.abs(pred - target))", "np.mean(np.sum(np.abs(pred - target), axis=-1))"),
    ("l1 mean -> sum over everything", "np.mean(np.abs(pred - target))", "np.sum(np.abs(pred - target))"),
    ("cbr variance not squared", "(classes - mu[..., None]) ** 2", "np.abs(classes - mu[..., None])"),
    ("cbr variance without eps", "+ CBR_VARIANCE_EPS", ""),
    ("cbr log-variance weight", "CBR_LOG_VARIANCE_WEIGHT = 0.001", "CBR_LOG_VARIANCE_WEIGHT = 0.01"),
    ("cbr mean error not squared", "(mu - target) ** 2 / var", "np.abs(mu - target) / var"),
    ("cbr mean over the images only (pairs summed)", "    return float(np.mean(loss))", "    return float(np.mean(np.sum(loss, axis=-1)))"),
    ("ce sum instead of mean", "return float(-np.mean(picked))", "return float(-np.sum(picked))"),
    ("ReLU after the last trunk layer", "        x = x @ weight + bias\n    heads", "        x = np.maximum(x @ weight + bias, 0.0)\n    heads"),
    ("signed class count 2K-1 -> 2K", "return 2 * int(height) - 1, 2 * int(width) - 1", "return 2 * int(height), 2 * int(width)"),
    ("sampling misses the last row", "rng.integers(0, height, size", "rng.integers(0, height - 1, size"),
    ("rows drawn from min(H, W)", "rows = rng.integers(0, height, size=(batch, m))", "rows = rng.integers(0, min(height, width), size=(batch, m))"),
    ("gather swaps row and column", "features[b, positions[..., 0], positions[..., 1]]", "features[b, positions[..., 1] % features.shape[1], positions[..., 0] % features.shape[2]]"),
    ("lambda warm-up starts at lam", "ramp = 1.0 if warmup_epochs == 0 else min(epoch / warmup_epochs, 1.0)", "ramp = 1.0"),
    ("lambda decay over total instead of total-warmup", "/ (total_epochs - warmup_epochs)", "/ total_epochs"),
]


def run(name, old, new):
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "repo"
        copy.mkdir()
        ignore = shutil.ignore_patterns("*.egg-info", "__pycache__", ".hypothesis")
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, copy / name, ignore=ignore)
            elif source.exists():
                shutil.copy2(source, copy / name)
        path = copy / SOURCE
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"mutation {name!r}: expected one match of {old!r}, found {text.count(old)}")
        path.write_text(text.replace(old, new))
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/ref", "-q", "-p", "no:cacheprovider", "-rf"],
            cwd=copy, capture_output=True, text=True,
            env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "HYPOTHESIS_PROFILE": "ci"},
        )
        failed = sorted(set(re.findall(r"^FAILED (\S+?)(?:\[| - |$)", proc.stdout, re.M)))
        return proc.returncode, failed


def main():
    missed = 0
    for name, old, new in MUTATIONS:
        code, failed = run(name, old, new)
        if code == 0:
            missed += 1
            print(f"NOT CAUGHT  {name}")
        else:
            shown = ", ".join(f.split("::")[-1] for f in failed[:4])
            more = f" (+{len(failed) - 4} more)" if len(failed) > 4 else ""
            print(f"caught      {name}: {len(failed)} failing: {shown}{more}")
    print(f"{len(MUTATIONS) - missed}/{len(MUTATIONS)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
