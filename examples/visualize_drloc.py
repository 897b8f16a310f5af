"""What did the DRLoc head learn? Predicted against true offsets of token pairs, per axis.

    python examples/visualize_drloc.py runs/cifar10-cvt-lam0.1
    python examples/visualize_drloc.py --help

The figure is drloc_keras.offsets (its docstring and --help say everything); this is its command.
"""

from drloc_keras import offsets

if __name__ == "__main__":
    offsets.main()
