"""PyTorch reference of the stable ODE-inspired networks (MODEL.md sections 1-2).

Independent of the Rust engine: written the way a PyTorch user would, and
differentiated by autograd. Used to make the gradient fixtures in
tests/fixtures/torch/ (make_fixtures.py) and to check `stablenet grad` live
(check_grad.py --fresh).

Row convention: a batch is x of shape [n, d] (one example per row), whereas
MODEL.md writes one example as a column. For a column y, K y is `y @ K.T`
(= F.linear(y, K)) and K^T y is `y @ K` (= F.linear(y, K.T)).

File formats (shared with the Rust engine):

model  safetensors, f32: opening.weight [w, d], opening.bias [w],
       steps.weight [N, w, w], steps.bias [N, w], classifier.weight [C, w],
       classifier.bias [C]; metadata integrator, final_time (decimal string),
       activation, gamma (decimal string).
data   safetensors: x f32 [n, d], labels int64 [n] (int32 and uint8 accepted).
grads  safetensors, f32: the gradient of the mean cross-entropy w.r.t. every
       model tensor under the same name and shape, plus loss (f32, shape []).

Run as a script, it is a torch stand-in for the engine's CLI:
    python stable_net.py grad --model M --data D --out G [--backend cpu]
(the gradient is computed in float64 from the stored float32 parameters).
"""
from __future__ import annotations

import argparse
import copy
import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

INTEGRATORS = ("resnet", "antisym", "hamiltonian", "leapfrog")
ACTIVATIONS = ("tanh", "relu")

# Model-file name <- nn.Module state_dict name.
FILE_NAMES = {
    "opening.weight": "opening.weight",
    "opening.bias": "opening.bias",
    "steps_weight": "steps.weight",
    "steps_bias": "steps.bias",
    "classifier.weight": "classifier.weight",
    "classifier.bias": "classifier.bias",
}
MODULE_NAMES = {v: k for k, v in FILE_NAMES.items()}
GROUP_NAMES = tuple(FILE_NAMES.values())  # model-file order


def decimal(x: float) -> str:
    """Shortest decimal string that round-trips the f64 value ("2.0", "1.7", "0.05")."""
    return repr(float(x))


