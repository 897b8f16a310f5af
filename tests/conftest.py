"""Shared pytest configuration: hypothesis profiles.

`ci` (the default) is derandomized, so a run is reproducible and CI never flakes on a
newly drawn example; `dev` draws fresh random examples each run. Pick one with the
HYPOTHESIS_PROFILE environment variable.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The training program turns JAX's persistent compilation cache on by default, in the user's
# cache folder: tests leave it off (and the user's folder alone) unless a test sets it.
os.environ.setdefault("DRLOC_COMPILATION_CACHE", "off")


# The largest Keras-vs-reference differences (tests.keras.helpers.record_difference) are
# printed at the end of the run. Under pytest-xdist every worker process keeps its own, so
# workers hand theirs to the controller through the pytest cache.
_CACHE_KEY = "drloc/largest_difference/"


def _recorded():
    try:
        from tests.keras.helpers import LARGEST_DIFFERENCE
    except ImportError:  # Keras not installed: only the reference tests ran.
        return {}
    return LARGEST_DIFFERENCE


def _worker_ids(config):
    count = getattr(config.option, "numprocesses", None) or 0
    return [f"gw{i}" for i in range(int(count))] if isinstance(count, int) else []


def pytest_sessionstart(session):
    config = session.config
    if not hasattr(config, "workerinput") and getattr(config, "cache", None) is not None:
        for worker in _worker_ids(config):
            config.cache.set(_CACHE_KEY + worker, {})


def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workerinput") and getattr(config, "cache", None) is not None:
        config.cache.set(_CACHE_KEY + config.workerinput["workerid"], _recorded())


def pytest_terminal_summary(terminalreporter):
    config = terminalreporter.config
    merged = dict(_recorded())
    if getattr(config, "cache", None) is not None:
        for worker in _worker_ids(config):
            for name, value in (config.cache.get(_CACHE_KEY + worker, {}) or {}).items():
                merged[name] = max(merged.get(name, 0.0), value)
    if merged:
        terminalreporter.section("largest difference between drloc_keras and drloc_ref")
        for name, value in sorted(merged.items()):
            terminalreporter.write_line(f"{name}: {value:.3g}")
