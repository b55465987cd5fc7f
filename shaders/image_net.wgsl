// image_net.wgsl — the image network around its stages (docs/IMAGES.md): the opening 3x3
// convolution, the 1x1 widening + 2x2 average pooling between stages, global average pooling,
// the classifier with softmax cross-entropy, their adjoints, and the weight gradients reduced
// per chunk then in chunk order (no atomics: the same bits every run). Pipelines are built per
// junction (opening, widening s, head) with its shapes as overrides; the stages themselves run
// conv.wgsl. Prepended by common.wgsl (act, dact, example).
// CPU twin: stablenet_core::image::net (ImageNet::loss_grad).
//
// Binding table (group 0):
//   0  params   read  the whole network's parameters (ImageParams order)
//   1  x        read  [NMAX][c0][H][W] the batch's images
//   2  labels   read  [NMAX]
//   3  src      rw    fields of the stage before the junction (slots of SRC_SLOT values)
//   4  dst      rw    fields of the stage after it (slots of DST_SLOT values)
//   5  scratch  rw    [NMAX][COUT][ROWS][COLS]: the junction's pre-activation adjoint
//   6  head     rw    pooled [NMAX][CIN] | dlogits [NMAX][COUT] | loss [NMAX] | hits [NMAX] |
//                     totals (mean loss, hits) | predictions [NMAX] (first arg-max, as f32)
//   7  partial  rw    [chunks][NOUT] partial sums of the weight gradients
//   8  grad     rw    the whole network's gradient (ImageParams order)
//   9  nj       uniform, dynamic offset: batch size and the slots of this dispatch

struct NetJob {
    n: u32,
    src: u32,   // slot of src read (a stage's final state)
    src2: u32,  // slot of src written (that stage's ybar = dLoss/dy_N)
    dst: u32,   // slot of dst (the next stage's y_0, or its dLoss/dy_0)
}

override CIN: u32;        // channels into the junction (c0 for the opening)
override COUT: u32;       // channels out of it (classes for the head)
override ROWS: u32;       // resolution the junction reads (the opening: the input's)
override COLS: u32;
override NMAX: u32;
override OFF_W: u32;      // the junction's weight and bias in params and grad
override OFF_B: u32;
override TAPS: u32 = 1u;  // 9 for the opening's 3x3 kernel
override RPC: u32 = 1u;   // (example, row) pairs per reduction chunk (host: far below 65535 iterations)
override PIX: u32 = ROWS * COLS;
override SRC_SLOT: u32 = NMAX * CIN * PIX;
override DST_PIX: u32 = PIX / 4u;  // widening pools 2x2 (the opening keeps PIX)
override DST_SLOT: u32 = NMAX * COUT * DST_PIX;
override KL: u32 = COUT * CIN * TAPS;
override NOUT: u32 = KL + COUT;
override H_DLOG: u32 = NMAX * CIN;
override H_LOSS: u32 = H_DLOG + NMAX * COUT;
override H_HITS: u32 = H_LOSS + NMAX;
override H_TOT: u32 = H_HITS + NMAX;
override H_PRED: u32 = H_TOT + 2u;

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> src: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(6) var<storage, read_write> head: array<f32>;
@group(0) @binding(7) var<storage, read_write> partial: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad: array<f32>;
@group(0) @binding(9) var<uniform> nj: NetJob;

// u = K_in x + b_in at channel o, pixel (r, q) of example e (conv3x3 with zero padding).
fn open_u(e: u32, o: u32, r: u32, q: u32) -> f32 {
    var u = 0.0;
    for (var ci = 0u; ci < CIN; ci++) {
        let kb = OFF_W + (o * CIN + ci) * 9u;
        let xb = (e * CIN + ci) * PIX;
        for (var di = 0u; di < 3u; di++) {
            let rr = i32(r) + i32(di) - 1;
            if rr < 0 || rr >= i32(ROWS) {
                continue;
            }
            for (var dj = 0u; dj < 3u; dj++) {
                let qq = i32(q) + i32(dj) - 1;
                if qq >= 0 && qq < i32(COLS) {
                    u += params[kb + di * 3u + dj] * x[xb + u32(rr) * COLS + u32(qq)];
                }
            }
        }
    }
    return u + params[OFF_B + o];
}

// Opening: stage 0's y_0 (dst slot) = sigma(K_in x + b_in), one invocation per output value.
@compute @workgroup_size(WG)
fn open_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = example(gid, nwg);
    let e = i / (COUT * PIX);
    if e >= nj.n {
        return;
    }
    let p = i % PIX;
    dst[nj.dst * DST_SLOT + i] = act(open_u(e, (i / PIX) % COUT, p / COLS, p % COLS));
}