class StableNet(nn.Module):
    """opening layer -> N steps of an ODE integrator -> linear classifier."""

    def __init__(
        self,
        d: int,
        width: int,
        steps: int,
        classes: int,
        integrator: str = "resnet",
        final_time: float = 1.0,
        activation: str = "tanh",
        gamma: float = 0.0,
    ):
        super().__init__()
        if integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {integrator!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        self.integrator = integrator
        self.final_time = float(final_time)
        self.activation = activation
        self.gamma = float(gamma)
        self.opening = nn.Linear(d, width)
        self.steps_weight = nn.Parameter(torch.empty(steps, width, width))
        self.steps_bias = nn.Parameter(torch.empty(steps, width))
        self.classifier = nn.Linear(width, classes)
        # The initialisation of the CLI: K ~ N(0, 1/fan_in), all biases 0.
        with torch.no_grad():
            nn.init.normal_(self.opening.weight, std=1.0 / math.sqrt(d))
            nn.init.zeros_(self.opening.bias)
            nn.init.normal_(self.steps_weight, std=1.0 / math.sqrt(width))
            nn.init.zeros_(self.steps_bias)
            nn.init.normal_(self.classifier.weight, std=1.0 / math.sqrt(width))
            nn.init.zeros_(self.classifier.bias)

    @property
    def n_steps(self) -> int:
        return self.steps_weight.shape[0]

    @property
    def width(self) -> int:
        return self.steps_weight.shape[1]

    @property
    def h(self) -> float:
        return self.final_time / self.n_steps

    def sigma(self, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(u) if self.activation == "tanh" else torch.relu(u)

    def dynamics(self, y0: torch.Tensor, return_states: bool = False):
        """The N integrator steps from y_0 (rows). Returns y_N, and with
        return_states=True also the list of states: y_0..y_N for resnet, antisym
        and leapfrog, (y_j, z_j) pairs j = 0..N for hamiltonian."""
        h, sig = self.h, self.sigma
        K, b = self.steps_weight, self.steps_bias
        y = y0
        states = []
        if self.integrator == "resnet":
            states.append(y)
            for j in range(self.n_steps):
                y = y + h * sig(F.linear(y, K[j], b[j]))
                states.append(y)
        elif self.integrator == "antisym":
            eye = torch.eye(self.width, dtype=K.dtype, device=K.device)
            states.append(y)
            for j in range(self.n_steps):
                A = 0.5 * (K[j] - K[j].T - self.gamma * eye)
                y = y + h * sig(F.linear(y, A, b[j]))
                states.append(y)
        elif self.integrator == "hamiltonian":
            z = torch.zeros_like(y)
            states.append((y, z))
            for j in range(self.n_steps):
                z = z - h * sig(F.linear(y, K[j].T, b[j]))  # K_j^T y
                y = y + h * sig(F.linear(z, K[j], b[j]))  # K_j z
                states.append((y, z))
        elif self.integrator == "leapfrog":
            y_prev = y  # y_{-1} = y_0
            states.append(y)
            for j in range(self.n_steps):
                force = -sig(F.linear(y, K[j], b[j])) @ K[j]  # -K_j^T sigma(K_j y + b_j)
                y, y_prev = 2 * y - y_prev + h * h * force, y
                states.append(y)
        else:  # pragma: no cover
            raise AssertionError(self.integrator)
        return (y, states) if return_states else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.sigma(self.opening(x))
        return self.classifier(self.dynamics(y0))

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x), labels.long())

    # ---- model-file view -------------------------------------------------

    def file_tensors(self) -> dict[str, torch.Tensor]:
        """The parameters under the model-file names."""
        sd = self.state_dict()
        return {FILE_NAMES[k]: sd[k] for k in FILE_NAMES}

    def metadata(self) -> dict[str, str]:
        return {
            "integrator": self.integrator,
            "final_time": decimal(self.final_time),
            "activation": self.activation,
            "gamma": decimal(self.gamma),
        }

    def file_grads(self) -> dict[str, torch.Tensor]:
        """The .grad of every parameter under the model-file names."""
        params = dict(self.named_parameters())
        return {FILE_NAMES[k]: params[k].grad for k in FILE_NAMES}


# ---- random test problems ----------------------------------------------------


def random_problem(
    g: torch.Generator,
    d: int,
    width: int,
    steps: int,
    classes: int,
    n: int,
    integrator: str,
    final_time: float,
    activation: str = "tanh",
    gamma: float = 0.0,
    weight_scale: float = 0.8,
    bias_std: float = 0.3,
):
    """A float32 model with K ~ weight_scale N(0, 1/fan_in) (opening, steps, classifier),
    biases ~ bias_std N(0, 1), x ~ N(0, 1) [n, d], and labels in which every class occurs
    (when n >= classes). Draws in float64 from `g`, then rounds to float32."""

    def normal(*shape, std):
        return std * torch.randn(*shape, generator=g, dtype=torch.float64)

    m = StableNet(d, width, steps, classes, integrator, final_time, activation, gamma)
    with torch.no_grad():
        m.opening.weight.copy_(normal(width, d, std=weight_scale / math.sqrt(d)))
        m.opening.bias.copy_(normal(width, std=bias_std))
        m.steps_weight.copy_(normal(steps, width, width, std=weight_scale / math.sqrt(width)))
        m.steps_bias.copy_(normal(steps, width, std=bias_std))
        m.classifier.weight.copy_(normal(classes, width, std=weight_scale / math.sqrt(width)))
        m.classifier.bias.copy_(normal(classes, std=bias_std))
    m = m.to(torch.float32)
    x = normal(n, d, std=1.0).to(torch.float32)
    labels = torch.randperm(n, generator=g) % classes
    labels = labels[torch.randperm(n, generator=g)]
    return m, x, labels


