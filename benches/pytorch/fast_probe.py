"""Probe: PyTorch eager time per training step on the BENCH.md workloads (CPU).

A helper for tuning the fast CPU path (crates/stablenet-core/src/fast); the official
PyTorch benchmark twin lives elsewhere. Same workload as BENCH.md: hamiltonian, T = 5,
tanh, x ~ N(0,1), labels uniform, K_j ~ N(0, 1/w), b_j = 0, plain SGD lr 0.1; the loss is
read back (loss.item()) at the end of every step; median of the timed steps, and the
minimum over --repeats runs of that median (the machine is shared).

    /work/venv-torch/bin/python benches/pytorch/fast_probe.py [--threads 2] [--only NAME]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from stable_net import StableNet  # noqa: E402

WORKLOADS = {  # name: (d, w, N, n_cpu, C)
    "peaks-small": (2, 8, 64, 4096, 5),
    "mid": (2, 32, 128, 4096, 5),
    "wide": (64, 128, 32, 2048, 10),
    "deep-256": (2, 8, 256, 1024, 5),
    "deep-1024": (2, 8, 1024, 1024, 5),
}


def run(name, steps, repeats):
    d, w, N, n, C = WORKLOADS[name]
    torch.manual_seed(0)
    model = StableNet(d, w, N, C, "hamiltonian", 5.0, "tanh")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(n, d)
    labels = torch.randint(0, C, (n,))
    best = float("inf")
    for _ in range(repeats):
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = model.loss(x, labels)
            loss.backward()
            opt.step()
            loss.item()
            if i > 0:  # the first step is the warm-up
                times.append(time.perf_counter() - t0)
        best = min(best, statistics.median(times))
    return dict(impl="torch-eager", device=f"cpu, {torch.get_num_threads()} threads", config=name,
                d=d, w=w, N=N, n=n, C=C, s_per_step=best, samples_per_s=n / best)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name in WORKLOADS:
        if a.only and name != a.only:
            continue
        print(json.dumps(run(name, a.steps, a.repeats)), flush=True)


if __name__ == "__main__":
    main()
