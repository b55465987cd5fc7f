// resnet.wgsl — forward Euler for resnet and antisym (MODEL.md section 2):
// y_{j+1} = y_j + h sigma(M_j y_j + b_j), M_j from build_ops. Not invertible: the forward pass
// keeps the state before every step in `store` (MODEL.md section 3).
// CPU twin: stablenet_core::integrators::resnet. Bindings: network.wgsl.

fn m_at(j: u32, a: u32, b: u32) -> f32 {
    return ops[j * W * W + a * W + b];
}

// Steps the cursor's range for one example; the host bounds the range so that no loop runs
// near lavapipe's 65535-iteration limit.
@compute @workgroup_size(WG)
fn steps_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = example(gid, nwg);
    if s >= batch.n {
        return;
    }
    let range = forward_range();
    for (var j = range.x; j < range.y; j++) {
        for (var i = 0u; i < W; i++) {
            store[(j * NMAX + s) * W + i] = st[s * W + i];
        }
        for (var i = 0u; i < W; i++) {
            var u = b_at(j, i);
            for (var k = 0u; k < W; k++) {
                u += m_at(j, i, k) * st[s * W + k];
            }
            tmp[s * W + i] = u;
        }
        for (var i = 0u; i < W; i++) {
            st[s * W + i] += H * act(tmp[s * W + i]);
        }
    }
}

// Adjoint of step j = cursor: P = sigma'(u) h ybar, Q = y_j, B = P; ybar += M^T P.
// dM_j = sum P Q^T: no R, S (tile_partials, reduce.wgsl).
const HAS_RS: bool = false;

// The state stays in storage between the adjoint steps of a dispatch.
fn load_example(s: u32) {}

fn store_example(s: u32) {}

fn adjoint_example(s: u32, j: u32) {
    for (var i = 0u; i < W; i++) {
        var u = b_at(j, i);
        for (var k = 0u; k < W; k++) {
            u += m_at(j, i, k) * store[(j * NMAX + s) * W + k];
        }
        let p = dact(u) * H * acc[s * W + i];
        put_fac(FP, s, i, p);
        put_fac(FB, s, i, p);
        put_fac(FQ, s, i, store[(j * NMAX + s) * W + i]);
    }
    for (var i = 0u; i < W; i++) {
        var g = 0.0;
        for (var k = 0u; k < W; k++) {
            g += m_at(j, k, i) * get_fac(FP, s, k);
        }
        acc[s * W + i] += g;
    }
}
