"""Spec section 9: every invalid argument raises ValueError naming the argument."""

import subprocess
import sys

import numpy as np
import pytest

import drloc_ref

RNG = np.random.default_rng(0)
POS = np.zeros((1, 3, 2), dtype=np.int64)
FEATURES = np.zeros((1, 4, 5, 3))
TARGET = np.zeros((1, 3, 2))
LOGITS = (np.zeros((1, 3, 4)), np.zeros((1, 3, 5)))
TRUNK = [(np.zeros((6, 8)), np.zeros(8)), (np.zeros((8, 2)), np.zeros(2))]


def _sample(**kw):
    args = dict(rng=np.random.default_rng(0), batch=2, height=4, width=5, m=3)
    args.update(kw)
    return lambda: drloc_ref.sample_positions(**args)


CASES = {
    # sampling
    "m = 0": (_sample(m=0), "`m`"),
    "m negative": (_sample(m=-2), "`m`"),
    "m not an integer": (_sample(m=2.5), "`m`"),
    "height 1": (_sample(height=1), "`height`"),
    "width 1": (_sample(width=1), "`width`"),
    "width 0": (_sample(width=0), "`width`"),
    "batch 0": (_sample(batch=0), "`batch`"),
    "rng not a Generator": (_sample(rng=0), "`rng`"),
    # gathering
    "features not 4-D": (lambda: drloc_ref.gather(np.zeros((4, 5, 3)), POS), "`features`"),
    "positions not [B, m, 2]": (
        lambda: drloc_ref.gather(FEATURES, np.zeros((1, 3), dtype=int)),
        "`positions`",
    ),
    "positions float": (lambda: drloc_ref.gather(FEATURES, POS.astype(float)), "`positions`"),
    "positions batch mismatch": (
        lambda: drloc_ref.gather(FEATURES, np.zeros((2, 3, 2), dtype=int)),
        "`positions`",
    ),
    "row outside the grid": (
        lambda: drloc_ref.gather(FEATURES, np.array([[[4, 0]]])),
        "`positions` has a row",
    ),
    "negative column": (
        lambda: drloc_ref.gather(FEATURES, np.array([[[0, -1]]])),
        "`positions` has a column",
    ),
    "column outside the grid": (
        lambda: drloc_ref.gather(FEATURES, np.array([[[0, 5]]])),
        "`positions` has a column",
    ),
    # targets
    "targets height 1": (lambda: drloc_ref.relative_targets(POS, POS, 1, 5), "`height`"),
    "targets p outside": (
        lambda: drloc_ref.relative_targets(np.array([[[0, 5]]]), np.array([[[0, 0]]]), 4, 5),
        "`p`",
    ),
    "targets q outside": (
        lambda: drloc_ref.relative_targets(np.array([[[0, 0]]]), np.array([[[9, 0]]]), 4, 5),
        "`q`",
    ),
    "targets shape mismatch": (
        lambda: drloc_ref.relative_targets(POS, np.zeros((1, 2, 2), dtype=int), 4, 5),
        "`p` and `q`",
    ),
    "num_classes width 1": (lambda: drloc_ref.num_classes(4, 1), "`width`"),
    # head
    "trunk empty": (lambda: drloc_ref.head_forward(np.zeros((1, 3, 6)), []), "`trunk`"),
    "trunk width mismatch": (
        lambda: drloc_ref.head_forward(np.zeros((1, 3, 7)), TRUNK),
        "`trunk[0]`",
    ),
    "trunk bias shape": (
        lambda: drloc_ref.head_forward(np.zeros((1, 3, 6)), [(np.zeros((6, 2)), np.zeros(3))]),
        "`trunk[0]`",
    ),
    "trunk inner mismatch": (
        lambda: drloc_ref.head_forward(
            np.zeros((1, 3, 6)), [TRUNK[0], (np.zeros((5, 2)), np.zeros(2))]
        ),
        "`trunk[1]`",
    ),
    "pairs not 3-D": (lambda: drloc_ref.head_forward(np.zeros((3, 6)), TRUNK), "`pairs`"),
    "one head only": (
        lambda: drloc_ref.head_forward(np.zeros((1, 3, 6)), TRUNK, (TRUNK[1],)),
        "`heads`",
    ),
    "head width mismatch": (
        lambda: drloc_ref.head_forward(
            np.zeros((1, 3, 6)), TRUNK, ((np.zeros((3, 4)), np.zeros(4)),) * 2
        ),
        "`heads[0] (rows)`",
    ),
    # losses
    "unknown mode": (lambda: drloc_ref.drloc_loss(TARGET, TARGET, mode="l2"), "`mode`"),
    "l1 shape mismatch": (lambda: drloc_ref.drloc_loss(np.zeros((1, 3, 3)), TARGET), "`pred`"),
    "l1 given a tuple": (lambda: drloc_ref.drloc_loss(LOGITS, TARGET), "`pred`"),
    "target not [B, m, 2]": (lambda: drloc_ref.drloc_loss(TARGET, np.zeros((1, 3))), "`target`"),
    "ce given one array": (lambda: drloc_ref.drloc_loss(TARGET, TARGET, mode="ce"), "`pred`"),
    "ce logits batch mismatch": (
        lambda: drloc_ref.drloc_loss((np.zeros((2, 3, 4)), LOGITS[1]), TARGET, mode="ce"),
        "`pred[0] (rows)`",
    ),
    "ce with normalized targets": (
        lambda: drloc_ref.drloc_loss(LOGITS, np.full((1, 3, 2), 0.5), mode="ce"),
        "normalize=True",
    ),
    "cbr with normalized targets": (
        lambda: drloc_ref.drloc_loss(LOGITS, np.full((1, 3, 2), 1 / 3), mode="cbr"),
        "normalize=True",
    ),
    "ce target beyond the classes": (
        lambda: drloc_ref.drloc_loss(LOGITS, np.full((1, 3, 2), 4.0), mode="ce"),
        "`target` rows",
    ),
    "cbr negative target": (
        lambda: drloc_ref.drloc_loss(LOGITS, np.full((1, 3, 2), -1.0), mode="cbr"),
        "`target` rows",
    ),
    # schedule
    "negative lambda": (lambda: drloc_ref.lambda_at(0, -0.1), "`lam`"),
    "negative epoch": (lambda: drloc_ref.lambda_at(-1, 0.1), "`epoch`"),
    "NaN lambda": (lambda: drloc_ref.lambda_at(0, float("nan")), "`lam`"),
    "negative warm-up": (lambda: drloc_ref.lambda_at(0, 0.1, warmup_epochs=-1), "`warmup_epochs`"),
    "total before warm-up ends": (
        lambda: drloc_ref.lambda_at(0, 0.1, warmup_epochs=20, total_epochs=20),
        "`total_epochs`",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_invalid_input_raises_a_value_error_naming_the_argument(name):
    call, fragment = CASES[name]
    with pytest.raises(ValueError) as info:
        call()
    assert fragment in str(info.value), str(info.value)


def test_messages_quote_the_value_and_what_is_allowed():
    with pytest.raises(ValueError, match=r"`mode` must be one of \('l1', 'ce', 'cbr'\)\. Found mode='l2'"):
        drloc_ref.drloc_loss(TARGET, TARGET, mode="l2")
    with pytest.raises(ValueError, match=r"`height` must be >= 2.*Found height=1"):
        drloc_ref.num_classes(1, 3)
    with pytest.raises(ValueError, match=r"rows must be in \[0, 3\] \(height=4\)"):
        drloc_ref.gather(FEATURES, np.array([[[4, 0]]]))


def test_the_reference_imports_no_deep_learning_framework():
    code = (
        "import sys, drloc_ref, drloc_ref.__main__\n"
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