def preactivations(model: StableNet, x: torch.Tensor) -> torch.Tensor:
    """Every argument of sigma in the float64 forward pass, flattened."""
    m64 = copy.deepcopy(model).to(torch.float64)
    rec = []
    sig = m64.sigma
    m64.sigma = lambda u: (rec.append(u.detach().reshape(-1)), sig(u))[1]
    with torch.no_grad():
        m64(x.to(torch.float64))
    return torch.cat(rec)


# ---- files -----------------------------------------------------------------


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save, with the header re-emitted so that the same tensors and
    metadata always give the same bytes (safetensors keeps the metadata in a hash map,
    whose order changes from one process to the next). Offsets are relative to the
    data section, so they stay valid; the header is space-padded to 8 bytes as usual."""
    import json

    from safetensors.torch import save

    raw = save({k: v.contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def save_model(path, model: StableNet) -> None:
    tensors = {k: v.detach().to(torch.float32) for k, v in model.file_tensors().items()}
    write_safetensors(path, tensors, metadata=model.metadata())


def load_model(path, dtype=torch.float32) -> StableNet:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    missing = [k for k in GROUP_NAMES if k not in tensors]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing}")
    w, d = tensors["opening.weight"].shape
    n = tensors["steps.weight"].shape[0]
    c = tensors["classifier.weight"].shape[0]
    model = StableNet(
        d,
        w,
        n,
        c,
        integrator=meta.get("integrator", "resnet"),
        final_time=float(meta.get("final_time", "1")),
        activation=meta.get("activation", "tanh"),
        gamma=float(meta.get("gamma", "0")),
    )
    model.load_state_dict({MODULE_NAMES[k]: tensors[k] for k in GROUP_NAMES})
    return model.to(dtype)


def save_data(path, x: torch.Tensor, labels: torch.Tensor, label_dtype=torch.int64) -> None:
    write_safetensors(path, {"x": x.detach().to(torch.float32), "labels": labels.detach().to(label_dtype)})


def load_data(path):
    """(x f32 [n, d], labels int64 [n]); labels may be stored as int64, int32 or uint8."""
    from safetensors.torch import load_file

    t = load_file(str(path))
    return t["x"].to(torch.float32), t["labels"].to(torch.int64)


def reference_grads(model: StableNet, x: torch.Tensor, labels: torch.Tensor, dtype=torch.float64):
    """Loss and gradients of the mean cross-entropy, computed in `dtype` (float64 by
    default) from the float32 values of the parameters and of x. Returns (loss scalar,
    dict of gradients under the model-file names), both in `dtype`."""
    m = copy.deepcopy(model).to(torch.float32).to(dtype)
    m.zero_grad(set_to_none=True)
    loss = m.loss(x.to(torch.float32).to(dtype), labels)
    loss.backward()
    return loss.detach(), {k: g.detach().clone() for k, g in m.file_grads().items()}


def save_grads(path, loss: torch.Tensor, grads: dict[str, torch.Tensor]) -> None:
    t = {k: grads[k].detach().to(torch.float32) for k in GROUP_NAMES}
    t["loss"] = loss.detach().to(torch.float32).reshape(())
    write_safetensors(path, t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grad", help="loss and gradients of a model on a data file (torch autograd, f64)")
    g.add_argument("--model", required=True)
    g.add_argument("--data", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--backend", default="cpu", help="accepted for CLI compatibility; torch runs on the CPU")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the torch computation (float32 shows what an f32 engine can reach)")
    a = ap.parse_args(argv)
    if a.cmd == "grad":
        model = load_model(a.model)
        x, labels = load_data(a.data)
        loss, grads = reference_grads(model, x, labels, dtype=getattr(torch, a.dtype))
        save_grads(a.out, loss, grads)
        print(f"loss {loss.item():.9g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
