// resnet.wgsl — forward Euler for resnet and antisym (MODEL.md section 2):
// y_{j+1} = y_j + h sigma(M_j y_j + b_j), M_j from build_ops. Not invertible: the forward pass
// keeps the state before every step in `store` (MODEL.md section 3).
// CPU twin: stablenet_core::integrators::resnet. Bindings: network.wgsl.

fn m_at(j: u32, a: u32, b: u32) -> f32 {
    return ops[j * W * W + a * W + b];
}

// Step j for one example, keeping the state before it (network.wgsl steps_forward).
fn step_forward(s: u32, j: u32) {
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

// The state stays in storage between the steps of a dispatch.
fn load_example(s: u32, adjoints: bool) {}

fn store_example(s: u32, adjoints: bool) {}

// Adjoint of step j = cursor: P = sigma'(u) h ybar, Q = y_j, B = P; ybar += M^T P.
// dM_j = sum P Q^T: no R, S (tile_partials, reduce.wgsl).
const HAS_RS: bool = false;

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
