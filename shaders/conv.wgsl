// conv.wgsl — the image stage (docs/IMAGES.md): 3x3 convolution operators K_j, K_j^T with zero
// "same" padding on a batch [n][c][H][W], and the deterministic reductions of the kernel and
// bias gradients. Prepended by common.wgsl (act, dact, example; its group 1 uniforms are not
// used); conv_steps.wgsl follows with the integrators' steps.
// CPU twins: stablenet_core::image::conv (conv3x3, conv3x3_t, conv3x3_wgrad, bias_grad).
//
// Binding table (group 0):
//   0  params   read  [K_0..K_{N-1} | b_0..b_{N-1}]; K_j [c][c][3][3] (PyTorch conv2d), b_j [c]
//   1  f        rw    per-example fields: slot k at k * SLOT, each [NMAX][c][H][W] (states,
//                     adjoints, factors; which slot holds what is the host's plan, image.rs)
//   2  partial  rw    [chunks][NOUT]: one partial sum per chunk of RPC (example, row) pairs
//   3  grad     rw    [dK_0..dK_{N-1} | db_0..db_{N-1}], the layout of params
//   4  cj       uniform, dynamic offset: this dispatch's step, batch size, slots, coefficients

struct ConvJob {
    j: u32,       // the step
    n: u32,       // examples in the batch
    s0: u32,      // field slots; what each one holds is documented per entry point
    s1: u32,
    s2: u32,
    s3: u32,
    s4: u32,
    s5: u32,
    s6: u32,
    flags: u32,   // per entry point
    alpha: f32,   // reductions: dK_j = alpha wgrad(P, Q) + beta wgrad(R, S)
    beta: f32,
    g1: f32,      // reductions: db_j = g1 sum B1 + g2 sum B2
    g2: f32,
}

override CH: u32;         // channels c
override ROWS: u32;       // image height H
override COLS: u32;       // image width W
override NSTEPS: u32;     // steps N
override NMAX: u32;       // batch capacity
override STEP_H: f32;     // h = T / N
override GAMMA: f32 = 0.0;
// 0 resnet, 1 antisym (the only difference between the two is the operator of euler_step)
override INTEG: u32 = 0u;
// (example, row) pairs per reduction chunk: RPC * COLS inner iterations per invocation, far
// below lavapipe's silent 65535-iteration loop limit (the host picks it).
override RPC: u32 = 1u;

override PIX: u32 = ROWS * COLS;
override LEN: u32 = CH * PIX;
override SLOT: u32 = NMAX * LEN;
override KLEN: u32 = CH * CH * 9u;
override NOUT: u32 = KLEN + CH;

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> f: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<uniform> cj: ConvJob;

// One invocation per (example, channel, pixel) of the batch.
struct At {
    idx: u32,     // [n][c][H][W] index, also the offset within a slot
    e: u32,       // example
    ch: u32,
    r: u32,
    q: u32,
}

fn at(gid: vec3<u32>, nwg: vec3<u32>) -> At {
    let idx = example(gid, nwg);
    let rem = idx % LEN;
    let p = rem % PIX;
    return At(idx, idx / LEN, rem / PIX, p / COLS, p % COLS);
}

fn valid(a: At) -> bool {
    return a.e < cj.n;
}

fn fld(slot: u32, a: At) -> f32 {
    return f[slot * SLOT + a.idx];
}

fn bias(j: u32, ch: u32) -> f32 {
    return params[NSTEPS * KLEN + j * CH + ch];
}

// (K_j x)[o] at pixel (r, q) of example e, x in slot xs: cross-correlation, zero padding.
fn conv_k(j: u32, xs: u32, a: At) -> f32 {
    var acc = 0.0;
    for (var ci = 0u; ci < CH; ci++) {
        let kb = (j * CH + a.ch) * CH * 9u + ci * 9u;
        let xb = xs * SLOT + a.e * LEN + ci * PIX;
        for (var di = 0u; di < 3u; di++) {
            let rr = i32(a.r) + i32(di) - 1;
            if rr < 0 || rr >= i32(ROWS) {
                continue;
            }
            for (var dj = 0u; dj < 3u; dj++) {
                let qq = i32(a.q) + i32(dj) - 1;
                if qq >= 0 && qq < i32(COLS) {
                    acc += params[kb + di * 3u + dj] * f[xb + u32(rr) * COLS + u32(qq)];
                }
            }
        }
    }
    return acc;
}

