"""PyTorch twin of the image network (issue 6): stable ODE-inspired steps with 3x3
convolution operators.

Independent of the Rust engine: written the way a PyTorch user would (F.conv2d,
F.conv_transpose2d, F.avg_pool2d, autograd storing the activations). Used to make the
gradient fixtures in tests/fixtures/torch/image/ (make_image_fixtures.py) and to time
PyTorch on MNIST (image_bench.py).

A batch is NCHW, x of shape [n, c0, H, W], pixels in [0, 1]. With K a 3x3 kernel
[c_out, c_in, 3, 3] (conv2d weight layout):
    K y   = F.conv2d(y, K, padding=1)             (cross-correlation, zero "same" padding)
    K^T s = F.conv_transpose2d(s, K, padding=1)   (its exact adjoint)

    y_0 = sigma(conv3x3(x; opening) + b)                          c0 -> c_1
    stage s (c = channels[s], N steps, h = T / N, T per stage), step j:
      resnet:      y += h sigma(K_j y + b_j)
      antisym:     y += h sigma(0.5 (K_j y - K_j^T y - gamma y) + b_j)
      hamiltonian: z = 0 at the start of the stage; z -= h sigma(K_j^T y + b_j);
                   y += h sigma(K_j z + b_j)
      leapfrog:    y_{-1} = y_0 (of the stage); y_{j+1} = 2 y_j - y_{j-1} - h^2 K_j^T sigma(K_j y_j + b_j)
    between stages: y = avg_pool2d(sigma(conv1x1(y; widen.s) + b), 2)   c_s -> c_{s+1}, H/2, W/2
    logits = classifier(mean of y over the pixels); loss = mean cross-entropy.

Parameter names (state_dict() keys = safetensors names, PyTorch shapes):
    opening.weight [c_1, c0, 3, 3]          opening.bias [c_1]
    stages.{s}.weight [N, c_s, c_s, 3, 3]   stages.{s}.bias [N, c_s]       s = 0..S-1
    widen.{s}.weight [c_{s+1}, c_s, 1, 1]   widen.{s}.bias [c_{s+1}]       s = 0..S-2
    classifier.weight [C, c_S]              classifier.bias [C]
Model-file metadata (strings): integrator, activation, channels ("8,16,32"), steps,
final_time, gamma, classes, height, width, in_channels.

    python benches/pytorch/image_net.py check    # adjoint dot test, conv semantics, NumPy
                                                 # forward of the spec, float64 gradcheck
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stable_net import ACTIVATIONS, INTEGRATORS, decimal, write_safetensors  # noqa: E402


class StageParams(nn.Module):
    """The N kernels and biases of one stage: weight [N, c, c, 3, 3], bias [N, c]."""

    def __init__(self, steps: int, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(steps, c, c, 3, 3))
        self.bias = nn.Parameter(torch.empty(steps, c))


class StableImageNet(nn.Module):
    """opening 3x3 conv -> S stages of N integrator steps (widen + 2x2 pool between) ->
    global average pool -> linear classifier."""

    def __init__(
        self,
        integrator: str = "hamiltonian",
        activation: str = "tanh",
        c0: int = 1,
        channels=(8, 16, 32),
        steps: int = 2,
        final_time: float = 1.0,
        gamma: float = 0.0,
        classes: int = 10,
    ):
        super().__init__()
        if integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {integrator!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        channels = [int(c) for c in channels]
        if not channels or steps < 1:
            raise ValueError("need at least one stage and one step")
        self.integrator = integrator
        self.activation = activation
        self.c0 = int(c0)
        self.channels = channels
        self.steps = int(steps)
        self.final_time = float(final_time)
        self.gamma = float(gamma)
        self.classes = int(classes)
        self.opening = nn.Conv2d(c0, channels[0], 3, padding=1)
        self.stages = nn.ModuleList(StageParams(steps, c) for c in channels)
        self.widen = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(channels[:-1], channels[1:]))
        self.classifier = nn.Linear(channels[-1], classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """K ~ N(0, 1/fan_in) (fan_in = c_in * kernel pixels), every bias 0."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                else:
                    fan_in = p[0].numel() if not name.startswith("stages.") else p[0, 0].numel()
                    nn.init.normal_(p, std=1.0 / math.sqrt(fan_in))

    @property
    def h(self) -> float:
        return self.final_time / self.steps

    def sigma(self, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(u) if self.activation == "tanh" else torch.relu(u)

    def stage(self, s: int, y: torch.Tensor) -> torch.Tensor:
        """The N steps of stage s from y (= y_0 of the stage)."""
        h, sig = self.h, self.sigma
        K, b = self.stages[s].weight, self.stages[s].bias
        if self.integrator == "resnet":
            for j in range(self.steps):
                y = y + h * sig(F.conv2d(y, K[j], b[j], padding=1))
        elif self.integrator == "antisym":
            c = K.shape[1]
            eye = torch.eye(c, dtype=K.dtype, device=K.device)
            for j in range(self.steps):
                # 0.5 (K y - K^T y - gamma y) as one convolution: K^T y = conv2d(y, K^~) with
                # K^~[c][o] = K[o][c] flipped in both pixel directions; gamma y = the centre tap.
                A = 0.5 * (K[j] - K[j].transpose(0, 1).flip(-2, -1))
                A = A - F.pad((0.5 * self.gamma * eye)[:, :, None, None], (1, 1, 1, 1))
                y = y + h * sig(F.conv2d(y, A, b[j], padding=1))
        elif self.integrator == "hamiltonian":
            z = torch.zeros_like(y)
            for j in range(self.steps):
                z = z - h * sig(F.conv_transpose2d(y, K[j], b[j], padding=1))  # K_j^T y
                y = y + h * sig(F.conv2d(z, K[j], b[j], padding=1))  # K_j z
        elif self.integrator == "leapfrog":
            y_prev = y  # y_{-1} = y_0
            for j in range(self.steps):
                force = F.conv_transpose2d(sig(F.conv2d(y, K[j], b[j], padding=1)), K[j], padding=1)
                y, y_prev = 2 * y - y_prev - (h * h) * force, y
        else:  # pragma: no cover
            raise AssertionError(self.integrator)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sigma(self.opening(x))
        for s in range(len(self.channels)):
            y = self.stage(s, y)
            if s + 1 < len(self.channels):
                if y.shape[-2] % 2 or y.shape[-1] % 2:
                    raise ValueError(f"2x2 pooling after stage {s} needs an even size, not {tuple(y.shape[-2:])}")
                y = F.avg_pool2d(self.sigma(self.widen[s](y)), 2)
        return self.classifier(y.mean(dim=(2, 3)))

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x), labels.long())

    # ---- model-file view -------------------------------------------------

    def metadata(self, height: int, width: int) -> dict[str, str]:
        return {
            "integrator": self.integrator,
            "activation": self.activation,
            "channels": ",".join(str(c) for c in self.channels),
            "steps": str(self.steps),
            "final_time": decimal(self.final_time),
            "gamma": decimal(self.gamma),
            "classes": str(self.classes),
            "height": str(int(height)),
            "width": str(int(width)),
            "in_channels": str(self.c0),
        }


