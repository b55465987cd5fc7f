"""Writes the PyTorch gradient fixtures of the image network into tests/fixtures/torch/image/.

One file per case, NAME.safetensors, everything float64 except the labels:
  every parameter under its name (image_net.py: opening.weight, stages.{s}.weight, ...),
  x [n, c0, H, W], labels int64 [n], logits [n, C], loss [1] (mean cross-entropy), and
  grad.<parameter name>: the gradient of the loss (torch autograd, float64);
metadata (strings) integrator, activation, channels, steps, final_time, gamma, classes,
height, width, in_channels. And README.md describing them.

    python benches/pytorch/make_image_fixtures.py            # (re)write tests/fixtures/torch/image
    python benches/pytorch/make_image_fixtures.py --check    # regenerate in a temp dir, compare bytes

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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_net import StableImageNet, load_image_net, param_names, save_image_net  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "torch" / "image"

# Sizes shared by every case.
C0, HEIGHT, WIDTH = 1, 8, 8
CHANNELS = (2, 3)
STEPS = 3
FINAL_TIME = 1.0
CLASSES = 4
N_EXAMPLES = 5
GAMMA_ANTISYM = 0.1
PARAM_STD = 0.5  # every weight and bias ~ PARAM_STD N(0, 1)
# Acceptance of a draw (otherwise the next sub-seed is tried):
MAX_PREACT = 4.0  # tanh: max |argument of sigma| (tanh' >= 1.3e-3)
MAX_PREACT_RELU = 8.0  # relu: max |argument of sigma| (keeps the values moderate)
RELU_MARGIN = 1e-4  # relu: min |argument|; f32 round-off (~1e-6 here) must not flip a kink
MIN_SLICE_GRAD = 1e-3  # every step's dK_j, db_j carries >= this fraction of the stage's max


@dataclass(frozen=True)
class Case:
    name: str
    integrator: str
    seed: int
    activation: str = "tanh"

    @property
    def gamma(self) -> float:
        return GAMMA_ANTISYM if self.integrator == "antisym" else 0.0


CASES = [
    Case("resnet", "resnet", seed=2001),
    Case("antisym", "antisym", seed=2002),
    Case("hamiltonian", "hamiltonian", seed=2003),
    Case("leapfrog", "leapfrog", seed=2004),
    Case("hamiltonian_relu", "hamiltonian", seed=2005, activation="relu"),
    Case("leapfrog_relu", "leapfrog", seed=2006, activation="relu"),
]


def draw(case: Case, sub: int):
    g = torch.Generator().manual_seed(case.seed * 1000 + sub)
    m = StableImageNet(case.integrator, case.activation, C0, CHANNELS, STEPS, FINAL_TIME, case.gamma,
                       CLASSES).to(torch.float64)
    with torch.no_grad():
        for p in m.parameters():  # state_dict order
            p.copy_(PARAM_STD * torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.rand(N_EXAMPLES, C0, HEIGHT, WIDTH, generator=g, dtype=torch.float64)
    labels = torch.randperm(N_EXAMPLES, generator=g) % CLASSES  # every class occurs
    labels = labels[torch.randperm(N_EXAMPLES, generator=g)]
    return m, x, labels


def preactivations(m: StableImageNet, x: torch.Tensor) -> torch.Tensor:
    """Every argument of sigma in the forward pass, flattened."""
    rec = []
    sig = m.sigma
    m.sigma = lambda u: (rec.append(u.detach().reshape(-1)), sig(u))[1]
    try:
        with torch.no_grad():
            m(x)
    finally:
        del m.sigma
    return torch.cat(rec)


def reference(m: StableImageNet, x: torch.Tensor, labels: torch.Tensor):
    """(logits, loss, {name: grad}) in float64 by autograd."""
    m.zero_grad(set_to_none=True)
    logits = m(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in m.named_parameters()}
    return logits.detach(), loss.detach(), grads


def acceptable(case: Case, m, x, labels):
    pre = preactivations(m, x)
    if pre.abs().max() > (MAX_PREACT if case.activation == "tanh" else MAX_PREACT_RELU):
        return False, "max |u| too large"
    if case.activation == "relu" and pre.abs().min() < RELU_MARGIN:
        return False, "relu argument near the kink"
    _, _, grads = reference(m, x, labels)
    for name, gr in grads.items():
        if gr.abs().max() < 1e-6:
            return False, "a gradient vanishes"
        if name.startswith("stages."):
            per = gr.reshape(gr.shape[0], -1).abs().amax(1)
            if per.min() < MIN_SLICE_GRAD * per.max():
                return False, "a step's gradient is negligible"
    return True, ""


def write_case(case: Case, out: Path) -> dict:
    rejected: dict[str, int] = {}
    for sub in range(200):
        m, x, labels = draw(case, sub)
        ok, why = acceptable(case, m, x, labels)
        if ok:
            break
        rejected[why] = rejected.get(why, 0) + 1
    else:
        raise RuntimeError(f"{case.name}: no acceptable draw")
    logits, loss, grads = reference(m, x, labels)
    extra = {"x": x, "labels": labels.to(torch.int64), "logits": logits, "loss": loss.reshape(1)}
    extra.update({f"grad.{k}": v for k, v in grads.items()})
    path = out / f"{case.name}.safetensors"
    save_image_net(path, m, HEIGHT, WIDTH, dtype=torch.float64, extra=extra)

    # Recompute from the file, exactly as a consumer would see it.
    from safetensors.torch import load_file

    m2, meta = load_image_net(path, dtype=torch.float64)
    t = load_file(str(path))
    assert meta == m.metadata(HEIGHT, WIDTH)
    assert set(t) == set(param_names(CHANNELS)) | set(extra), sorted(t)
    for k, v in m.state_dict().items():
        assert torch.equal(m2.state_dict()[k], v), k
    logits2, loss2, grads2 = reference(m2, t["x"], t["labels"])
    assert torch.equal(logits2, t["logits"]) and torch.equal(loss2.reshape(1), t["loss"])
    for k, v in grads2.items():
        assert torch.equal(v, t[f"grad.{k}"]), k
    pre = preactivations(m2, t["x"])
    return {
        "case": case,
        "draw": sub,
        "rejected": rejected,
        "loss": loss.item(),
        "max_pre": pre.abs().max().item(),
        "min_pre": pre.abs().min().item(),
        "grad_max": {k: v.abs().max().item() for k, v in grads.items()},
        "bytes": path.stat().st_size,
    }


def readme(infos: list[dict]) -> str:
    rows = []
    for info in infos:
        c = info["case"]
        rows.append(f"| `{c.name}` | {c.integrator} | {c.activation} | {c.gamma:g} | {info['loss']:.6f} "
                    f"| {info['max_pre']:.2f} | {info['min_pre']:.1e} |")
    table = "\n".join(rows)
    names = ", ".join(f"`{k}`" for k in param_names(CHANNELS))
    return f"""# PyTorch gradient fixtures of the image network

