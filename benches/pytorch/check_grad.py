"""Checks `stablenet grad` against PyTorch autograd.

For every fixture NAME in tests/fixtures/torch/ it runs

    BIN grad --model NAME.model.safetensors --data NAME.data.safetensors \\
             --out TMP/NAME.grads.safetensors [--backend BACKEND]

and compares each tensor of the output (the six model tensors and `loss`) with the
fixture's torch gradients: relative error max|a - b| / max(max|b|, 1e-12), per tensor,
with b the reference. Any error above --tol (1e-4), a missing or misshapen tensor, or a
failed run fails the check (exit 1). Exit 2: usage error (no binary, no fixtures).

The fixture check needs only numpy and safetensors. With --fresh it also draws new random
models (several seeds, every integrator, both activations, random sizes, all three label
dtypes), computes their gradients live with torch autograd (float64 from the float32
values) and compares in the same way; that needs torch.

    python benches/pytorch/check_grad.py --bin target/release/stablenet [--backend cpu]
    python benches/pytorch/check_grad.py --fresh --seeds 8

--bin is split like a shell word list, so a command prefix also works, e.g.
--bin "python benches/pytorch/stable_net.py" (the torch stand-in for the CLI).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures" / "torch"
GROUP_NAMES = (
    "opening.weight",
    "opening.bias",
    "steps.weight",
    "steps.bias",
    "classifier.weight",
    "classifier.bias",
)
CHECKED = GROUP_NAMES + ("loss",)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def resolve_bin(spec: str) -> list[str]:
    cmd = shlex.split(spec)
    if not cmd:
        raise SystemExit("check_grad: --bin is empty")
    exe = cmd[0]
    if shutil.which(exe) is None:
        alt = ROOT / exe
        if Path(exe).is_absolute() or not (alt.is_file() and shutil.which(str(alt))):
            raise FileNotFoundError(exe)
        cmd[0] = str(alt)
    return cmd


class Report:
    def __init__(self, tol: float):
        self.tol = tol
        self.failures: list[str] = []
        self.worst = 0.0
        self.cases = 0

    def fail(self, case: str, why: str) -> None:
        self.failures.append(f"{case}: {why}")
        print(f"  FAIL {case}: {why}")

    def compare(self, case: str, got_path: Path, want: dict[str, np.ndarray]) -> None:
        self.cases += 1
        try:
            got = load_file(str(got_path))
        except Exception as e:  # noqa: BLE001
            self.fail(case, f"cannot read {got_path}: {e}")
            return
        parts = []
        for name in CHECKED:
            b = want[name]
            if name not in got:
                self.fail(case, f"output lacks {name!r}")
                continue
            a = got[name]
            if tuple(a.shape) != tuple(b.shape):
                self.fail(case, f"{name}: shape {list(a.shape)}, expected {list(b.shape)}")
                continue
            if a.dtype != np.float32:
                print(f"  note {case}: {name} is {a.dtype}, the contract says f32")
            if not np.all(np.isfinite(a)):
                self.fail(case, f"{name}: non-finite values")
                continue
            e = rel_err(a, b)
            self.worst = max(self.worst, e)
            flag = "" if e <= self.tol else " <-- FAIL"
            parts.append(f"{name} {e:.1e}{flag}")
            if e > self.tol:
                self.fail(case, f"{name}: relative error {e:.2e} > {self.tol:g}")
        extra = sorted(set(got) - set(CHECKED))
        if extra:
            print(f"  note {case}: extra tensors in the output {extra}")
        print(f"  {case}: " + ", ".join(parts))


def run_grad(cmd, backend, model, data, out, timeout) -> str | None:
    """Runs `cmd grad ...`; returns None on success, else a description of the failure."""
    argv = cmd + ["grad", "--model", str(model), "--data", str(data), "--out", str(out)]
    if backend:
        argv += ["--backend", backend]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s: {shlex.join(argv)}"
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        return f"exit {p.returncode}: {shlex.join(argv)}\n      " + "\n      ".join(tail)
    if not Path(out).is_file():
        return f"exit 0 but no {out}"
    return None


def check_fixtures(cmd, a, tmp: Path, rep: Report) -> None:
    models = sorted(a.fixtures.glob("*.model.safetensors"))
    if not models:
        raise SystemExit(f"check_grad: no *.model.safetensors in {a.fixtures}")
    print(f"fixtures in {a.fixtures} ({len(models)} cases)")
    for model in models:
        name = model.name[: -len(".model.safetensors")]
        data = a.fixtures / f"{name}.data.safetensors"
        want = load_file(str(a.fixtures / f"{name}.grads.safetensors"))
        out = tmp / f"{name}.grads.safetensors"
        err = run_grad(cmd, a.backend, model, data, out, a.timeout)
        if err:
            rep.cases += 1
            rep.fail(name, err)
            continue
        rep.compare(name, out, want)


def fresh_problems(seeds: int):
    """Yields (name, model, x, labels, label_dtype) for random problems; needs torch."""
    import torch

    from stable_net import INTEGRATORS, preactivations, random_problem, reference_grads

    label_dtypes = (torch.int64, torch.int32, torch.uint8)
    for seed in range(seeds):
        for k, integ in enumerate(INTEGRATORS):
            g = torch.Generator().manual_seed(20_000 + 97 * seed + k)
            big = seed % 4 == 3
            for _ in range(1000):
                r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
                d, w = (r(2, 6), r(12, 24)) if big else (r(1, 5), r(1, 8))
                steps = r(16, 48) if big else r(1, 12)
                classes, n = r(2, 5), (r(16, 40) if big else r(1, 16))
                T = 0.5 + 2.5 * float(torch.rand((), generator=g, dtype=torch.float64))
                # relu only on small problems: on big ones some of the ~10^4 arguments of
                # sigma always fall within round-off reach of the kink.
                act = "relu" if (seed + k) % 2 and not big else "tanh"
                gamma = float(10 ** (-4 + 3 * torch.rand((), generator=g, dtype=torch.float64))) if integ == "antisym" else 0.0
                m, x, labels = random_problem(g, d, w, steps, classes, n, integ, T, act, gamma)
                pre = preactivations(m, x).abs()
                if pre.max() > 3.0 or (act == "relu" and pre.min() < 1e-3):
                    continue  # saturated, or a relu kink within round-off
                _, grads = reference_grads(m, x, labels)
                if min(float(v.abs().max()) for v in grads.values()) < 1e-6:
                    continue  # a vanishing gradient tensor makes the relative error meaningless
                break
            else:
                raise RuntimeError(f"no acceptable draw for seed {seed}, {integ}")
            name = f"fresh{seed}_{integ}_{act}_d{d}w{w}N{steps}C{classes}n{n}"
            yield name, m, x, labels, label_dtypes[(seed + k) % 3]


def check_fresh(cmd, a, tmp: Path, rep: Report) -> None:
    sys.path.insert(0, str(HERE))
    try:
        from stable_net import load_data, load_model, reference_grads, save_data, save_grads, save_model
    except ImportError as e:
        raise SystemExit(f"check_grad: --fresh needs torch ({e})")
    print(f"fresh random problems ({a.seeds} seeds x 4 integrators), gradients by torch autograd live")
    for name, m, x, labels, label_dtype in fresh_problems(a.seeds):
        model, data = tmp / f"{name}.model.safetensors", tmp / f"{name}.data.safetensors"
        save_model(model, m)
        save_data(data, x, labels, label_dtype)
        loss, grads = reference_grads(load_model(model), *load_data(data))
        ref = tmp / f"{name}.ref.safetensors"
        save_grads(ref, loss, grads)  # the same f32 rounding as the fixtures
        want = load_file(str(ref))
        out = tmp / f"{name}.grads.safetensors"
        err = run_grad(cmd, a.backend, model, data, out, a.timeout)
        if err:
            rep.cases += 1
            rep.fail(name, err)
            continue
        rep.compare(name, out, want)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/stablenet", help="the stablenet binary (or a command prefix)")
    ap.add_argument("--backend", default=None, help="passed on as --backend BACKEND (e.g. cpu)")
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--tol", type=float, default=1e-4, help="largest accepted relative error per tensor")
    ap.add_argument("--fresh", action="store_true", help="also check new random problems against live autograd (torch)")
    ap.add_argument("--seeds", type=int, default=6, help="number of seeds for --fresh (each: all four integrators)")
    ap.add_argument("--no-fixtures", action="store_true", help="skip the committed fixtures (with --fresh)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed for one `grad` run")
    ap.add_argument("--keep", type=Path, default=None, help="write the outputs here instead of a temp dir")
    a = ap.parse_args()
    try:
        cmd = resolve_bin(a.bin)
    except FileNotFoundError as e:
        print(f"check_grad: binary not found: {e} (build it: cargo build --release)", file=sys.stderr)
        return 2
    rep = Report(a.tol)
    with tempfile.TemporaryDirectory(prefix="check_grad.") as t:
        tmp = a.keep or Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        if not a.no_fixtures:
            check_fixtures(cmd, a, tmp, rep)
        if a.fresh:
            check_fresh(cmd, a, tmp, rep)
    if rep.cases == 0:
        print("check_grad: nothing was checked", file=sys.stderr)
        return 2
    print(f"{rep.cases} cases, worst relative error {rep.worst:.2e} (tol {a.tol:g})")
    if rep.failures:
        print(f"check_grad: {len(rep.failures)} FAILURE(S)")
        for f in rep.failures:
            print(f"  {f.splitlines()[0]}")
        return 1
    print("check_grad: all gradients agree with PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
