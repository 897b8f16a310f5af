"""Small-data study: how much does DRLoc help each backbone as the training set shrinks?

    python examples/small_data_study.py --output runs/study
    python examples/small_data_study.py --help

The study is drloc_keras.study (its docstring and --help say everything); this is its command.
"""

import sys

from drloc_keras import options

if __name__ == "__main__":
    try:
        options.check_backend()  # before Keras is imported: say what to install
    except options.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from drloc_keras import study

    sys.exit(study.exit_code(study.main()))