// Opening adjoint: scratch = sigma'(u) dLoss/dy_0 (stage 0's dLoss/dy_0 in the dst slot).
@compute @workgroup_size(WG)
fn open_ubar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = example(gid, nwg);
    let e = i / (COUT * PIX);
    if e >= nj.n {
        return;
    }
    let p = i % PIX;
    scratch[i] = dact(open_u(e, (i / PIX) % COUT, p / COLS, p % COLS)) * dst[nj.dst * DST_SLOT + i];
}

// dK_in[o][ci][di][dj] = sum scratch[o][r][q] x[ci][r+di-1][q+dj-1], db_in[o] = sum
// scratch[o], over chunk wid.z of the (example, row) pairs. The outputs fold into a 2-D grid
// as examples do (example()): many channels need more than one dimension's 65535 workgroups.
@compute @workgroup_size(WG)
fn open_wgrad_partial(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = example(gid, nwg);
    if e >= NOUT {
        return;
    }
    let first = wid.z * RPC;
    let last = min(nj.n * ROWS, first + RPC);
    var sum = 0.0;
    if e < KL {
        let o = e / (CIN * 9u);
        let ci = (e / 9u) % CIN;
        let di = (e % 9u) / 3u;
        let dj = e % 3u;
        let q0 = select(0u, 1u, dj == 0u);
        let q1 = select(COLS, COLS - 1u, dj == 2u);
        for (var row = first; row < last; row++) {
            let ex = row / ROWS;
            let r = row % ROWS;
            let sr = i32(r) + i32(di) - 1;
            if sr < 0 || sr >= i32(ROWS) {
                continue;
            }
            let go = (ex * COUT + o) * PIX + r * COLS;
            let gi = (ex * CIN + ci) * PIX + u32(sr) * COLS + dj;
            for (var q = q0; q < q1; q++) {
                sum += scratch[go + q] * x[gi + q - 1u];
            }
        }
    } else {
        for (var row = first; row < last; row++) {
            let go = ((row / ROWS) * COUT + e - KL) * PIX + (row % ROWS) * COLS;
            for (var q = 0u; q < COLS; q++) {
                sum += scratch[go + q];
            }
        }
    }
    partial[wid.z * NOUT + e] = sum;
}

// Sums the chunks in order into the junction's weight and bias gradients (outputs on the
// partial sums' 2-D grid).
@compute @workgroup_size(WG)
fn wgrad_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if e >= NOUT {
        return;
    }
    let chunks = (nj.n * ROWS + RPC - 1u) / RPC;
    var total = 0.0;
    for (var k = 0u; k < chunks; k++) {
        total += partial[k * NOUT + e];
    }
    grad[select(OFF_B + e - KL, OFF_W + e, e < KL)] = total;
}

// u = W y + b at channel o, pixel p of example e (1x1 widening; y in the src slot).
fn widen_u(e: u32, o: u32, p: u32) -> f32 {
    var u = params[OFF_B + o];
    for (var ci = 0u; ci < CIN; ci++) {
        u += params[OFF_W + o * CIN + ci] * src[nj.src * SRC_SLOT + (e * CIN + ci) * PIX + p];
    }
    return u;
}

// Widening: the next stage's y_0 (dst slot) = avgpool2(sigma(W y + b)), per pooled value.
@compute @workgroup_size(WG)
fn widen_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = example(gid, nwg);
    let e = i / (COUT * DST_PIX);
    if e >= nj.n {
        return;
    }
    let o = (i / DST_PIX) % COUT;
    let pp = i % DST_PIX;
    let p = 2u * (pp / (COLS / 2u)) * COLS + 2u * (pp % (COLS / 2u));
    let a = act(widen_u(e, o, p)) + act(widen_u(e, o, p + 1u)) + act(widen_u(e, o, p + COLS))
        + act(widen_u(e, o, p + COLS + 1u));
    dst[nj.dst * DST_SLOT + i] = 0.25 * a;
}

// Widening adjoint, 1 of 2: scratch[o][p] = sigma'(u) ybar_next[o][pooled p] / 4 (the next
// stage's dLoss/dy_0 in the dst slot), per unpooled value.
@compute @workgroup_size(WG)
fn widen_ubar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = example(gid, nwg);
    let e = i / (COUT * PIX);
    if e >= nj.n {
        return;
    }
    let o = (i / PIX) % COUT;
    let p = i % PIX;
    let pp = ((p / COLS) / 2u) * (COLS / 2u) + (p % COLS) / 2u;
    let yb = dst[nj.dst * DST_SLOT + (e * COUT + o) * DST_PIX + pp];
    scratch[i] = 0.25 * yb * dact(widen_u(e, o, p));
}

