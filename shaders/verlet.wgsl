// verlet.wgsl — the Hamiltonian (Verlet) step and its fused reverse-time adjoint
// (MODEL.md sections 2-4). State (y, z) in st slots 0 and 1; (ybar, zbar) in acc slots 0, 1
// between dispatches, in registers within one.
// CPU twin: stablenet_core::integrators::verlet. Bindings: network.wgsl.

// The example's state (y, z) and adjoints (ybar, zbar), held in registers across the steps
// of a dispatch: read and written through storage, every term of the matrix-vector products
// was a dependent global load (st is also written), and that latency bounded each step.
// Narrow nets unroll the loops marked `// unroll` (shaders::unroll), so that every index is
// a constant and the arrays stay in registers.
var<private> vy: array<f32, W>;
var<private> vz: array<f32, W>;
var<private> vyb: array<f32, W>;
var<private> vzb: array<f32, W>;

// z -= h sigma(K^T y + b); y += h sigma(K z + b) (network.wgsl steps_forward).
fn step_forward(s: u32, j: u32) {
    // unroll
    for (var i = 0u; i < W; i++) {
        var c = b_at(j, i);
        // unroll
        for (var k = 0u; k < W; k++) {
            c += k_at(j, k, i) * vy[k];
        }
        vz[i] -= H * act(c);
    }
    // unroll
    for (var i = 0u; i < W; i++) {
        var u = b_at(j, i);
        // unroll
        for (var k = 0u; k < W; k++) {
            u += k_at(j, i, k) * vz[k];
        }
        vy[i] += H * act(u);
    }
}

// A dispatch's steps start and end with these (network.wgsl steps_forward, step_adjoint):
// the state, and for the adjoint the adjoints too.
fn load_example(s: u32, adjoints: bool) {
    // unroll
    for (var i = 0u; i < W; i++) {
        vy[i] = st[s * W + i];
        vz[i] = st[SLOT + s * W + i];
        if adjoints {
            vyb[i] = acc[s * W + i];
            vzb[i] = acc[SLOT + s * W + i];
        }
    }
}

fn store_example(s: u32, adjoints: bool) {
    // unroll
    for (var i = 0u; i < W; i++) {
        st[s * W + i] = vy[i];
        st[SLOT + s * W + i] = vz[i];
        if adjoints {
            acc[s * W + i] = vyb[i];
            acc[SLOT + s * W + i] = vzb[i];
        }
    }
}

// Step j backwards: on entry (y_{j+1}, z_{j+1}), on exit (y_j, z_j), in registers.
// Factors: P = s, Q = z_{j+1}, R = y_j, S = t, B = s + t, so that
// dK_j = sum P Q^T + R S^T and db_j = sum B over the batch (tile_partials, reduce.wgsl).
const HAS_RS: bool = true;

fn adjoint_example(s: u32, j: u32) {
    var u: array<f32, W>;
    var p: array<f32, W>;
    var t: array<f32, W>;
    // u = K z_{j+1} + b; s = sigma'(u) h ybar.
    // unroll
    for (var i = 0u; i < W; i++) {
        var v = b_at(j, i);
        // unroll
        for (var k = 0u; k < W; k++) {
            v += k_at(j, i, k) * vz[k];
        }
        u[i] = v;
        p[i] = dact(v) * H * vyb[i];
        put_fac(FP, s, i, p[i]);
        put_fac(FQ, s, i, vz[i]);
    }
    // zbar += K^T s; rebuild y_j = y_{j+1} - h sigma(u).
    // unroll
    for (var i = 0u; i < W; i++) {
        var g = 0.0;
        // unroll
        for (var k = 0u; k < W; k++) {
            g += k_at(j, k, i) * p[k];
        }
        vzb[i] += g;
        vy[i] -= H * act(u[i]);
    }
    // c = K^T y_j + b; t = sigma'(c) (-h zbar).
    // unroll
    for (var i = 0u; i < W; i++) {
        var c = b_at(j, i);
        // unroll
        for (var k = 0u; k < W; k++) {
            c += k_at(j, k, i) * vy[k];
        }
        u[i] = c;
        t[i] = -(dact(c) * H * vzb[i]);
        put_fac(FS, s, i, t[i]);
        put_fac(FR, s, i, vy[i]);
        put_fac(FB, s, i, p[i] + t[i]);
    }
    // ybar += K t; rebuild z_j = z_{j+1} + h sigma(c).
    // unroll
    for (var i = 0u; i < W; i++) {
        var g = 0.0;
        // unroll
        for (var k = 0u; k < W; k++) {
            g += k_at(j, i, k) * t[k];
        }
        vyb[i] += g;
        vz[i] += H * act(u[i]);
    }
}
