"""Independent sanity checks of the PyTorch reference (stable_net.py) against MODEL.md.

Runs in a few seconds on a CPU; exits 1 if any check fails.

1. Reverse time (section 3): hamiltonian and leapfrog trajectories from the torch model
   (rows), run backwards with the column-convention formulas of MODEL.md written here
   separately in NumPy, in float64, rebuild every state, y_0 included, to ~1e-12.
2. Adjoint steps (section 4): the hamiltonian and leapfrog adjoints as written in
   MODEL.md (columns, rebuilding the states backwards from the last one or two), and the
   plain backprop of resnet/antisym with dK = (G - G^T)/2, agree with torch autograd on
   dLoss/dK_j, dLoss/db_j and dLoss/dy_0.
3. Central finite differences of the loss agree with autograd for a few parameters.
4. The paper's Example 1 (section 7): resnet, N = 10, h = 0.1, tanh, b = 0 on
   y1 = (0.1, 0.1), y2 = -y1, y3 = (0, 0.5): K+ diverges, K- collapses to 0, K0 rotates
   and keeps distances.
5. bench.py's twin (the network the benchmark times) is the same hamiltonian network as the
   reference: the same loss and gradients from the same parameters.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stable_net import INTEGRATORS, StableNet  # noqa: E402

FAILED: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        FAILED.append(what)


def np_sigma(act, u):
    return np.tanh(u) if act == "tanh" else np.maximum(u, 0.0)


def np_dsigma(act, u):
    return 1.0 - np.tanh(u) ** 2 if act == "tanh" else (u > 0).astype(u.dtype)


def random_net(integrator, d, w, n_steps, c, final_time, seed, activation="tanh", gamma=0.0):
    g = torch.Generator().manual_seed(seed)
    m = StableNet(d, w, n_steps, c, integrator, final_time, activation, gamma).double()
    with torch.no_grad():
        m.opening.weight.copy_(torch.randn(w, d, generator=g, dtype=torch.float64) / math.sqrt(d))
        m.opening.bias.copy_(0.3 * torch.randn(w, generator=g, dtype=torch.float64))
        m.steps_weight.copy_(torch.randn(n_steps, w, w, generator=g, dtype=torch.float64) / math.sqrt(w))
        m.steps_bias.copy_(0.3 * torch.randn(n_steps, w, generator=g, dtype=torch.float64))
        m.classifier.weight.copy_(torch.randn(c, w, generator=g, dtype=torch.float64) / math.sqrt(w))
        m.classifier.bias.copy_(0.3 * torch.randn(c, generator=g, dtype=torch.float64))
    x = torch.randn(11, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (11,), generator=g)
    return m, x, labels


# ---- 1. reverse time --------------------------------------------------------


def reverse_hamiltonian(K, b, h, act, yN, zN):
    """MODEL.md section 3, columns: y_j = y_{j+1} - h s(K_j z_{j+1} + b_j);
    z_j = z_{j+1} + h s(K_j^T y_j + b_j). Returns [(y_j, z_j)] for j = 0..N."""
    y, z = yN, zN
    out = [(y, z)]
    for j in reversed(range(K.shape[0])):
        y = y - h * np_sigma(act, K[j] @ z + b[j][:, None])
        z = z + h * np_sigma(act, K[j].T @ y + b[j][:, None])
        out.append((y, z))
    return out[::-1]


def np_force(K, b, act, y):
    return -K.T @ np_sigma(act, K @ y + b[:, None])


def reverse_leapfrog(K, b, h, act, yN, yNm1):
    """MODEL.md section 3, columns: y_{j-1} = 2 y_j - y_{j+1} + h^2 F_j(y_j).
    Returns [y_0 .. y_N] (the step j = 0 gives y_{-1}, which must equal y_0)."""
    ys = [yN, yNm1]  # y_N, y_{N-1}, ... built downwards
    for j in reversed(range(1, K.shape[0])):
        y_next, y = ys[-2], ys[-1]
        ys.append(2 * y - y_next + h * h * np_force(K[j], b[j], act, y))
    ys = ys[::-1]
    y_m1 = 2 * ys[0] - ys[1] + h * h * np_force(K[0], b[0], act, ys[0])
    return ys, y_m1


def check_reverse_time():
    print("1. reverse time (float64, w = 8, T = 5, K ~ N(0, 1/w), nonzero b)")
    for integ in ("hamiltonian", "leapfrog"):
        for n_steps in (16, 256, 1024):
            for act in ("tanh", "relu"):
                m, x, _ = random_net(integ, 3, 8, n_steps, 3, 5.0, seed=n_steps + 7, activation=act)
                with torch.no_grad():
                    y0 = m.sigma(m.opening(x))
                    _, states = m.dynamics(y0, return_states=True)
                K = m.steps_weight.detach().numpy()
                b = m.steps_bias.detach().numpy()
                if integ == "hamiltonian":
                    st = [(y.numpy().T, z.numpy().T) for y, z in states]
                    rb = reverse_hamiltonian(K, b, m.h, act, *st[-1])
                    err_all = max(max(np.abs(a[0] - c[0]).max(), np.abs(a[1] - c[1]).max()) for a, c in zip(rb, st))
                    err0 = max(np.abs(rb[0][0] - st[0][0]).max(), np.abs(rb[0][1]).max())  # z_0 = 0
                else:
                    st = [y.numpy().T for y in states]
                    rb, y_m1 = reverse_leapfrog(K, b, m.h, act, st[-1], st[-2])
                    err_all = max(np.abs(a - c).max() for a, c in zip(rb, st))
                    err0 = max(np.abs(rb[0] - st[0]).max(), np.abs(y_m1 - st[0]).max())
                scale = max(np.abs(s if integ == "leapfrog" else s[0]).max() for s in st)
                check(
                    err0 < 1e-11 and err_all < 1e-11,
                    f"{integ:11s} {act} N={n_steps:5d}: max|rebuilt y_0 - y_0| = {err0:.1e}, "
                    f"over all states {err_all:.1e} (max|y| {scale:.2f})",
                )


def report_f32_drift():
    """Informational (no pass/fail): the f32 drift of the rebuilt y_0, as MODEL.md section 3
    reports it (w = 8, T = 5, K ~ N(0, 1/w)); here with the torch model in float32."""
    print("   f32 drift of the rebuilt y_0 (informational; cf. MODEL.md section 3), tanh, b ~ 0.3 N(0,1):")
    for integ in ("hamiltonian", "leapfrog"):
        row = []
        for n_steps in (16, 256, 4096):
            m, x, _ = random_net(integ, 3, 8, n_steps, 3, 5.0, seed=n_steps + 7)
            m = m.float()
            with torch.no_grad():
                y0 = m.sigma(m.opening(x.float()))
                _, states = m.dynamics(y0, return_states=True)
            K = m.steps_weight.detach().numpy()
            b = m.steps_bias.detach().numpy()
            h = np.float32(m.h)
            if integ == "hamiltonian":
                y, z = (s.numpy().T for s in states[-1])
                for j in reversed(range(n_steps)):
                    y = y - h * np.tanh(K[j] @ z + b[j][:, None])
                    z = z + h * np.tanh(K[j].T @ y + b[j][:, None])
            else:
                y_next, y = states[-1].numpy().T, states[-2].numpy().T
                for j in reversed(range(1, n_steps)):
                    y_next, y = y, 2 * y - y_next + h * h * np_force(K[j], b[j], "tanh", y)
            assert y.dtype == np.float32
            y0_ref = (states[0][0] if integ == "hamiltonian" else states[0]).numpy().T
            row.append(f"N={n_steps}: {np.abs(y - y0_ref).max():.1e}")
        print(f"     {integ:11s} " + ", ".join(row))


# ---- 2. adjoint steps -------------------------------------------------------


def loss_and_adjoint_seed(m, x, labels):
    """Autograd reference: loss, dL/dK, dL/db, dL/dy_0, and dL/dy_N (the adjoint seed)."""
    m.zero_grad(set_to_none=True)
    y0 = m.sigma(m.opening(x)).detach().requires_grad_(True)
    yN, states = m.dynamics(y0, return_states=True)
    yN.retain_grad()
    loss = F.cross_entropy(m.classifier(yN), labels)
    loss.backward()
    return (
        m.steps_weight.grad.numpy(),
        m.steps_bias.grad.numpy(),
        y0.grad.numpy().T,
        yN.grad.numpy().T,
        states,
    )


def adjoint_hamiltonian(K, b, h, act, yN, zN, ybar):
    dK, db = np.zeros_like(K), np.zeros_like(b)
    y, z = yN, zN
    zbar = np.zeros_like(zN)
    for j in reversed(range(K.shape[0])):
        u = K[j] @ z + b[j][:, None]
        s = np_dsigma(act, u) * (h * ybar)
        zbar = zbar + K[j].T @ s
        dK[j] += s @ z.T
        db[j] += s.sum(1)
        y = y - h * np_sigma(act, u)
        c = K[j].T @ y + b[j][:, None]
        t = np_dsigma(act, c) * (-h * zbar)
        ybar = ybar + K[j] @ t
        dK[j] += y @ t.T
        db[j] += t.sum(1)
        z = z + h * np_sigma(act, c)
    return dK, db, ybar


def adjoint_leapfrog(K, b, h, act, yN, yNm1, aN):
    n_steps = K.shape[0]
    dK, db = np.zeros_like(K), np.zeros_like(b)
    a = [np.zeros_like(aN) for _ in range(n_steps + 1)]
    a[n_steps] = aN.copy()
    y_next, y = yN, yNm1  # y_{j+1}, y_j
    for j in reversed(range(n_steps)):
        v = h * h * a[j + 1]
        u = K[j] @ y + b[j][:, None]
        g = np_dsigma(act, u) * (K[j] @ v)
        if j >= 1:
            a[j] += 2 * a[j + 1] - K[j].T @ g
            a[j - 1] -= a[j + 1]
        else:
            a[0] += a[1] - K[0].T @ g
        dK[j] += -(np_sigma(act, u) @ v.T + g @ y.T)
        db[j] += -g.sum(1)
        if j >= 1:  # rebuild y_{j-1} = 2 y_j - y_{j+1} + h^2 F_j(y_j)
            y_next, y = y, 2 * y - y_next + h * h * np_force(K[j], b[j], act, y)
    return dK, db, a[0]


def adjoint_euler(K, b, h, act, gamma, antisym, ys, ybar):
    """Plain backprop of y_{j+1} = y_j + h s(M_j y_j + b_j) with stored states."""
    dK, db = np.zeros_like(K), np.zeros_like(b)
    w = K.shape[1]
    for j in reversed(range(K.shape[0])):
        M = 0.5 * (K[j] - K[j].T - gamma * np.eye(w)) if antisym else K[j]
        u = M @ ys[j] + b[j][:, None]
        s = np_dsigma(act, u) * (h * ybar)
        G = s @ ys[j].T
        dK[j] = 0.5 * (G - G.T) if antisym else G
        db[j] = s.sum(1)
        ybar = ybar + M.T @ s
    return dK, db, ybar


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def check_adjoints():
    print("2. MODEL.md section-4 adjoints (NumPy, columns, states rebuilt backwards) vs torch autograd")
    for integ in INTEGRATORS:
        for act in ("tanh", "relu"):
            for seed, (d, w, n_steps, c, T) in enumerate([(2, 4, 6, 3, 2.0), (3, 5, 7, 4, 1.7), (4, 1, 3, 2, 0.9)]):
                gamma = 0.05 if integ == "antisym" else 0.0
                m, x, labels = random_net(integ, d, w, n_steps, c, T, seed=100 + seed, activation=act, gamma=gamma)
                gK, gb, gy0, aN, states = loss_and_adjoint_seed(m, x, labels)
                K = m.steps_weight.detach().numpy()
                b = m.steps_bias.detach().numpy()
                if integ == "hamiltonian":
                    yN, zN = (s.detach().numpy().T for s in states[-1])
                    dK, db, ybar0 = adjoint_hamiltonian(K, b, m.h, act, yN, zN, aN)
                elif integ == "leapfrog":
                    yN, yNm1 = states[-1].detach().numpy().T, states[-2].detach().numpy().T
                    dK, db, ybar0 = adjoint_leapfrog(K, b, m.h, act, yN, yNm1, aN)
                else:
                    ys = [s.detach().numpy().T for s in states]
                    dK, db, ybar0 = adjoint_euler(K, b, m.h, act, gamma, integ == "antisym", ys, aN)
                e = max(rel(dK, gK), rel(db, gb), rel(ybar0, gy0))
                check(
                    e < 1e-12,
                    f"{integ:11s} {act} d={d} w={w} N={n_steps} C={c} T={T}: "
                    f"rel err dK {rel(dK, gK):.1e}, db {rel(db, gb):.1e}, dy0 {rel(ybar0, gy0):.1e}",
                )


# ---- 3. finite differences --------------------------------------------------


def check_finite_differences():
    print("3. central finite differences (f64, eps 1e-6) vs autograd, every parameter tensor")
    for integ in INTEGRATORS:
        gamma = 0.05 if integ == "antisym" else 0.0
        m, x, labels = random_net(integ, 3, 5, 7, 4, 1.7, seed=7, gamma=gamma)
        m.zero_grad(set_to_none=True)
        m.loss(x, labels).backward()
        worst = 0.0
        g = torch.Generator().manual_seed(3)
        for name, p in m.named_parameters():
            flat = p.data.view(-1)
            for _ in range(4):
                i = int(torch.randint(0, flat.numel(), (1,), generator=g))
                old = flat[i].item()
                with torch.no_grad():
                    flat[i] = old + 1e-6
                    lp = m.loss(x, labels).item()
                    flat[i] = old - 1e-6
                    lm = m.loss(x, labels).item()
                    flat[i] = old
                fd = (lp - lm) / 2e-6
                worst = max(worst, abs(fd - p.grad.view(-1)[i].item()) / max(p.grad.abs().max().item(), 1e-12))
        check(worst < 1e-7, f"{integ:11s}: max |fd - autograd| / max|grad| = {worst:.1e}")


# ---- 4. Example 1 ------------------------------------------------------------


def check_example1():
    print("4. paper's Example 1: resnet, N = 10, h = 0.1, tanh, b = 0")
    Y0 = torch.tensor([[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]], dtype=torch.float64)  # rows y1, y2, y3
    Ks = {
        "K+": [[2.0, -2.0], [0.0, 2.0]],
        "K-": [[-2.0, 0.0], [2.0, -2.0]],
        "K0": [[0.0, -1.0], [1.0, 0.0]],
    }

    def dists(Y):
        return torch.stack([(Y[0] - Y[1]).norm(), (Y[0] - Y[2]).norm(), (Y[1] - Y[2]).norm()])

    out = {}
    for name, K in Ks.items():
        m = StableNet(2, 2, 10, 2, "resnet", final_time=1.0, activation="tanh").double()
        assert abs(m.h - 0.1) < 1e-15
        with torch.no_grad():
            m.steps_weight.copy_(torch.tensor(K, dtype=torch.float64).expand(10, 2, 2))
            m.steps_bias.zero_()
            YN = m.dynamics(Y0)
        out[name] = (YN, YN.norm(dim=1) / Y0.norm(dim=1), dists(YN) / dists(Y0))
        norms = ", ".join(f"{r:.3f}" for r in out[name][1])
        ds = ", ".join(f"{r:.3f}" for r in out[name][2])
        print(f"     {name}: |y_N|/|y_0| = [{norms}], pairwise distance ratios (12, 13, 23) = [{ds}]")
    _, nr, dr = out["K+"]
    check(bool((nr > 2.0).all() and (dr > 2.0).all()), "K+ diverges: every norm and pairwise distance grows > 2x")
    _, nr, dr = out["K-"]
    # K- is a defective (Jordan) block with eigenvalue -2: Euler's linear factor is
    # (1 - 2h)^10 = 0.107, times the transient of the off-diagonal coupling.
    check(bool((nr < 0.3).all() and (dr < 0.3).all()), "K- collapses towards 0: every norm and distance shrinks < 0.3x")
    YN, nr, dr = out["K0"]
    check(bool(((dr - 1).abs() < 0.06).all() and ((nr - 1).abs() < 0.06).all()),
          "K0 keeps norms and distances within 6%")
    # K0 rotates: the angle of each point advances by about T = 1 radian (counter-clockwise).
    ang = torch.atan2(YN[:, 1], YN[:, 0]) - torch.atan2(Y0[:, 1], Y0[:, 0])
    ang = torch.remainder(ang + math.pi, 2 * math.pi) - math.pi
    print(f"     K0 rotation angles (rad): {[round(a, 3) for a in ang.tolist()]}")
    check(bool(((ang - 1.0).abs() < 0.1).all()), "K0 rotates every point by ~1 rad (= T) counter-clockwise")


def check_bench_twin() -> None:
    """5. The benchmark twin (bench.py's VerletNet, written as a PyTorch user would) is the
    reference hamiltonian network: the same loss and gradients from the same parameters, so
    the bench times the step the engine is tested against (tests/fixtures/torch)."""
    import bench

    print("5. bench.py's VerletNet against the reference hamiltonian network")
    d, w, N, C, n = 2, 8, 6, 5, 32
    torch.manual_seed(7)
    twin = bench.VerletNet(d, w, N, C)
    ref = StableNet(d, w, N, C, integrator="hamiltonian", final_time=bench.T_FINAL)
    with torch.no_grad():
        twin.b.normal_()  # non-zero biases, so a bias mix-up shows
        ref.opening.load_state_dict(twin.opening.state_dict())
        ref.classifier.load_state_dict(twin.classifier.state_dict())
        ref.steps_weight.copy_(twin.K)
        ref.steps_bias.copy_(twin.b)
    x, labels = torch.randn(n, d), torch.randint(0, C, (n,))
    losses = []
    for net in (twin, ref):
        net.zero_grad()
        loss = F.cross_entropy(net(x), labels)
        loss.backward()
        losses.append(loss.item())
    check(abs(losses[0] - losses[1]) < 1e-12, f"the same loss ({losses[0]:.15f} vs {losses[1]:.15f})")
    pairs = [(twin.K, ref.steps_weight), (twin.b, ref.steps_bias), (twin.opening.weight, ref.opening.weight),
             (twin.classifier.weight, ref.classifier.weight)]
    worst = max((a.grad - b.grad).abs().max().item() for a, b in pairs)
    check(worst < 1e-12, f"the same gradients (worst difference {worst:.1e})")


def main() -> int:
    torch.set_default_dtype(torch.float64)
    check_reverse_time()
    report_f32_drift()
    check_adjoints()
    check_finite_differences()
    check_example1()
    check_bench_twin()
    if FAILED:
        print(f"selfcheck: {len(FAILED)} check(s) FAILED")
        return 1
    print("selfcheck: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
