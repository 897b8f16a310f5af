"""What did the DRLoc head learn? Predicted against true offsets of token pairs, per axis.

    python examples/visualize_drloc.py runs/cifar10-cvt-lam0.1
    python examples/visualize_drloc.py --help

The figure is drloc_keras.offsets (its docstring and --help say everything); this is its command.
"""

import sys

from drloc_keras import options

if __name__ == "__main__":
    try:
        options.check_backend()  # before Keras is imported: say what to install
    except options.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from drloc_keras import offsets

    offsets.main()
