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


def pytest_terminal_summary(terminalreporter):
    try:
        from tests.keras.helpers import LARGEST_DIFFERENCE
    except ImportError:  # Keras not installed: only the reference tests ran.
        return
    if LARGEST_DIFFERENCE:
        terminalreporter.section("largest difference between drloc_keras and drloc_ref")
        for name, value in sorted(LARGEST_DIFFERENCE.items()):
            terminalreporter.write_line(f"{name}: {value:.3g}")
