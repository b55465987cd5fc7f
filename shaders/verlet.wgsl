// verlet.wgsl — the Hamiltonian (Verlet) step and its fused reverse-time adjoint
// (MODEL.md sections 2-4). State (y, z) in st slots 0 and 1; (ybar, zbar) in acc slots 0, 1.
// CPU twin: stablenet_core::integrators::verlet. Bindings: network.wgsl.

// z -= h sigma(K^T y + b); y += h sigma(K z + b), for steps the cursor's range.
@compute @workgroup_size(WG)
fn steps_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = example(gid, nwg);
    if s >= batch.n {
        return;
    }
    let y = s * W;
    let z = SLOT + s * W;
    let range = forward_range();
    for (var j = range.x; j < range.y; j++) {
        for (var i = 0u; i < W; i++) {
            var c = b_at(j, i);
            for (var k = 0u; k < W; k++) {
                c += k_at(j, k, i) * st[y + k];
            }
            tmp[s * W + i] = c;
        }
        for (var i = 0u; i < W; i++) {
            st[z + i] -= H * act(tmp[s * W + i]);
        }
        for (var i = 0u; i < W; i++) {
            var u = b_at(j, i);
            for (var k = 0u; k < W; k++) {
                u += k_at(j, i, k) * st[z + k];
            }
            tmp[s * W + i] = u;
        }
        for (var i = 0u; i < W; i++) {
            st[y + i] += H * act(tmp[s * W + i]);
        }
    }
}

// Step j = cursor backwards: on entry st holds (y_{j+1}, z_{j+1}), on exit (y_j, z_j).
// Factors: P = s, Q = z_{j+1}, R = y_j, S = t, B = s + t, so that
// dK_j = sum P Q^T + R S^T and db_j = sum B over the batch (tile_partials, reduce.wgsl).
const HAS_RS: bool = true;

fn adjoint_example(s: u32, j: u32) {
    let y = s * W;
    let z = SLOT + s * W;
    let yb = s * W;
    let zb = SLOT + s * W;
    let e = s * W;
    // u = K z_{j+1} + b; s = sigma'(u) h ybar.
    for (var i = 0u; i < W; i++) {
        var u = b_at(j, i);
        for (var k = 0u; k < W; k++) {
            u += k_at(j, i, k) * st[z + k];
        }
        tmp[e + i] = u;
        fac[FP * SLOT + e + i] = dact(u) * H * acc[yb + i];
        fac[FQ * SLOT + e + i] = st[z + i];
    }
    // zbar += K^T s; rebuild y_j = y_{j+1} - h sigma(u).
    for (var i = 0u; i < W; i++) {
        var g = 0.0;
        for (var k = 0u; k < W; k++) {
            g += k_at(j, k, i) * fac[FP * SLOT + e + k];
        }
        acc[zb + i] += g;
        st[y + i] -= H * act(tmp[e + i]);
    }
    // c = K^T y_j + b; t = sigma'(c) (-h zbar).
    for (var i = 0u; i < W; i++) {
        var c = b_at(j, i);
        for (var k = 0u; k < W; k++) {
            c += k_at(j, k, i) * st[y + k];
        }
        tmp[e + i] = c;
        let t = -(dact(c) * H * acc[zb + i]);
        fac[FS * SLOT + e + i] = t;
        fac[FR * SLOT + e + i] = st[y + i];
        fac[FB * SLOT + e + i] = fac[FP * SLOT + e + i] + t;
    }
    // ybar += K t; rebuild z_j = z_{j+1} + h sigma(c).
    for (var i = 0u; i < W; i++) {
        var g = 0.0;
        for (var k = 0u; k < W; k++) {
            g += k_at(j, i, k) * fac[FS * SLOT + e + k];
        }
        acc[yb + i] += g;
        st[z + i] += H * act(tmp[e + i]);
    }
}
