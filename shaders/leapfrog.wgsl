// leapfrog.wgsl — the second-order step y_{j+1} = 2 y_j - y_{j-1} + h^2 F_j(y_j),
// F_j(y) = -K_j^T sigma(K_j y + b_j), and its fused reverse-time adjoint (MODEL.md sections
// 2-4). y_j lives in st slot j % 2 (y_{-1} = y_0 in slot 1); a_j in acc slot j % 3.
// CPU twin: stablenet_core::integrators::leapfrog. Bindings: network.wgsl.

// y_{j+1} = 2 y_j - y_{j-1} + h^2 F_j(y_j) for one example (network.wgsl steps_forward).
fn step_forward(s: u32, j: u32) {
    let e = s * W;
    let cur = (j % 2u) * SLOT + e;
    let prev = ((j + 1u) % 2u) * SLOT + e; // y_{j-1}, overwritten by y_{j+1}
    for (var i = 0u; i < W; i++) {
        var u = b_at(j, i);
        for (var k = 0u; k < W; k++) {
            u += k_at(j, i, k) * st[cur + k];
        }
        tmp[e + i] = act(u);
    }
    for (var i = 0u; i < W; i++) {
        var f = 0.0;
        for (var k = 0u; k < W; k++) {
            f -= k_at(j, k, i) * tmp[e + k];
        }
        st[prev + i] = 2.0 * st[cur + i] - st[prev + i] + H * H * f;
    }
}

// The state stays in storage between the steps of a dispatch.
fn load_example(s: u32, adjoints: bool) {}

fn store_example(s: u32, adjoints: bool) {}

// Step j = cursor backwards (MODEL.md section 4): with v = h^2 a_{j+1}, u = K y_j + b,
// g = sigma'(u) (K v): a_j += 2 a_{j+1} - K^T g (a_1 - K^T g at j = 0), a_{j-1} -= a_{j+1},
// and y_{j-1} = 2 y_j - y_{j+1} + h^2 F(y_j) replaces y_{j+1}.
// Factors: P = -sigma(u), Q = v, R = -g, S = y_j, B = -g.
// dK_j = sum P Q^T + R S^T (tile_partials, reduce.wgsl).
const HAS_RS: bool = true;

fn adjoint_example(s: u32, j: u32) {
    let e = s * W;
    let cur = (j % 2u) * SLOT + e;
    let nxt = ((j + 1u) % 2u) * SLOT + e;
    let a_next = ((j + 1u) % 3u) * SLOT + e;
    let a_cur = (j % 3u) * SLOT + e;
    let a_prev = ((j + 2u) % 3u) * SLOT + e;
    for (var i = 0u; i < W; i++) {
        var u = b_at(j, i);
        for (var k = 0u; k < W; k++) {
            u += k_at(j, i, k) * st[cur + k];
        }
        tmp[e + i] = u;
        put_fac(FQ, s, i, H * H * acc[a_next + i]);
        put_fac(FS, s, i, st[cur + i]);
    }
    for (var i = 0u; i < W; i++) {
        var kv = 0.0;
        for (var k = 0u; k < W; k++) {
            kv += k_at(j, i, k) * get_fac(FQ, s, k);
        }
        let g = dact(tmp[e + i]) * kv;
        put_fac(FR, s, i, -g);
        put_fac(FB, s, i, -g);
        put_fac(FP, s, i, -act(tmp[e + i]));
    }
    let carry = select(2.0, 1.0, j == 0u);
    for (var i = 0u; i < W; i++) {
        var ktg = 0.0; // -(K^T g)_i
        var f = 0.0; // F(y_j)_i = (K^T P)_i
        for (var k = 0u; k < W; k++) {
            ktg += k_at(j, k, i) * get_fac(FR, s, k);
            f += k_at(j, k, i) * get_fac(FP, s, k);
        }
        acc[a_cur + i] += carry * acc[a_next + i] + ktg;
        if j > 0u {
            acc[a_prev + i] -= acc[a_next + i];
            st[nxt + i] = 2.0 * st[cur + i] - st[nxt + i] + H * H * f;
            acc[a_next + i] = 0.0; // becomes a_{j-2}
        }
    }
}
