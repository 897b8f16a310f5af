"""Small-data study: how much does DRLoc help each backbone as the training set shrinks?

    python examples/small_data_study.py --output runs/study
    python examples/small_data_study.py --help

The study is drloc_keras.study (its docstring and --help say everything); this is its command.
"""

import sys

from drloc_keras import study

if __name__ == "__main__":
    sys.exit(study.exit_code(study.main()))
