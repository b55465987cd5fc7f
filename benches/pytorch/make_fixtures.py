"""Writes the PyTorch gradient fixtures into tests/fixtures/torch/.

For every case NAME:
  NAME.model.safetensors  f32 model (model-file names, metadata integrator, final_time,
                          activation, gamma)
  NAME.data.safetensors   x f32 [n, d], labels int64 [n] (one case int32, one uint8)
  NAME.grads.safetensors  f32 gradients of the mean cross-entropy w.r.t. every model
                          tensor (same names and shapes) and loss (f32, shape []),
                          computed by torch autograd in float64 from the f32 values.
and README.md describing them.

    python benches/pytorch/make_fixtures.py            # (re)write tests/fixtures/torch
    python benches/pytorch/make_fixtures.py --check    # regenerate in a temp dir, compare bytes

Deterministic: every case draws from its own seeded torch.Generator.
"""
from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stable_net import (  # noqa: E402
    load_data,
    load_model,
    preactivations,
    random_problem,
    reference_grads,
    save_data,
    save_grads,
    save_model,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "torch"


@dataclass(frozen=True)
class Case:
    name: str
    integrator: str
    seed: int
    activation: str = "tanh"
    gamma: float = 0.0
    d: int = 2
    w: int = 4
    steps: int = 6
    classes: int = 3
    n: int = 8
    final_time: float = 2.0
    label_dtype: torch.dtype = torch.int64


CASES = [
    Case("resnet", "resnet", seed=1001),
    Case("antisym", "antisym", seed=1002, gamma=0.05),
    Case("hamiltonian", "hamiltonian", seed=1003),
    Case("leapfrog", "leapfrog", seed=1004),
    Case("hamiltonian_relu", "hamiltonian", seed=1005, activation="relu", label_dtype=torch.uint8),
    Case("leapfrog_odd", "leapfrog", seed=1006, d=3, w=5, steps=7, classes=4, n=9, final_time=1.7,
         label_dtype=torch.int32),
    Case("antisym_odd", "antisym", seed=1007, gamma=0.05, d=3, w=5, steps=7, classes=4, n=9,
         final_time=1.7),
]

# Scales of the random parameters. Weights K ~ N(0, 1/fan_in) as in the CLI's
# initialisation, times WEIGHT_SCALE so tanh stays away from saturation; biases
# ~ BIAS_STD * N(0, 1), non-zero so that every gradient is non-trivial.
WEIGHT_SCALE = 0.8
BIAS_STD = 0.3
# Acceptance of a draw (otherwise the next sub-seed is tried):
MAX_PREACT = 2.5  # max |argument of sigma| (tanh' >= 0.026)
RELU_MARGIN = 1e-3  # min |argument of relu|: f32 round-off must not flip a kink
MIN_SLICE_GRAD = 1e-3  # every step's dK_j, db_j carries >= this fraction of the max


def draw(case: Case, sub: int):
    g = torch.Generator().manual_seed(case.seed * 1000 + sub)
    return random_problem(g, case.d, case.w, case.steps, case.classes, case.n, case.integrator,
                          case.final_time, case.activation, case.gamma, WEIGHT_SCALE, BIAS_STD)


def acceptable(case: Case, m, x, labels):
    pre = preactivations(m, x)
    if pre.abs().max() > MAX_PREACT:
        return False, f"max |preactivation| {pre.abs().max():.2f}"
    if case.activation == "relu" and pre.abs().min() < RELU_MARGIN:
        return False, f"relu argument {pre.abs().min():.1e} too close to the kink"
    loss, grads = reference_grads(m, x, labels)
    for name, gr in grads.items():
        if gr.abs().max() < 1e-6:
            return False, f"{name} gradient vanishes"
    for name in ("steps.weight", "steps.bias"):
        gr = grads[name]
        per = gr.reshape(gr.shape[0], -1).abs().amax(1)
        if per.min() < MIN_SLICE_GRAD * per.max():
            return False, f"{name} gradient of step {int(per.argmin())} is negligible"
    return True, ""


def write_case(case: Case, out: Path) -> dict:
    for sub in range(100):
        m, x, labels = draw(case, sub)
        ok, why = acceptable(case, m, x, labels)
        if ok:
            break
        print(f"  {case.name}: draw {sub} rejected ({why})")
    else:
        raise RuntimeError(f"{case.name}: no acceptable draw")
    save_model(out / f"{case.name}.model.safetensors", m)
    save_data(out / f"{case.name}.data.safetensors", x, labels, label_dtype=case.label_dtype)
    # Recompute from the files, exactly as a consumer would see them.
    m2 = load_model(out / f"{case.name}.model.safetensors")
    x2, labels2 = load_data(out / f"{case.name}.data.safetensors")
    assert torch.equal(x2, x) and torch.equal(labels2, labels)
    for k, v in m.file_tensors().items():
        assert torch.equal(m2.file_tensors()[k], v), k
    assert m2.metadata() == m.metadata()
    loss, grads = reference_grads(m2, x2, labels2)
    save_grads(out / f"{case.name}.grads.safetensors", loss, grads)
    pre = preactivations(m2, x2)
    return {
        "case": case,
        "draw": sub,
        "loss": loss.item(),
        "max_pre": pre.abs().max().item(),
        "min_pre": pre.abs().min().item(),
        "grad_max": {k: v.abs().max().item() for k, v in grads.items()},
    }


def readme(infos: list[dict]) -> str:
    label_name = {torch.int64: "int64", torch.int32: "int32", torch.uint8: "uint8"}
    rows = []
    for info in infos:
        c = info["case"]
        rows.append(
            f"| `{c.name}` | {c.integrator} | {c.activation} | {c.gamma:g} | {c.d} | {c.w} | {c.steps} "
            f"| {c.classes} | {c.n} | {c.final_time:g} | {label_name[c.label_dtype]} | {info['loss']:.6f} "
            f"| {info['max_pre']:.2f} |"
        )
    table = "\n".join(rows)
    return f"""# PyTorch gradient fixtures

Reference gradients from an independent PyTorch implementation of MODEL.md
(`benches/pytorch/stable_net.py`), so that the Rust tests can compare `stablenet grad`
with PyTorch autograd without PyTorch installed.

Made with torch {torch.__version__} (the PyPI wheel, run on the CPU), Python
{sys.version.split()[0]}, by

    python benches/pytorch/make_fixtures.py

(`--check` regenerates them in a temporary folder and compares the bytes;
`benches/pytorch/requirements.txt` pins the versions). Deterministic: each case draws
from its own seeded `torch.Generator`.

## Files, for each case NAME

- `NAME.model.safetensors`: the model, f32: `opening.weight` [w, d], `opening.bias` [w],
  `steps.weight` [N, w, w], `steps.bias` [N, w], `classifier.weight` [C, w],
  `classifier.bias` [C]; metadata `integrator`, `final_time` (decimal string),
  `activation`, `gamma` (decimal string).
- `NAME.data.safetensors`: `x` f32 [n, d] and `labels` [n] (int64, except
  `hamiltonian_relu`: uint8 and `leapfrog_odd`: int32).
- `NAME.grads.safetensors`: f32 gradient of the mean cross-entropy (no regularisers)
  w.r.t. every model tensor, under the same name and shape, and `loss` (f32, shape []).
  Computed by autograd in **float64** from the f32 values in the two files above, then
  rounded to f32.

## Cases

Parameters: K ~ {WEIGHT_SCALE} N(0, 1/fan_in) for `opening.weight`, `steps.weight`,
`classifier.weight`; every bias ~ {BIAS_STD} N(0, 1); x ~ N(0, 1); every class occurs in
the labels. A draw is kept only if every argument of sigma satisfies |u| <= {MAX_PREACT}
(tanh is not saturated), for relu |u| >= {RELU_MARGIN:g} (f32 round-off cannot flip a kink),
and every step's dK_j and db_j is non-negligible. "max|u|" is the largest argument of sigma.

| name | integrator | sigma | gamma | d | w | N | C | n | T | labels | loss | max\\|u\\| |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
{table}

## Comparing

`benches/pytorch/check_grad.py --bin target/release/stablenet` runs `stablenet grad` on
every case and reports, per tensor, `max|a - b| / max(max|b|, 1e-12)` (b: the fixture);
it fails above 1e-4. For scale: torch's own float32 autograd lands at <= 3e-6 on these
cases, and at <= 7e-6 on `check_grad.py --fresh` (worst: deep leapfrog).
"""


def generate(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)  # nn.Linear's default init (overwritten) must not vary either
    infos = [write_case(c, out) for c in CASES]
    (out / "README.md").write_text(readme(infos))
    return infos


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="regenerate in a temp dir and compare with --out")
    a = ap.parse_args()
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            names = sorted(p.name for p in Path(tmp).iterdir())
            # files only: image/ belongs to make_image_fixtures.py
            have = sorted(p.name for p in a.out.iterdir() if p.is_file()) if a.out.is_dir() else []
            _, mismatch, errors = filecmp.cmpfiles(tmp, a.out, names, shallow=False)
            extra = sorted(set(have) - set(names))
            if mismatch or errors or extra:
                print(f"fixtures differ: changed {mismatch}, missing {errors}, extra {extra}")
                return 1
            print(f"fixtures in {a.out} are reproduced byte for byte ({len(names)} files)")
            return 0
    infos = generate(a.out)
    total = sum(p.stat().st_size for p in a.out.iterdir() if p.is_file())
    for info in infos:
        c = info["case"]
        gm = ", ".join(f"{k} {v:.2e}" for k, v in info["grad_max"].items())
        print(f"{c.name:17s} draw {info['draw']} loss {info['loss']:.6f} max|u| {info['max_pre']:.2f} "
              f"min|u| {info['min_pre']:.1e}\n    max|grad|: {gm}")
    print(f"wrote {sum(p.is_file() for p in a.out.iterdir())} files, {total} bytes, into {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
