"""The names and strings of timm's training recipe, without Keras: the training program
checks its flags with them before a backend is imported."""

import math
import re

RANDAUGMENT_POLICY = "rand-m9-mstd0.5-inc1"  # the authors' `AUG.AUTO_AUGMENT`
CROPS = ("padded", "resized")
LEVEL_DENOMINATOR = 10.0  # timm's `_LEVEL_DENOM`: magnitude 10 is an operation's largest argument
LARGEST_PADDED_CROP = 32  # the authors' data/build.py: a padded crop up to 32 pixels, resized above


def default_crop(image_size):
    """The authors' crop for an input side: `padded` up to 32 pixels, `resized` above."""
    return "padded" if image_size <= LARGEST_PADDED_CROP else "resized"


def parse_randaugment(policy):
    """The settings of a timm RandAugment string such as `rand-m9-mstd0.5-inc1`:
    `{"magnitude", "num_ops", "probability", "magnitude_std", "magnitude_max"}`.

    Sections as timm reads them: `m` magnitude (0-10), `n` operations per image, `p` the
    probability of each, `mstd` the standard deviation of the magnitude's noise (above 100:
    uniform in [0, m]), `mmax` the magnitude's upper bound, `inc1` timm's increasing
    operations (the only set implemented here: `inc1` is required)."""
    if not isinstance(policy, str) or not policy.startswith("rand"):
        raise ValueError(f"`randaugment` must be a timm RandAugment string such as {RANDAUGMENT_POLICY!r}, "
                         f"True or False. Found randaugment={policy!r}")
    settings = {"magnitude": LEVEL_DENOMINATOR, "num_ops": 2, "probability": 0.5, "magnitude_std": 0.0,
                "magnitude_max": LEVEL_DENOMINATOR}
    increasing = False
    for part in policy.split("-")[1:]:
        found = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d+(?:\.\d*)?)", part)
        if found is None:
            raise ValueError(f"`randaugment` {policy!r}: unknown section {part!r} (known: m, n, p, mstd, mmax, inc)")
        key, value = found.group(1), float(found.group(2))
        if key == "inc":
            increasing = bool(int(value))
        elif key == "mstd":
            settings["magnitude_std"] = math.inf if value > 100 else value
        else:
            settings[{"m": "magnitude", "n": "num_ops", "p": "probability", "mmax": "magnitude_max"}[key]] = value
    if not increasing:
        raise ValueError(f"`randaugment` {policy!r}: only timm's increasing operation set is implemented; add "
                         f"'-inc1' (the authors' policy is {RANDAUGMENT_POLICY!r})")
    settings["num_ops"] = int(settings["num_ops"])
    return settings