Reference gradients from an independent PyTorch implementation of the image network
(issue 6; `benches/pytorch/image_net.py`: F.conv2d, F.conv_transpose2d, F.avg_pool2d,
autograd), so that the Rust tests can compare the engine with PyTorch autograd without
PyTorch installed.

Made with torch {torch.__version__} (the PyPI wheel, run on the CPU), Python
{sys.version.split()[0]}, by

    python benches/pytorch/make_image_fixtures.py

(`--check` regenerates them in a temporary folder and compares the bytes;
`python benches/pytorch/image_net.py check` runs the adjoint dot test of
conv2d / conv_transpose2d, compares the forward pass with a NumPy transcription of the spec
and runs a float64 gradcheck for every integrator and activation). Deterministic: each case
draws from its own seeded `torch.Generator`.

## Each file NAME.safetensors

Everything float64 except `labels`:

- the parameters, under their names and PyTorch shapes: {names}
  (`opening.weight` [2, 1, 3, 3], `stages.0.weight` [3, 2, 2, 3, 3], `stages.1.weight`
  [3, 3, 3, 3, 3], `stages.s.bias` [3, c_s], `widen.0.weight` [3, 2, 1, 1],
  `classifier.weight` [4, 3]);
- `x` [{N_EXAMPLES}, {C0}, {HEIGHT}, {WIDTH}] (NCHW), `labels` int64 [{N_EXAMPLES}] (every class occurs);
- `logits` [{N_EXAMPLES}, {CLASSES}], `loss` [1]: the mean cross-entropy (no regularisers);
- `grad.<parameter name>`: the gradient of `loss` w.r.t. that parameter, same shape;
- metadata (strings): `integrator`, `activation`, `channels` ("{','.join(map(str, CHANNELS))}"),
  `steps` ("{STEPS}", per stage), `final_time` ("{FINAL_TIME!r}", per stage), `gamma`, `classes`,
  `height`, `width`, `in_channels`.

## Cases

c0 = {C0}, H = W = {HEIGHT}, channels {list(CHANNELS)} (two stages: the widen / 2x2 average-pool
path runs once), N = {STEPS} steps per stage, T = {FINAL_TIME:g} per stage (h = T / N), C = {CLASSES}
classes, n = {N_EXAMPLES} examples, x ~ U[0, 1]; every weight and bias ~ {PARAM_STD} N(0, 1). A draw is
kept only if every argument of sigma satisfies |u| <= {MAX_PREACT:g} (tanh not saturated), for relu
|u| >= {RELU_MARGIN:g} (round-off cannot flip a kink) and |u| <= {MAX_PREACT_RELU:g}, and every
step's dK_j and db_j is non-negligible. "max|u|" / "min|u|" are the largest / smallest argument of sigma.

| name | integrator | sigma | gamma | loss | max\\|u\\| | min\\|u\\| |
|---|---|---|---|---|---|---|
{table}
"""


def generate(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)  # the modules' default init (overwritten) must not vary either
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
            have = sorted(p.name for p in a.out.iterdir()) if a.out.is_dir() else []
            _, mismatch, errors = filecmp.cmpfiles(tmp, a.out, names, shallow=False)
            extra = sorted(set(have) - set(names))
            if mismatch or errors or extra:
                print(f"fixtures differ: changed {mismatch}, missing {errors}, extra {extra}")
                return 1
            print(f"fixtures in {a.out} are reproduced byte for byte ({len(names)} files)")
            return 0
    infos = generate(a.out)
    total = sum(p.stat().st_size for p in a.out.iterdir())
    for info in infos:
        c = info["case"]
        gm = ", ".join(f"{k} {v:.1e}" for k, v in info["grad_max"].items())
        print(f"{c.name:17s} draw {info['draw']} loss {info['loss']:.6f} max|u| {info['max_pre']:.2f} "
              f"min|u| {info['min_pre']:.1e} {info['bytes']} bytes\n"
              f"    rejected draws: {info['rejected'] or 'none'}\n"
              f"    max|grad|: {gm}")
    print(f"wrote {len(list(a.out.iterdir()))} files, {total} bytes, into {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
