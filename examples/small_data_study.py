"""Small-data study: how much does DRLoc help each backbone as the training set shrinks?

    python examples/small_data_study.py --output runs/study
    python examples/small_data_study.py --help

The study is drloc_keras.study (its docstring and --help say everything); this is its command.
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
    from drloc_keras import study

    # Ctrl-C (SIGINT) stops the runs cleanly even when this was started in the background by a
    # shell, which leaves SIGINT ignored: a job scheduler's stop then works between two runs too.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    sys.exit(study.exit_code(study.main()))
