"""What XLA plans for one training step with and without DRLoc: FLOPs and memory (JAX only).

No timing: each backbone's training step is compiled twice (DRLoc on with the family's
default lambda, and `lam=0`) and XLA's own cost and memory analyses of the two programs
are compared. This separates the work DRLoc adds from how fast a machine runs it, and it
shows work that the step without DRLoc never does: XLA drops computations whose results
no loss uses (in a class-token ViT, the last block's patch tokens feed only DRLoc).

    KERAS_BACKEND=jax python benchmarks/compiled_cost.py --output docs/benchmarks/compiled-jax.json
"""

import argparse
import gc
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from benchmarks import common  # noqa: E402
from drloc_keras import backbones  # noqa: E402

DEFAULT = ["cvt_13_32", "cct_7_3x1", "swin_tiny_32", "t2t_vit_14_32", "vit_32", "resnet50_32",
           "cvt_13", "swin_tiny", "t2t_vit_14", "vit_base_16", "resnet50"]


def analyse(model, batch):
    import jax

    common.step(model, batch)  # builds the optimizer and metrics variables
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )
    compiled = jax.jit(model.train_step).lower(state, (batch[0], batch[1], None)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    memory = compiled.memory_analysis()
    return {
        "flops": float(cost["flops"]),
        "bytes": int(memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
                     - memory.alias_size_in_bytes),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=DEFAULT, metavar="NAME", help="size names")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--output", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        parser.error(f"needs KERAS_BACKEND=jax (XLA's analyses); found {keras.backend.backend()}")
    for name in args.backbones:
        if name not in backbones.SIZES:
            parser.error(f"--backbones: unknown size {name!r}; choose from {', '.join(backbones.SIZES)}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")

    info = common.machine()
    rows = []
    for name in args.backbones:
        result = {}
        for variant, lam in (("with", backbones.default_lambda(name)), ("without", 0.0)):
            model, batch, _ = common.build(name, lam, args.batch_size)
            result[variant] = analyse(model, batch)
            del model, batch
            gc.collect()
        row = {
            "backbone": name, "image_size": backbones.SIZES[name][2], "batch_size": args.batch_size,
            "with": result["with"], "without": result["without"],
            "flop_ratio": result["with"]["flops"] / result["without"]["flops"],
            "memory_ratio": result["with"]["bytes"] / result["without"]["bytes"],
        }
        rows.append(row)
        print(f"{name}: XLA FLOPs per step x{row['flop_ratio']:.3f}, planned memory x{row['memory_ratio']:.3f}",
              flush=True)
        common.write_json(args.output, {"machine": info, "rows": rows})

    print()
    print("| backbone | input | batch | GFLOPs per step with DRLoc | without | ratio | memory with / without (MiB) | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['with']['flops'] / 1e9:.1f} | "
              f"{r['without']['flops'] / 1e9:.1f} | {r['flop_ratio']:.3f} | {r['with']['bytes'] / 2**20:.0f} / "
              f"{r['without']['bytes'] / 2**20:.0f} | {r['memory_ratio']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