// (K_j^T s)[c] at (r, q): sum over o, taps of K_j[o][c][di][dj] s[o][r + 1 - di][q + 1 - dj],
// the exact adjoint of conv_k (PyTorch conv_transpose2d, padding 1).
fn conv_kt(j: u32, ss: u32, a: At) -> f32 {
    var acc = 0.0;
    for (var o = 0u; o < CH; o++) {
        let kb = (j * CH + o) * CH * 9u + a.ch * 9u;
        let sb = ss * SLOT + a.e * LEN + o * PIX;
        for (var di = 0u; di < 3u; di++) {
            let rr = i32(a.r) + 1 - i32(di);
            if rr < 0 || rr >= i32(ROWS) {
                continue;
            }
            for (var dj = 0u; dj < 3u; dj++) {
                let qq = i32(a.q) + 1 - i32(dj);
                if qq >= 0 && qq < i32(COLS) {
                    acc += params[kb + di * 3u + dj] * f[sb + u32(rr) * COLS + u32(qq)];
                }
            }
        }
    }
    return acc;
}

// Partial sums of step cj.j's gradients over chunk wid.z of the (example, row) pairs, one
// output per invocation (no atomics; reduce_finish adds the chunks in order). Outputs
// e < KLEN are dK[o][ci][di][dj] = alpha sum P[o][r][q] Q[ci][r+di-1][q+dj-1] (+ beta with R,
// S when flags & 1); the others db[o] = g1 sum B1[o] (+ g2 sum B2[o] when flags & 2).
// Slots: s0 P, s1 Q, s2 R, s3 S, s4 B1, s5 B2. The outputs fold into a 2-D grid as examples
// do (example()): from 683 channels they need more than one dimension's 65535 workgroups.
@compute @workgroup_size(WG)
fn reduce_partial(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = example(gid, nwg);
    if e >= NOUT {
        return;
    }
    let first = wid.z * RPC;
    let last = min(cj.n * ROWS, first + RPC);
    var pq = 0.0;
    var rs = 0.0;
    if e < KLEN {
        let o = e / (CH * 9u);
        let ci = (e / 9u) % CH;
        let di = (e % 9u) / 3u;
        let dj = e % 3u;
        // Columns q with q + dj - 1 inside the image.
        let q0 = select(0u, 1u, dj == 0u);
        let q1 = select(COLS, COLS - 1u, dj == 2u);
        let two = (cj.flags & 1u) != 0u;
        for (var row = first; row < last; row++) {
            let ex = row / ROWS;
            let r = row % ROWS;
            let sr = i32(r) + i32(di) - 1;
            if sr < 0 || sr >= i32(ROWS) {
                continue;
            }
            let go = ex * LEN + o * PIX + r * COLS;
            let gi = ex * LEN + ci * PIX + u32(sr) * COLS + dj;
            for (var q = q0; q < q1; q++) {
                pq += f[cj.s0 * SLOT + go + q] * f[cj.s1 * SLOT + gi + q - 1u];
                if two {
                    rs += f[cj.s2 * SLOT + go + q] * f[cj.s3 * SLOT + gi + q - 1u];
                }
            }
        }
        partial[wid.z * NOUT + e] = cj.alpha * pq + select(0.0, cj.beta * rs, two);
    } else {
        let o = e - KLEN;
        let two = (cj.flags & 2u) != 0u;
        for (var row = first; row < last; row++) {
            let go = (row / ROWS) * LEN + o * PIX + (row % ROWS) * COLS;
            for (var q = 0u; q < COLS; q++) {
                pq += f[cj.s4 * SLOT + go + q];
                if two {
                    rs += f[cj.s5 * SLOT + go + q];
                }
            }
        }
        partial[wid.z * NOUT + e] = cj.g1 * pq + select(0.0, cj.g2 * rs, two);
    }
}

// Sums the chunks in order into dK_j, db_j (overwritten: one reduction per step); outputs on
// reduce_partial's 2-D grid.
@compute @workgroup_size(WG)
fn reduce_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if e >= NOUT {
        return;
    }
    let chunks = (cj.n * ROWS + RPC - 1u) / RPC;
    var total = 0.0;
    for (var k = 0u; k < chunks; k++) {
        total += partial[k * NOUT + e];
    }
    if e < KLEN {
        grad[cj.j * KLEN + e] = total;
    } else {
        grad[NSTEPS * KLEN + cj.j * CH + e - KLEN] = total;
    }
}
