"""A walk through the DRLoc computation on a random feature map: `python -m drloc_ref`."""

import argparse

import numpy as np

from drloc_ref import (
    drloc_loss,
    gather,
    head_forward,
    lambda_at,
    num_classes,
    relative_targets,
    sample_positions,
)


def _linear(rng, n_in, n_out):
    return rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_in, n_out)), np.zeros(n_out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m drloc_ref",
        description="Run the DRLoc reference once on a random feature map and print each step.",
    )
    parser.add_argument("--batch", type=int, default=2, help="images B (default: 2)")
    parser.add_argument("--height", type=int, default=7, help="grid rows H (default: 7)")
    parser.add_argument("--width", type=int, default=5, help="grid columns W (default: 5)")
    parser.add_argument("--channels", type=int, default=8, help="channels C (default: 8)")
    parser.add_argument("--sample-size", type=int, default=64, help="pairs m (default: 64)")
    parser.add_argument("--hidden", type=int, default=512, help="head width (default: 512)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    b, h, w, c, m = args.batch, args.height, args.width, args.channels, args.sample_size
    features = rng.normal(size=(b, h, w, c))
    print(f"feature map [B, H, W, C] = {list(features.shape)}, {m} pairs per image")

    p = sample_positions(rng, b, h, w, m)
    q = sample_positions(rng, b, h, w, m)
    pairs = np.concatenate([gather(features, p), gather(features, q)], axis=-1)
    print(f"MLP input [B, m, 2C] = {list(pairs.shape)}")
    print(f"first pairs of image 0: p = {p[0, :3].tolist()}, q = {q[0, :3].tolist()}")
    for use_abs in (True, False):
        for normalize in (False, True):
            t = relative_targets(p, q, h, w, use_abs=use_abs, normalize=normalize)
            print(
                f"  targets use_abs={use_abs!s:5} normalize={normalize!s:5}: "
                f"{t[0, :3].tolist()}  rows in [{t[..., 0].min():g}, {t[..., 0].max():g}], "
                f"cols in [{t[..., 1].min():g}, {t[..., 1].max():g}]"
            )

    hidden = args.hidden
    target = relative_targets(p, q, h, w)
    trunk_l1 = [_linear(rng, 2 * c, hidden), _linear(rng, hidden, hidden), _linear(rng, hidden, 2)]
    print(f"loss l1  (untrained head): {drloc_loss(head_forward(pairs, trunk_l1), target):.4f}")
    trunk = [_linear(rng, 2 * c, hidden), _linear(rng, hidden, hidden), _linear(rng, hidden, hidden)]
    k_rows, k_cols = num_classes(h, w)
    heads = (_linear(rng, hidden, k_rows), _linear(rng, hidden, k_cols))
    logits = head_forward(pairs, trunk, heads)
    print(f"classes per axis (rows, cols) = ({k_rows}, {k_cols})")
    for mode in ("ce", "cbr"):
        print(f"loss {mode:3} (untrained head): {drloc_loss(logits, target, mode=mode):.4f}")
    print("lambda schedule for lam=0.1 (warm-up 20, total 300):")
    print("  " + ", ".join(f"epoch {e}: {lambda_at(e, 0.1):.4f}" for e in (0, 10, 20, 100, 300)))


if __name__ == "__main__":
    main()
