"""PyTorch twin of `cargo xtask bench`: the workloads of BENCH.md, written as a PyTorch user
would write them (an nn.Module with the Verlet loop, autograd, torch.optim.SGD(lr=0.1)),
timed eagerly and under torch.compile, on the CPU and on CUDA when there is one.

Prints one JSON object per line on stdout (the same fields as the Rust bench, see
benches/README.md); progress goes to stderr.

    python benches/pytorch/bench.py [--quick] [--only NAME[,NAME]] [--device cpu|cuda|all]
                                    [--no-compile] [--compile-all] [--compile-max-steps 32]
                                    [--plan FILE] [--steps K] [--warmup K] [--quiet]

`cargo xtask bench` runs this script itself with --plan (the exact list of workloads it
runs on its own backends), so both sides measure the same work in the same run; without
--plan the default plan below is used (the same as the xtask's).

Memory (`peak_mem_bytes`): CUDA: torch.cuda.max_memory_allocated() during warm-up and the
timed steps, minus what was allocated before (parameters, inputs, labels). CPU: the process's
peak RSS (VmHWM) minus its RSS before the first step, after malloc_trim(0) and a reset of the
high-water mark through /proc/self/clear_refs; where that file is not writable, the growth of
ru_maxrss (a lifetime peak, so only growth beyond earlier workloads shows).

On CUDA, `torch-cudagraph` lines time the same step captured whole (forward, backward and
SGD) as one CUDA graph and replayed, as PyTorch's documentation shows for whole-network
capture: it removes the per-operation launch cost that dominates eager at small widths, with
no compilation. It runs on the BENCH.md workloads (every job with --compile-all). TF32 is off
on both matmul paths (PyTorch's default for matmuls, pinned here), so PyTorch computes in f32
as the engine does; each line says so (`tf32`).

torch.compile runs on the five BENCH.md workloads (peaks-small only with --quick; every job
with --compile-all): compiling costs about a minute per job on a small machine. Up to
--compile-max-steps steps the whole module is compiled (the loop unrolled into one graph);
deeper nets compile one Verlet step and call it N times, since unrolling thousands of steps
takes too long. The line says which (`compile_mode`) and how long the warm-up, compilation
included, took (`compile_s`); compilation always gets at least one warm-up step. A failed
compilation is reported in the line's `error` field, not raised.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import re
import resource
import socket
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

T_FINAL = 5.0
LR = 0.1
# (name, d, w, N, n on a CPU, n on a GPU, C) -- BENCH.md
WORKLOADS = [
    ("peaks-small", 2, 8, 64, 4096, 65536, 5),
    ("mid", 2, 32, 128, 4096, 65536, 5),
    ("wide", 64, 128, 32, 2048, 32768, 10),
    ("deep-256", 2, 8, 256, 1024, 16384, 5),
    ("deep-1024", 2, 8, 1024, 1024, 16384, 5),
]
DEPTHS = [16, 64, 256, 1024, 4096]
COMPILED = {name for name, *_ in WORKLOADS}


def default_plan(quick: bool) -> list[dict]:
    """Every job as {config, d, w, N, C, n, target}; target "cpu" or "gpu" picks the batch
    sizes (BENCH.md's n (cpu) / n (gpu)). Mirrors `plan()` in xtask/src/bench.rs."""
    jobs = []

    def job(config, d, w, N, C, n, target):
        jobs.append(dict(config=config, d=d, w=w, N=N, C=C, n=n, target=target))

    for target in ("cpu", "gpu"):
        for name, d, w, N, n_cpu, n_gpu, C in WORKLOADS:
            n = n_cpu if target == "cpu" else n_gpu
            job(name, d, w, min(N, 8) if quick else N, C, 64 if quick else n, target)
        if quick:
            sizes, depths, depth_n = [32, 64], [4, 16], 64
        else:
            sizes = [256 << k for k in range(7)] if target == "cpu" else [1024 << k for k in range(9)]
            depths, depth_n = DEPTHS, 1024 if target == "cpu" else 16384
        for n in sizes:
            job("scale-n", 2, 8, 8 if quick else 64, 5, n, target)
        for N in depths:
            job("scale-N", 2, 8, N, 5, depth_n, target)
        for N in [4, 16] if quick else DEPTHS:
            job("mem-depth", 2, 8, N, 5, 64 if quick else 1024, target)
    return jobs


def flops_per_step(d: int, w: int, N: int, n: int, C: int) -> int:
    """2 x the multiply-adds of one training step of the reversible Verlet network, counted
    the same way for every implementation (benches/README.md): per example, opening w d
    forward + w d for dK_in; per step 2 w^2 forward and 6 w^2 in the adjoint (two mat-vecs
    that rebuild the state, two for the adjoints, two outer products for dK_j); classifier
    C w forward + 2 C w backward; plus one multiply-add per parameter for SGD."""
    params = w * d + w + N * (w * w + w) + C * w + C
    per_example = 2 * w * d + 8 * N * w * w + 3 * C * w
    return 2 * (n * per_example + params)


class VerletNet(nn.Module):
    """opening layer -> N Verlet (Hamiltonian) steps -> linear classifier. Rows are examples,
    so K_j^T y (a column y) is y @ K_j and K_j z is z @ K_j^T."""

    def __init__(self, d: int, w: int, N: int, C: int):
        super().__init__()
        self.h = T_FINAL / N
        self.opening = nn.Linear(d, w)
        self.K = nn.Parameter(torch.randn(N, w, w) / math.sqrt(w))  # K_j ~ N(0, 1/w)
        self.b = nn.Parameter(torch.zeros(N, w))
        self.classifier = nn.Linear(w, C)
        with torch.no_grad():
            nn.init.normal_(self.opening.weight, std=1.0 / math.sqrt(d))
            nn.init.zeros_(self.opening.bias)
            nn.init.normal_(self.classifier.weight, std=1.0 / math.sqrt(w))
            nn.init.zeros_(self.classifier.bias)
        self.step_fn = verlet_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(self.opening(x))
        z = torch.zeros_like(y)
        for j in range(self.K.shape[0]):
            y, z = self.step_fn(y, z, self.K[j], self.b[j], self.h)
        return self.classifier(y)


def verlet_step(y, z, K, b, h: float):
    z = z - h * torch.tanh(y @ K + b)
    y = y + h * torch.tanh(z @ K.T + b)
    return y, z


# ---- machine and memory -------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssWindow:
    """Peak RSS growth over a window (see the module docstring)."""

    def __init__(self):
        gc.collect()
        _malloc_trim()
        self.method = "vmhwm-clear-refs"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.base = _status_kib("VmRSS")
        except OSError:
            self.base = None
        if self.base is None:
            self.method = "ru-maxrss-growth"
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def peak_bytes(self) -> int:
        if self.method == "vmhwm-clear-refs":
            peak = _status_kib("VmHWM") or self.base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return 1024 * max(0, peak - self.base)


# ---- one job ------------------------------------------------------------------------


def loadavg() -> float | None:
    """The 1-minute load average as the job starts (the xtask records the same)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_job(job: dict, impl: str, dev: torch.device, device_name: str, threads: int, args) -> dict:
    d, w, N, n, C = job["d"], job["w"], job["N"], job["n"], job["C"]
    warmup = max(args.warmup, 1) if impl == "torch-compile" else args.warmup  # compiles there
    rec = dict(
        impl=impl,
        device=device_name,
        software=False,
        config=job["config"],
        integrator="hamiltonian",
        d=d,
        w=w,
        N=N,
        n=n,
        C=C,
        T=T_FINAL,
        target=job["target"],
        threads=threads,
        warmup=warmup,
        steps=args.steps,
        s_per_step=None,
        s_min=None,
        s_max=None,
        samples_per_s=None,
        flops_per_step=flops_per_step(d, w, N, n, C),
        param_bytes=4 * (w * d + w + N * (w * w + w) + C * w + C),
        gflops=None,
        peak_mem_bytes=None,
        mem_method=None,
        loss=None,
        tf32=torch.backends.cuda.matmul.allow_tf32,
        date=now(),
        loadavg=loadavg(),
        host=socket.gethostname(),
        torch_version=torch.__version__,
    )
    torch.manual_seed(1)
    try:
        model = VerletNet(d, w, N, C).to(dev)
        x = torch.randn(n, d, device=dev)
        labels = torch.randint(0, C, (n,), device=dev)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        fwd = model
        if impl == "torch-compile":
            torch._dynamo.reset()
            if N <= args.compile_max_steps:
                rec["compile_mode"] = "module"  # the whole unrolled loop is one graph
                fwd = torch.compile(model)
            else:
                rec["compile_mode"] = "step"  # unrolling thousands of steps takes too long
                model.step_fn = torch.compile(verlet_step)

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(fwd(x), labels)
            loss.backward()
            opt.step()
            return loss.item()  # back to the host: nothing left queued

        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            rec["mem_method"] = "cuda-max-allocated"
        else:
            rss = RssWindow()
            rec["mem_method"] = rss.method
        if impl == "torch-cudagraph":
            step = capture(model, opt, x, labels)  # its own warm-up steps, then the capture
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        if impl == "torch-compile":
            rec["compile_s"] = time.perf_counter() - t0  # warm-up, including the compilation
        times, loss = [], None
        for _ in range(args.steps):
            t = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - t)
        if dev.type == "cuda":
            rec["peak_mem_bytes"] = torch.cuda.max_memory_allocated(dev) - base
        else:
            rec["peak_mem_bytes"] = rss.peak_bytes()
        s = statistics.median(times)
        rec.update(
            s_per_step=s,
            s_min=min(times),
            s_max=max(times),
            samples_per_s=n / s,
            gflops=rec["flops_per_step"] / s / 1e9,
            loss=loss,
        )
        if not math.isfinite(loss):
            rec["error"] = f"loss became {loss}"
    except Exception as e:  # noqa: BLE001 -- every failure becomes a reported line
        rec["error"] = f"{type(e).__name__}: {str(e).strip()[:400]}"
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rec


def capture(model: nn.Module, opt: torch.optim.Optimizer, x, labels):
    """The whole training step as one CUDA graph (PyTorch's whole-network capture): three
    eager steps on a side stream first (allocator and autograd warm-up, as documented), then
    the capture; replaying it refills the static .grad tensors in place, so no zero_grad."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), labels).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)  # .grad then lives in the graph's pool
    with torch.cuda.graph(graph):
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()

    def replay() -> float:
        graph.replay()
        return loss.item()

    return replay


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one timed step, no warm-up")
    ap.add_argument("--only", help="comma-separated config names (peaks-small, ..., scale-n, scale-N, mem-depth)")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--no-compile", action="store_true", help="no torch.compile lines")
    ap.add_argument("--no-cudagraph", action="store_true", help="no CUDA-graph lines")
    ap.add_argument("--compile-all", action="store_true", help="torch.compile every job, not only the workloads")
    ap.add_argument("--compile-max-steps", type=int, default=32,
                    help="compile the whole module up to this depth, one Verlet step beyond it")
    ap.add_argument("--plan", help="JSON file with the job list (written by cargo xtask bench)")
    ap.add_argument("--steps", type=int, help="timed steps (default 5, 1 with --quick)")
    ap.add_argument("--warmup", type=int, help="warm-up steps (default 1, 0 with --quick)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    args.steps = args.steps if args.steps is not None else (1 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    if args.plan:
        with open(args.plan) as f:
            jobs = json.load(f)
    else:
        jobs = default_plan(args.quick)
    if args.only:
        keep = set(args.only.split(","))
        jobs = [j for j in jobs if j["config"] in keep]

    threads = cores()
    torch.set_num_threads(threads)
    # f32 matmuls on CUDA, as the engine computes (pinned: the default has changed before).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    targets = []
    if args.device in ("cpu", "all"):
        targets.append((torch.device("cpu"), "cpu", f"{cpu_model()} ({threads} threads)", threads))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        name = f"{p.name} (CUDA {torch.version.cuda}, sm_{p.major}{p.minor}, {p.total_memory >> 20} MiB)"
        targets.append((torch.device("cuda", 0), "gpu", name, 1))
    elif args.device == "cuda":
        print("bench.py: CUDA is not available", file=sys.stderr)
        return 2
    impls = ["torch-eager"] + ([] if args.no_cudagraph else ["torch-cudagraph"])
    impls += [] if args.no_compile else ["torch-compile"]
    compiled = {"peaks-small"} if args.quick else COMPILED
    failed = 0
    # One untimed eager job per device first (thread pool, CUDA context, cuBLAS workspace), as
    # the xtask warms the engine before its first job: neither side's first line pays for it.
    warm = dict(config="warm-up", d=2, w=8, N=4, C=5, n=4096)  # small: the xtask's warm-up job
    for dev, target, name, thr in targets:
        if any(j["target"] == target for j in jobs):
            run_job(dict(warm, target=target), "torch-eager", dev, name, thr, args)
    # Every eager line first, then the (quick) CUDA graphs: compiling is slow, and a run cut
    # short should lose only those.
    for impl in impls:
        for dev, target, name, thr in targets:
            if impl == "torch-cudagraph" and dev.type != "cuda":
                continue
            for job in (j for j in jobs if j["target"] == target):
                if impl != "torch-eager" and not args.compile_all and job["config"] not in compiled:
                    continue
                rec = run_job(job, impl, dev, name, thr, args)
                print(json.dumps(rec), flush=True)
                s = rec["s_per_step"]
                status = f"{s:.4g} s/step" if s is not None else f"error: {rec['error']}"
                if not args.quiet:
                    print(f"bench.py: {impl} {dev.type} {job['config']} N={job['N']} n={job['n']}: {status}",
                          file=sys.stderr, flush=True)
                failed += "error" in rec and impl == "torch-eager"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
