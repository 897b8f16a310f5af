"""How many optimizer steps each backbone's baseline needs before it stops learning.

    python examples/calibrate_steps.py --output runs/calibration --dataset fashion_mnist \\
        --data-dir /usr/share/datasets/fashion-mnist --fractions 0.05 --epochs 40 --epoch-images 800
    python examples/calibrate_steps.py --help

The calibration is drloc_keras.calibration (its docstring and --help say everything: the rule,
the files); this is its command.
"""

import signal
import sys

from drloc_keras import options

if __name__ == "__main__":
    try:
        options.check_backend()  # before Keras is imported: say what to install
    except options.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from drloc_keras import calibration

    # Ctrl-C (SIGINT) stops the runs cleanly even when this was started in the background by a
    # shell, which leaves SIGINT ignored: a job scheduler's stop then works between two runs too.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    rows = calibration.main()
    sys.exit(0 if rows else 1)
