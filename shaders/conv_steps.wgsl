// conv_steps.wgsl — one step j = cj.j of every integrator on an image batch, forward and
// adjoint, one invocation per (example, channel, pixel). A kernel writes only its own pixel
// and reads neighbours only of fields no invocation of the same dispatch writes, so steps that
// convolve a freshly written field are split into two dispatches. Slots cj.s0.. (bindings:
// conv.wgsl) say where each field lives; the host (image.rs) keeps the plan.
// CPU twin: stablenet_core::image::stage (Stage::forward, Stage::adjoint for one j).

// Starts a pass: s1 = s0 where flags & 1 (leapfrog's y_{-1} = y_0), else s1 = 0 (hamiltonian
// z_0, the adjoint accumulators that start empty).
@compute @workgroup_size(WG)
fn init_slot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    f[cj.s1 * SLOT + a.idx] = select(0.0, fld(cj.s0, a), (cj.flags & 1u) != 0u);
}

// resnet / antisym forward: s1 = y_{j+1} = y_j + h sigma(M y_j + b), y_j in s0 (kept: the
// adjoint needs it). M = K, or (K - K^T - gamma I) / 2 for antisym.
@compute @workgroup_size(WG)
fn euler_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    let y = fld(cj.s0, a);
    var u = conv_k(cj.j, cj.s0, a);
    if INTEG == 1u {
        u = 0.5 * (u - conv_kt(cj.j, cj.s0, a) - GAMMA * y);
    }
    f[cj.s1 * SLOT + a.idx] = y + STEP_H * act(u + bias(cj.j, a.ch));
}

// resnet / antisym adjoint, part 1: s2 = h sigma'(M y_j + b) ybar (y_j in s0, ybar in s1).
// Reduced as dK = wgrad(s, y_j) (antisym: (wgrad(s, y_j) - wgrad(y_j, s)) / 2), db = sum s.
@compute @workgroup_size(WG)
fn euler_adjoint_s(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    var u = conv_k(cj.j, cj.s0, a);
    if INTEG == 1u {
        u = 0.5 * (u - conv_kt(cj.j, cj.s0, a) - GAMMA * fld(cj.s0, a));
    }
    f[cj.s2 * SLOT + a.idx] = STEP_H * dact(u + bias(cj.j, a.ch)) * fld(cj.s1, a);
}

// resnet / antisym adjoint, part 2: ybar (s1) += M^T s (s in s2); antisym M^T s =
// (K^T s - K s - gamma s) / 2.
@compute @workgroup_size(WG)
fn euler_adjoint_bar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    var g = conv_kt(cj.j, cj.s2, a);
    if INTEG == 1u {
        g = 0.5 * (g - conv_k(cj.j, cj.s2, a) - GAMMA * fld(cj.s2, a));
    }
    f[cj.s1 * SLOT + a.idx] += g;
}

// hamiltonian forward, first half: z (s1) -= h sigma(K^T y + b), y in s0.
@compute @workgroup_size(WG)
fn verlet_z(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    f[cj.s1 * SLOT + a.idx] -= STEP_H * act(conv_kt(cj.j, cj.s0, a) + bias(cj.j, a.ch));
}

// hamiltonian forward, second half: y (s1) += h sigma(K z + b), z in s0.
@compute @workgroup_size(WG)
fn verlet_y(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    f[cj.s1 * SLOT + a.idx] += STEP_H * act(conv_k(cj.j, cj.s0, a) + bias(cj.j, a.ch));
}

// hamiltonian adjoint, 1 of 4 (reverse time): u = K z_{j+1} + b (z_{j+1} in s0);
// s (s3) = sigma'(u) h ybar (ybar in s2); y (s1) -= h sigma(u), rebuilding y_j.
@compute @workgroup_size(WG)
fn verlet_adjoint_y(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    let u = conv_k(cj.j, cj.s0, a) + bias(cj.j, a.ch);
    f[cj.s3 * SLOT + a.idx] = dact(u) * STEP_H * fld(cj.s2, a);
    f[cj.s1 * SLOT + a.idx] -= STEP_H * act(u);
}

