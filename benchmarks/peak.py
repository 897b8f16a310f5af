"""The matrix-product peak, without Keras: what `common.matmul_peak` (Keras' backends) and
`peers.py`'s PyTorch processes (which must not import Keras) share."""

import statistics
import time


def rate(run, n, repeats=10):
    """FLOP/s of `run`, one synchronised product of two `n x n` matrices: the median of
    `repeats` timed calls after 3 untimed ones."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times)


def torch_product(dtype, n=None):
    """`(run, n)`: one PyTorch product of two `n x n` matrices of `dtype` on PyTorch's default
    accelerator (else the CPU), synchronised; `n` 8192 on a GPU and 2048 on a CPU by default."""
    import numpy as np
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = n or (8192 if device == "cuda" else 2048)
    a, b = (torch.from_numpy(np.random.default_rng(i).normal(size=(n, n)).astype("float32"))
            .to(device=device, dtype=getattr(torch, dtype)) for i in range(2))

    def run():
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()

    return run, n