// Widening adjoint, 2 of 2: this stage's ybar (src2 slot) = W^T scratch.
@compute @workgroup_size(WG)
fn widen_ybar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = example(gid, nwg);
    let e = i / (CIN * PIX);
    if e >= nj.n {
        return;
    }
    let ci = (i / PIX) % CIN;
    let p = i % PIX;
    var g = 0.0;
    for (var o = 0u; o < COUT; o++) {
        g += params[OFF_W + o * CIN + ci] * scratch[(e * COUT + o) * PIX + p];
    }
    src[nj.src2 * SRC_SLOT + i] = g;
}

// dW[o][ci] = sum scratch[o] y[ci], db[o] = sum scratch[o] over chunk wid.z (y in src slot);
// outputs on a 2-D grid, as open_wgrad_partial.
@compute @workgroup_size(WG)
fn widen_wgrad_partial(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = example(gid, nwg);
    if e >= NOUT {
        return;
    }
    let first = wid.z * RPC;
    let last = min(nj.n * ROWS, first + RPC);
    let o = select(e - KL, e / CIN, e < KL);
    var sum = 0.0;
    for (var row = first; row < last; row++) {
        let ex = row / ROWS;
        let go = (ex * COUT + o) * PIX + (row % ROWS) * COLS;
        let gi = nj.src * SRC_SLOT + (ex * CIN + e % CIN) * PIX + (row % ROWS) * COLS;
        for (var q = 0u; q < COLS; q++) {
            sum += scratch[go + q] * select(1.0, src[gi + q], e < KL);
        }
    }
    partial[wid.z * NOUT + e] = sum;
}

// Head, 1 of 4: pooled[e][c] = mean over the pixels of the last stage's y_N (src slot).
@compute @workgroup_size(WG)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = example(gid, nwg);
    if i / CIN >= nj.n {
        return;
    }
    var sum = 0.0;
    for (var p = 0u; p < PIX; p++) {
        sum += src[nj.src * SRC_SLOT + i * PIX + p];
    }
    head[i] = sum * (1.0 / f32(PIX));
}

// Head, 2 of 4, per example: logits = W pooled + mu; loss = log-sum-exp - logit[label];
// dlogits = (softmax - onehot) / n; hit when the first arg-max (the prediction) is the label.
@compute @workgroup_size(WG)
fn classify(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if e >= nj.n {
        return;
    }
    let d = H_DLOG + e * COUT;
    var best = 0u;
    for (var k = 0u; k < COUT; k++) {
        var l = params[OFF_B + k];
        for (var c = 0u; c < CIN; c++) {
            l += params[OFF_W + k * CIN + c] * head[e * CIN + c];
        }
        head[d + k] = l;
        if l > head[d + best] {
            best = k;
        }
    }
    let mx = head[d + best];
    var sum = 0.0;
    for (var k = 0u; k < COUT; k++) {
        sum += exp(head[d + k] - mx);
    }
    let label = labels[e];
    head[H_LOSS + e] = log(sum) + mx - head[d + label];
    head[H_HITS + e] = select(0.0, 1.0, best == label);
    head[H_PRED + e] = f32(best);
    let inv_n = 1.0 / f32(nj.n);
    for (var k = 0u; k < COUT; k++) {
        let pk = exp(head[d + k] - mx) / sum;
        head[d + k] = inv_n * (pk - select(0.0, 1.0, k == label));
    }
}

// Head, 3 of 4, one invocation per result, examples summed in order: dW[k][c] = sum dlog[k]
// pooled[c], dmu[k] = sum dlog[k], then the mean loss and the hits (totals); on a 2-D grid
// as the other reductions.
@compute @workgroup_size(WG)
fn head_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if e >= NOUT + 2u {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < nj.n; s++) {
        if e < KL {
            sum += head[H_DLOG + s * COUT + e / CIN] * head[s * CIN + e % CIN];
        } else if e < NOUT {
            sum += head[H_DLOG + s * COUT + e - KL];
        } else if e == NOUT {
            sum += head[H_LOSS + s];
        } else {
            sum += head[H_HITS + s];
        }
    }
    if e < KL {
        grad[OFF_W + e] = sum;
    } else if e < NOUT {
        grad[OFF_B + e - KL] = sum;
    } else {
        head[H_TOT + e - NOUT] = select(sum, sum / f32(nj.n), e == NOUT);
    }
}

// Head, 4 of 4: the last stage's ybar (src2 slot) = (W^T dlogits) / pixels, per value.
@compute @workgroup_size(WG)
fn classify_ybar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = example(gid, nwg);
    let e = i / (CIN * PIX);
    if e >= nj.n {
        return;
    }
    let c = (i / PIX) % CIN;
    var pbar = 0.0;
    for (var k = 0u; k < COUT; k++) {
        pbar += params[OFF_W + k * CIN + c] * head[H_DLOG + e * COUT + k];
    }
    src[nj.src2 * SRC_SLOT + i] = pbar * (1.0 / f32(PIX));
}
