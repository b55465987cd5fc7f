"""Times PyTorch training of the image network (image_net.py) on MNIST or Fashion-MNIST.

    python benches/pytorch/image_bench.py --data-dir data/mnist [--integrator hamiltonian]
        [--channels 8,16,32] [--steps 2] [--final-time 1] [--activation tanh] [--gamma 0]
        [--batch-size 128] [--lr 1e-3] [--max-batches K] [--warmup 2] [--threads 2]
        [--device cpu|cuda] [--compile] [--eval] [--seed 0]

Trains with Adam (mean cross-entropy, pixels / 255) on shuffled batches of the training set
(the last, partial batch of the epoch is dropped, so that every batch has the same shape).
The first --warmup batches (default 2; torch.compile compiles in them) are not timed; then
--max-batches K batches are timed, or without it the rest of one epoch. seconds_per_batch is
the wall time of the timed batches / K (CUDA synchronised before and after, not in between);
seconds_per_epoch_est = seconds_per_batch * training images / batch_size (60000 for MNIST);
images_per_second = batch_size / seconds_per_batch; train_loss is the mean loss over every
trained batch (warm-up included). peak_rss_mib is the process's peak resident memory up to the
end of training (ru_maxrss: torch itself, about 0.5 GiB for the CUDA wheel, and the data
included; rss_before_training_mib, the resident memory just before the first batch, is that
baseline); on CUDA also peak_cuda_mib (torch.cuda.max_memory_allocated). With --eval, test_accuracy on the 10000 test images after
training (eager module, batches of 1000).

Prints one JSON line on stdout; progress goes to stderr.

IDX files: train-images-idx3-ubyte, train-labels-idx1-ubyte (and t10k-* for --eval), each
plain or gzip (detected by content; a plain file wins over its .gz twin), looked for in
DIR/mnist, DIR/fashion-mnist, then DIR (the engine's order: `cargo xtask data` stores them
under data/mnist and data/fashion-mnist). Exit status 2 when they are missing.
"""
from __future__ import annotations

import argparse
import gzip
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_net import StableImageNet  # noqa: E402
from stable_net import ACTIVATIONS, INTEGRATORS  # noqa: E402

TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_mib() -> float | None:
    """Current resident memory (VmRSS), MiB; None without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def find_file(d: Path, name: str) -> Path | None:
    for p in (d / name, d / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def find_set(root: Path, names) -> dict[str, Path] | None:
    """The first of root/mnist, root/fashion-mnist, root holding every file in `names`."""
    for d in (root / "mnist", root / "fashion-mnist", root):
        found = {n: find_file(d, n) for n in names}
        if all(found.values()):
            return found
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x0801 labels, 0x0803 images), plain or gzip."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    size = int(np.prod(dims))
    if len(raw) != start + size:
        raise ValueError(f"{path}: {len(raw) - start} data bytes for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def load_split(files: dict[str, Path], names) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [n, 1, H, W], labels int64 [n])."""
    images, labels = read_idx(files[names[0]]), read_idx(files[names[1]])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{files[names[0]]}: shapes {images.shape} and {labels.shape} do not match")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "data" / "mnist")
    ap.add_argument("--integrator", choices=INTEGRATORS, default="hamiltonian")
    ap.add_argument("--activation", choices=ACTIVATIONS, default="tanh")
    ap.add_argument("--channels", default="8,16,32")
    ap.add_argument("--steps", type=int, default=2, help="steps per stage")
    ap.add_argument("--final-time", type=float, default=1.0, help="T per stage")
    ap.add_argument("--gamma", type=float, default=0.0, help="antisym damping")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-batches", type=int, default=None, help="time K batches, extrapolate per epoch")
    ap.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the module")
    ap.add_argument("--eval", action="store_true", help="test accuracy after training")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    channels = [int(c) for c in a.channels.split(",") if c.strip()]

    need = TRAIN + (TEST if a.eval else ())
    files = find_set(a.data_dir, need)
    if files is None:
        log(f"no IDX files {', '.join(need)} (plain or .gz) in {a.data_dir}/mnist, "
            f"{a.data_dir}/fashion-mnist or {a.data_dir}; `cargo xtask data` fetches them into data/")
        return 2
    if a.device == "cuda" and not torch.cuda.is_available():
        log("--device cuda: torch.cuda.is_available() is false")
        return 1

    torch.set_num_threads(a.threads)
    # f32 convolutions and matmuls on CUDA, as the engine computes: cuDNN's default allows
    # TF32 for convolutions, which would compare PyTorch at lower precision.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    train_x, train_y = load_split(files, TRAIN)
    n_train, c0, H, W = train_x.shape
    if H % (1 << (len(channels) - 1)) or W % (1 << (len(channels) - 1)):
        log(f"{H}x{W} images cannot be pooled {len(channels) - 1} times by 2x2")
        return 1
    classes = int(train_y.max()) + 1
    train_x, train_y = train_x.to(dev), train_y.to(dev)
    data_dir = files[TRAIN[0]].parent

    model = StableImageNet(a.integrator, a.activation, c0, channels, a.steps, a.final_time, a.gamma,
                           classes).to(dev)
    step_model = torch.compile(model) if a.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)

    per_epoch = n_train // a.batch_size
    timed = a.max_batches if a.max_batches is not None else per_epoch - a.warmup
    total = a.warmup + timed
    if timed < 1:
        log("nothing to time: --max-batches must be >= 1 (and an epoch longer than --warmup)")
        return 1
    gen = torch.Generator().manual_seed(a.seed)
    order = torch.empty(0, dtype=torch.int64)

    def batch_indices(b: int) -> torch.Tensor:
        nonlocal order
        k = b % per_epoch
        if k == 0:
            order = torch.randperm(n_train, generator=gen)
        return order[k * a.batch_size:(k + 1) * a.batch_size].to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    loss_sum = torch.zeros((), device=dev)
    rss_before = rss_mib()
    log(f"{a.integrator} channels {channels} N {a.steps} on {data_dir}: {a.warmup} warm-up + {timed} timed "
        f"batches of {a.batch_size} ({a.device}, {'compile' if a.compile else 'eager'}, {a.threads} threads)")
    t_start = time.perf_counter()
    t0 = None
    for b in range(total):
        if b == a.warmup:
            sync()
            t0 = time.perf_counter()
            warm_s = t0 - t_start
        idx = batch_indices(b)
        x = train_x[idx].float().div_(255.0)
        loss = F.cross_entropy(step_model(x), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
    sync()
    elapsed = time.perf_counter() - t0
    train_loss = loss_sum.item() / total

    s_batch = elapsed / timed
    rec = {
        "engine": "pytorch",
        "mode": "compile" if a.compile else "eager",
        "device": a.device if dev.type == "cpu" else f"cuda ({torch.cuda.get_device_name(dev)})",
        "integrator": a.integrator,
        "activation": a.activation,
        "channels": channels,
        "steps": a.steps,
        "final_time": a.final_time,
        "batch_size": a.batch_size,
        "batches": timed,
        "warmup_batches": a.warmup,
        "warmup_s": round(warm_s, 4),
        "seconds_per_batch": s_batch,
        "seconds_per_epoch_est": s_batch * n_train / a.batch_size,
        "images_per_second": a.batch_size / s_batch,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_before_training_mib": rss_before,
        "threads": a.threads,
        "data": str(data_dir),
        "train_loss": train_loss,
        "torch_version": torch.__version__,
        "tf32": torch.backends.cudnn.allow_tf32,
    }
    if dev.type == "cuda":
        rec["peak_cuda_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20

    if a.eval:
        test_x, test_y = load_split(files, TEST)
        test_x, test_y = test_x.to(dev), test_y.to(dev)
        correct = 0
        model.eval()
        with torch.no_grad():
            for i in range(0, len(test_x), 1000):
                logits = model(test_x[i:i + 1000].float().div_(255.0))
                correct += (logits.argmax(1) == test_y[i:i + 1000]).sum().item()
        rec["test_accuracy"] = correct / len(test_x)

    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