def param_names(channels) -> list[str]:
    """Every parameter name in file order (= state_dict order)."""
    names = ["opening.weight", "opening.bias"]
    names += [f"stages.{s}.{k}" for s in range(len(channels)) for k in ("weight", "bias")]
    names += [f"widen.{s}.{k}" for s in range(len(channels) - 1) for k in ("weight", "bias")]
    return names + ["classifier.weight", "classifier.bias"]


def save_image_net(path, model: StableImageNet, height: int, width: int, dtype=torch.float32,
                   extra: dict[str, torch.Tensor] | None = None) -> None:
    """The parameters (in `dtype`) under their names, metadata as in the module docstring,
    and any `extra` tensors (stored as given)."""
    tensors = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    write_safetensors(path, tensors, metadata=model.metadata(height, width))


def load_image_net(path, dtype=torch.float32):
    """(model, metadata) from a safetensors file with the names above. Shapes give c0, the
    channels, N and C; metadata gives integrator, activation, final_time, gamma (defaults
    hamiltonian, tanh, 1, 0). Tensors other than parameters (x, grad.*) are ignored."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    S = 0
    while f"stages.{S}.weight" in tensors:
        S += 1
    if S == 0:
        raise ValueError(f"{path}: no stages.0.weight")
    channels = [tensors[f"stages.{s}.weight"].shape[1] for s in range(S)]
    names = param_names(channels)
    missing = [k for k in names if k not in tensors]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing}")
    model = StableImageNet(
        integrator=meta.get("integrator", "hamiltonian"),
        activation=meta.get("activation", "tanh"),
        c0=tensors["opening.weight"].shape[1],
        channels=channels,
        steps=tensors["stages.0.weight"].shape[0],
        final_time=float(meta.get("final_time", "1")),
        gamma=float(meta.get("gamma", "0")),
        classes=tensors["classifier.weight"].shape[0],
    ).to(dtype)
    model.load_state_dict({k: tensors[k].to(dtype) for k in names})
    return model, meta


# ---- self-checks ---------------------------------------------------------------


def _checks() -> int:
    """Adjoint dot test, the spec's dK formula, the folded antisym kernel, the forward pass
    against a NumPy transcription of the spec, and gradcheck
    (float64) of every parameter and of x for every integrator and activation."""
    from torch.func import functional_call

    failed = []

    def report(ok, what):
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            failed.append(what)

    g = torch.Generator().manual_seed(7)
    d64 = dict(dtype=torch.float64, generator=g)

    # 1. <K y, s> = <y, K^T s> for conv2d / conv_transpose2d with padding=1.
    for (n, ci, co, H, W) in [(2, 3, 5, 7, 6), (1, 1, 4, 8, 8), (3, 4, 4, 5, 9)]:
        K = torch.randn(co, ci, 3, 3, **d64)
        y = torch.randn(n, ci, H, W, **d64)
        s = torch.randn(n, co, H, W, **d64)
        lhs = (F.conv2d(y, K, padding=1) * s).sum()
        rhs = (y * F.conv_transpose2d(s, K, padding=1)).sum()
        rel = abs(lhs - rhs).item() / abs(lhs).item()
        report(rel < 1e-13, f"adjoint dot test c {ci}->{co}, {H}x{W}: <Ky,s> {lhs.item():.12f} "
                            f"<y,K^T s> {rhs.item():.12f}, rel diff {rel:.1e}")

    # 2. conv2d is the spec's cross-correlation with zero padding, and autograd's weight
    #    gradient of <s, K y> is dK[o][c][di][dj] = sum_pixels s[o][i][j] ypad[c][i+di][j+dj].
    ci, co, H, W = 3, 2, 5, 4
    K = torch.randn(co, ci, 3, 3, **d64).requires_grad_()
    y = torch.randn(1, ci, H, W, **d64)
    s = torch.randn(1, co, H, W, **d64)
    ypad = F.pad(y, (1, 1, 1, 1))[0]
    Ky = torch.zeros(co, H, W, dtype=torch.float64)
    dK = torch.zeros(co, ci, 3, 3, dtype=torch.float64)
    for o in range(co):
        for i in range(H):
            for j in range(W):
                Ky[o, i, j] = (K[o].detach() * ypad[:, i:i + 3, j:j + 3]).sum()
                dK[o] += s[0, o, i, j] * ypad[:, i:i + 3, j:j + 3]
    out = F.conv2d(y, K, padding=1)
    (out * s).sum().backward()
    report(torch.allclose(out[0].detach(), Ky, rtol=0, atol=1e-13), "conv2d = the spec's K y (loops)")
    report(torch.allclose(K.grad, dK, rtol=0, atol=1e-12), "autograd dK = the spec's weight-gradient formula")

    # 3. The folded antisym kernel is 0.5 (K y - K^T y - gamma y).
    c, gamma = 3, 0.1
    K = torch.randn(c, c, 3, 3, **d64)
    y = torch.randn(2, c, 6, 5, **d64)
    eye = torch.eye(c, dtype=torch.float64)
    A = 0.5 * (K - K.transpose(0, 1).flip(-2, -1)) - F.pad((0.5 * gamma * eye)[:, :, None, None], (1, 1, 1, 1))
    want = 0.5 * (F.conv2d(y, K, padding=1) - F.conv_transpose2d(y, K, padding=1) - gamma * y)
    report(torch.allclose(F.conv2d(y, A, padding=1), want, rtol=0, atol=1e-13),
           "antisym folded kernel = 0.5 (K y - K^T y - gamma y)")

    # 4. The forward pass against a NumPy transcription of the spec, one example at a time,
    #    with K y and K^T s written as the spec's sums (shifted slices / scatter-add).
    import numpy as np

    def np_conv(y, K):  # y [c, H, W], K [o, c, k, k], zero "same" padding
        k = K.shape[-1]
        p, (_, H, W) = k // 2, y.shape
        ypad = np.pad(y, ((0, 0), (p, p), (p, p)))
        return sum(np.einsum("oc,chw->ohw", K[:, :, di, dj], ypad[:, di:di + H, dj:dj + W])
                   for di in range(k) for dj in range(k))

    def np_conv_t(s, K):  # the adjoint: s[o][i][j] K[o][c][di][dj] added into ypad[c][i+di][j+dj]
        _, H, W = s.shape
        out = np.zeros((K.shape[1], H + 2, W + 2))
        for di in range(3):
            for dj in range(3):
                out[:, di:di + H, dj:dj + W] += np.einsum("oc,ohw->chw", K[:, :, di, dj], s)
        return out[:, 1:-1, 1:-1]

    def np_forward(m, x):
        P = {k: v.detach().numpy() for k, v in m.state_dict().items()}
        sig = np.tanh if m.activation == "tanh" else (lambda u: np.maximum(u, 0.0))
        col = lambda b: b[:, None, None]  # noqa: E731
        y = sig(np_conv(x, P["opening.weight"]) + col(P["opening.bias"]))
        h = m.final_time / m.steps
        for s_ in range(len(m.channels)):
            Ks, bs = P[f"stages.{s_}.weight"], P[f"stages.{s_}.bias"]
            z, y_prev = np.zeros_like(y), y
            for j in range(m.steps):
                K, b = Ks[j], col(bs[j])
                if m.integrator == "resnet":
                    y = y + h * sig(np_conv(y, K) + b)
                elif m.integrator == "antisym":
                    y = y + h * sig(0.5 * (np_conv(y, K) - np_conv_t(y, K) - m.gamma * y) + b)
                elif m.integrator == "hamiltonian":
                    z = z - h * sig(np_conv_t(y, K) + b)
                    y = y + h * sig(np_conv(z, K) + b)
                else:
                    y, y_prev = 2 * y - y_prev - h * h * np_conv_t(sig(np_conv(y, K) + b), K), y
            if s_ + 1 < len(m.channels):
                u = sig(np_conv(y, P[f"widen.{s_}.weight"]) + col(P[f"widen.{s_}.bias"]))
                c_, H, W = u.shape
                y = u.reshape(c_, H // 2, 2, W // 2, 2).mean(axis=(2, 4))
        return P["classifier.weight"] @ y.mean(axis=(1, 2)) + P["classifier.bias"]

    for integ in INTEGRATORS:
        for act in ACTIVATIONS:
            torch.manual_seed(12)
            m = StableImageNet(integ, act, c0=2, channels=[3, 4, 2], steps=3, final_time=1.3,
                               gamma=0.1 if integ == "antisym" else 0.0, classes=5).double()
            with torch.no_grad():
                for p in m.parameters():
                    p.normal_(0.0, 0.5)
            x = torch.rand(3, 2, 8, 4, **d64)
            with torch.no_grad():
                got = m(x).numpy()
            want = np.stack([np_forward(m, xi) for xi in x.numpy()])
            err = np.abs(got - want).max() / np.abs(want).max()
            report(err < 1e-12, f"forward {integ:11s} {act} = NumPy transcription of the spec "
                                f"(channels [3,4,2], 8x4, N 3): rel diff {err:.1e}")

    # 5. gradcheck, float64, every parameter and x, every integrator and activation.
    for integ in INTEGRATORS:
        for act in ACTIVATIONS:
            torch.manual_seed(11)
            m = StableImageNet(integ, act, c0=1, channels=[2, 3], steps=2, final_time=1.0,
                               gamma=0.1 if integ == "antisym" else 0.0, classes=3).double()
            with torch.no_grad():
                for p in m.parameters():
                    p.normal_(0.0, 0.5)
            x = torch.rand(2, 1, 4, 4, **d64)
            labels = torch.tensor([0, 2])
            names = list(dict(m.named_parameters()))
            params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())

            def f(xx, *ps):
                return F.cross_entropy(functional_call(m, dict(zip(names, ps)), (xx,)), labels)

            ok = torch.autograd.gradcheck(f, (x.clone().requires_grad_(), *params), eps=1e-6,
                                          atol=1e-7, rtol=1e-5, raise_exception=False)
            npar = sum(p.numel() for p in params)
            report(ok, f"gradcheck {integ:11s} {act}: x [2,1,4,4] and {npar} parameters, channels [2,3], N 2")
    print("all checks passed" if not failed else f"{len(failed)} FAILED")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="adjoint dot test, conv semantics, float64 gradcheck")
    a = ap.parse_args(argv)
    if a.cmd == "check":
        return _checks()
    return 0


if __name__ == "__main__":
    sys.exit(main())
