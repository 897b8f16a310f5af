"""Start the training run (examples/train_cifar.py's, drloc_keras.run) in a test's subprocess,
with what the distribute tests need.

    python tests/distribute/launch.py REPORT_JSON [train_cifar flags ...]

Runs `drloc_keras.run.train` on the flags and writes the report it returns to REPORT_JSON. With
`DRLOC_TEST_LOGICAL_CPUS=N` in the environment it first splits TensorFlow's CPU into N
logical devices, which must happen before TensorFlow starts its runtime: MirroredStrategy
then sees N devices on a machine without GPUs. (JAX needs no help: `JAX_NUM_CPU_DEVICES`.)
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    report_path, argv = sys.argv[1], sys.argv[2:]
    logical = int(os.environ.get("DRLOC_TEST_LOGICAL_CPUS", "0"))
    if logical:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical)
    sys.path[:0] = [ROOT]
    from drloc_keras import options, run

    try:
        report = run.train(*options.parse(argv))
    except options.UsageError as e:  # as examples/train_cifar.py reports it
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.code)
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2)