// hamiltonian adjoint, 2 of 4: zbar (s4) += K^T s (s in s3).
@compute @workgroup_size(WG)
fn verlet_adjoint_zbar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    f[cj.s4 * SLOT + a.idx] += conv_kt(cj.j, cj.s3, a);
}

// hamiltonian adjoint, 3 of 4: c = K^T y_j + b (y_j in s1); t (s6) = -sigma'(c) h zbar (zbar
// in s4); z_j (s5) = z_{j+1} (s0) + h sigma(c). z_{j+1} stays: the reduction needs it.
@compute @workgroup_size(WG)
fn verlet_adjoint_z(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    let c = conv_kt(cj.j, cj.s1, a) + bias(cj.j, a.ch);
    f[cj.s6 * SLOT + a.idx] = -(dact(c) * STEP_H * fld(cj.s4, a));
    f[cj.s5 * SLOT + a.idx] = fld(cj.s0, a) + STEP_H * act(c);
}

// hamiltonian adjoint, 4 of 4: ybar (s2) += K t (t in s6). Reduced: dK = wgrad(s, z_{j+1}) +
// wgrad(y_j, t), db = sum s + sum t.
@compute @workgroup_size(WG)
fn verlet_adjoint_ybar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    f[cj.s2 * SLOT + a.idx] += conv_k(cj.j, cj.s6, a);
}

// leapfrog forward, 1 of 2: t (s1) = sigma(K y_j + b), y_j in s0.
@compute @workgroup_size(WG)
fn leap_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    f[cj.s1 * SLOT + a.idx] = act(conv_k(cj.j, cj.s0, a) + bias(cj.j, a.ch));
}

// leapfrog forward, 2 of 2: y_{j+1} = 2 y_j - y_{j-1} - h^2 K^T t, written over y_{j-1} (s2);
// y_j in s0, t in s1.
@compute @workgroup_size(WG)
fn leap_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    let yj = fld(cj.s0, a);
    f[cj.s2 * SLOT + a.idx] = yj + yj - fld(cj.s2, a) - STEP_H * STEP_H * conv_kt(cj.j, cj.s1, a);
}

// leapfrog adjoint, 1 of 2 (MODEL.md section 4): u = K y_j + b (y_j in s0), v = h^2 a_{j+1}
// (a_{j+1} in s1); sigma(u) -> s2, g = sigma'(u) K v -> s3. Reduced: dK = -h^2 wgrad(sigma(u),
// a_{j+1}) - wgrad(g, y_j), db = -sum g.
@compute @workgroup_size(WG)
fn leap_adjoint_g(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    let u = conv_k(cj.j, cj.s0, a) + bias(cj.j, a.ch);
    f[cj.s2 * SLOT + a.idx] = act(u);
    f[cj.s3 * SLOT + a.idx] = dact(u) * (STEP_H * STEP_H * conv_k(cj.j, cj.s1, a));
}

// leapfrog adjoint, 2 of 2, after the reduction: a_j (s4) += c a_{j+1} - K^T g with c = 2
// (1 at j = 0, flags & 1). Unless j = 0: y_{j-1} = 2 y_j - y_{j+1} - h^2 K^T sigma(u) over
// y_{j+1} (s5), and a_{j+1} (s1) negated: it starts the accumulation of a_{j-1}.
@compute @workgroup_size(WG)
fn leap_adjoint_a(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = at(gid, nwg);
    if !valid(a) {
        return;
    }
    let first = (cj.flags & 1u) != 0u;
    let an = fld(cj.s1, a);
    f[cj.s4 * SLOT + a.idx] += select(2.0, 1.0, first) * an - conv_kt(cj.j, cj.s3, a);
    if !first {
        let yj = fld(cj.s0, a);
        f[cj.s5 * SLOT + a.idx] = yj + yj - fld(cj.s5, a) - STEP_H * STEP_H * conv_kt(cj.j, cj.s2, a);
        f[cj.s1 * SLOT + a.idx] = -an;
    }
}
