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
