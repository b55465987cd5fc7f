// network.wgsl — opening layer, classifier with softmax cross-entropy, and the operator build,
// for one example per invocation (MODEL.md section 1). Prepended by common.wgsl; one of
// resnet.wgsl / verlet.wgsl / leapfrog.wgsl follows with the integrator's step kernels.
// CPU twin: stablenet_core::network (Network::open, classify, softmax_xent). The integrator
// file defines adjoint_example and HAS_RS for step_adjoint below.
//
// Binding table (group 0):
//   0  params  read   [K_in | b_in | K_0..K_{N-1} | b_0..b_{N-1} | W | mu]  (row-major)
//   1  data_x  read   [ndata][D]   the device-resident data set
//   2  data_y  read   [ndata]      labels
//   3  order   read   [ndata]      this epoch's shuffled example order
//   4  xb      rw     [NMAX][D]    the batch's inputs, gathered
//   5  st      rw     [2][NMAX][W] states: resnet y | verlet (y, z) | leapfrog y_j in slot j % 2
//   6  acc     rw     [3][NMAX][W] adjoints: slot 0 ybar, 1 zbar | leapfrog a_j in slot j % 3
//   7  tmp     rw     [NMAX][W]    per-example scratch (pre-activations; leapfrog, resnet)
//   8  fac     rw     [5][NMAX][W] per-example gradient factors P, Q, R, S, B (see reduce.wgsl);
//                                  only P (the opening's) when FUSE or tiled steps sum them
//   9  store   rw     [N][NMAX][W] resnet/antisym: the state before every step
//  10  ops     rw     [N][W][W]    resnet/antisym: the operator M_j that acts (MODEL.md section 2);
//                                  tiled steps: M_j (K_j), M_j^T, b_j padded (build_ops)
//  11  dlog    rw     [NMAX][C]    dLoss/dlogits
//  12  loss_s  rw     [NMAX]       per-example loss / n
//  13  hits    rw     [NMAX]       1 where the arg-max logit is the label
//  14  cursor  rw     [2]          the step the next step kernel works on; advanced on the
//                                  device, so the per-dispatch uniforms stay O(1) in depth.
//                                  Forward dispatches use cursor 0; adjoint steps alternate
//                                  (job.cur), each one's reduction writing the other's
//                                  (reduce.wgsl), so no dispatch of its own steps back
//  15  tpart   rw     narrow nets: per-workgroup partial sums of dK_j, db_j for each step of
//                                  an adjoint block (the reduction's partials buffer;
//                                  see tile_partials)

// W, the width, WP, the width padded to a multiple of 4, and the workgroup array sizes TF_LEN
// and KC_LEN are constants the host puts before these sources (shaders::network): the
// integrators keep per-example vectors in registers, which needs a constant size, and wide
// nets, which use neither array, get 1.
override D: u32;
override C: u32;
override N: u32;
override NMAX: u32;
override H: f32;
override GAMMA: f32 = 0.0;
// 0 resnet, 1 antisym, 2 hamiltonian, 3 leapfrog
override INTEG: u32;

override OFF_BIN: u32 = W * D;
override OFF_K: u32 = OFF_BIN + W;
override OFF_B: u32 = OFF_K + N * W * W;
override OFF_WC: u32 = OFF_B + N * W;
override OFF_MU: u32 = OFF_WC + C * W;
override SLOT: u32 = NMAX * W;
// Steps per forward dispatch (the host keeps every loop far below lavapipe's limit).
override SPD: u32 = 1u;

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> data_x: array<f32>;
@group(0) @binding(2) var<storage, read> data_y: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read_write> xb: array<f32>;
@group(0) @binding(5) var<storage, read_write> st: array<f32>;
@group(0) @binding(6) var<storage, read_write> acc: array<f32>;
@group(0) @binding(7) var<storage, read_write> tmp: array<f32>;
@group(0) @binding(8) var<storage, read_write> fac: array<f32>;
@group(0) @binding(9) var<storage, read_write> store: array<f32>;
@group(0) @binding(10) var<storage, read_write> ops: array<f32>;
@group(0) @binding(11) var<storage, read_write> dlog: array<f32>;
@group(0) @binding(12) var<storage, read_write> loss_s: array<f32>;
@group(0) @binding(13) var<storage, read_write> hits: array<f32>;
@group(0) @binding(14) var<storage, read_write> cursor: array<u32>;
@group(0) @binding(15) var<storage, read_write> tpart: array<f32>;

// Narrow nets (W * W + W <= 2 WG, set by the host): step_adjoint also does the first pass of
// its dK_j, db_j reduction (reduce.wgsl, flags & 128), and runs ADJ_BLOCK steps per dispatch,
// so a block of steps costs two dispatches: every adjoint quantity is per example, and only
// the gradient sums cross examples. Their partials get a slot per step of the block, so the
// memory stays flat in depth; the host bounds ADJ_BLOCK by the loop budget.
override FUSE: bool = false;
override ADJ_BLOCK: u32 = 1u;

// The workgroup's copy of the step cursor (a storage value is not uniform; the block's loop,
// which holds barriers, must be).
var<workgroup> top: u32;
// With FUSE, the factors of the workgroup's examples: P, Q, R, S, B regions of WG * W floats
// (TF_LEN = 5 WG W).
var<workgroup> tf: array<f32, TF_LEN>;
// With FUSE, K_j and b_j of up to ADJ_BLOCK steps (KC_LEN = ADJ_BLOCK (W^2 + W)), loaded by
// the workgroup at once: read from storage, every step's products waited for a round trip
// to the L2 cache per row.
var<workgroup> kc: array<f32, KC_LEN>;
// Which steps kc holds: kc_first .. kc_first + kc_count - 1.
var<private> kc_first: u32;
var<private> kc_count: u32;

// Loads steps j0 .. j0 + count - 1 (count <= ADJ_BLOCK) into kc: [count][W][W], then
// [count][W]. Called in uniform control flow by the whole workgroup.
fn cache_steps(li: u32, j0: u32, count: u32) {
    workgroupBarrier();
    for (var x = li; x < count * W * W; x += WG) {
        kc[x] = params[OFF_K + j0 * W * W + x];
    }
    for (var x = li; x < count * W; x += WG) {
        kc[count * W * W + x] = params[OFF_B + j0 * W + x];
    }
    kc_first = j0;
    kc_count = count;
    workgroupBarrier();
}

// Steps cursor[0] .. cursor[0] + SPD - 1 (at most N) for every example: the integrator file's
// step_forward between its load_example and store_example. With FUSE, ADJ_BLOCK steps at a
// time from kc.
@compute @workgroup_size(WG)
fn steps_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let s = example(gid, nwg);
    let live = s < batch.n;
    if li == 0u {
        top = cursor[0];
    }
    let j0 = workgroupUniformLoad(&top);
    let j1 = min(j0 + SPD, N);
    let sub = select(SPD, ADJ_BLOCK, FUSE);
    if live {
        load_example(s, false);
    }
    for (var jb = j0; jb < j1; jb += sub) {
        let count = min(sub, j1 - jb);
        if FUSE {
            cache_steps(li, jb, count);
        }
        if live {
            for (var j = jb; j < jb + count; j++) {
                step_forward(s, j);
            }
        }
    }
    if live {
        store_example(s, false);
    }
}

// Factor r (FP .. FB) of example s at i: in workgroup memory for tile_partials (FUSE), else in
// `fac` for reduce_partial.
fn put_fac(r: u32, s: u32, i: u32, v: f32) {
    if FUSE {
        tf[r * WG * W + (s % WG) * W + i] = v;
    } else {
        fac[r * SLOT + s * W + i] = v;
    }
}

fn get_fac(r: u32, s: u32, i: u32) -> f32 {
    if FUSE {
        return tf[r * WG * W + (s % WG) * W + i];
    }
    return fac[r * SLOT + s * W + i];
}

// Without FUSE: the adjoint of step j = cursor[job.cur] for every example (the integrator
// file's adjoint_example: on entry the state of step j + 1, on exit that of step j, and the
// example's factors in `fac`). With FUSE: steps j, j - 1, .. for min(ADJ_BLOCK, j + 1) steps,
// each followed by its first reduction pass.
@compute @workgroup_size(WG)
fn step_adjoint(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let s = example(gid, nwg);
    let live = s < batch.n;
    if !FUSE {
        if live {
            load_example(s, true);
            adjoint_example(s, cursor[job.cur]);
            store_example(s, true);
        }
        return;
    }
    if li == 0u {
        top = cursor[job.cur];
    }
    let j = workgroupUniformLoad(&top);
    let count = min(ADJ_BLOCK, j + 1u);
    cache_steps(li, j + 1u - count, count);
    if live {
        load_example(s, true);
    }
    for (var k = 0u; k < count; k++) {
        if live {
            adjoint_example(s, j - k);
        }
        tile_partials(wid, nwg, li, k);
    }
    if live {
        store_example(s, true);
    }
}

// After every invocation of the workgroup has put its example's factors (P, Q, R, S, B;
// R S^T only when the integrator's HAS_RS) into workgroup memory, invocation li sums outputs
// li, li + WG, .. (dK_j's W * W entries, then db_j's W) over the workgroup's examples in
// order, into tpart[k][g][o] for the workgroup's linear index g and the block's step k.
// reduce_finish then adds the workgroups' partials in its fixed tree. (Summed from storage,
// each term was a dependent global load, and that bounded the step.)
fn tile_partials(wid: vec3<u32>, nwg: vec3<u32>, li: u32, k: u32) {
    workgroupBarrier();
    let g = wid.x + wid.y * nwg.x;
    let first = g * WG;
    if first >= batch.n {
        return;
    }
    let m = min(WG, batch.n - first);
    let region = WG * W;
    let outputs = W * W + W;
    let groups = (batch.n + WG - 1u) / WG;
    for (var o = li; o < outputs; o += WG) {
        var sum = 0.0;
        if o < W * W {
            let a = o / W;
            let b = o % W;
            for (var i = 0u; i < m; i++) {
                sum += tf[FP * region + i * W + a] * tf[FQ * region + i * W + b];
                if HAS_RS {
                    sum += tf[FR * region + i * W + a] * tf[FS * region + i * W + b];
                }
            }
        } else {
            for (var i = 0u; i < m; i++) {
                sum += tf[FB * region + i * W + o - W * W];
            }
        }
        tpart[(k * groups + g) * outputs + o] = sum;
    }
    // The next step overwrites the factors.
    workgroupBarrier();
}

// K_j[a][b] and b_j[i]: from kc with FUSE (the caller's steps), else the flat parameters.
fn k_at(j: u32, a: u32, b: u32) -> f32 {
    if FUSE {
        return kc[(j - kc_first) * W * W + a * W + b];
    }
    return params[OFF_K + j * W * W + a * W + b];
}

fn b_at(j: u32, i: u32) -> f32 {
    if FUSE {
        return kc[kc_count * W * W + (j - kc_first) * W + i];
    }
    return params[OFF_B + j * W + i];
}

// Factor regions of `fac`.
const FP: u32 = 0u;
const FQ: u32 = 1u;
const FR: u32 = 2u;
const FS: u32 = 3u;
const FB: u32 = 4u;

// The opening and the classifier take their outputs eight at a time (two vec4), so that each
// entry of the example's row is loaded once for eight of them: one output per pass reloaded
// the row for every output with strided per-example reads. At wide nets (H100, w = 128,
// d = 64) this took the forward phase from 7.3 to 5.8 ms (with the loop counters gone too)
// and the opening phase (open_adjoint and its reduction) from 4.3 to 3.3 ms. Each output
// still sums its terms in order.

// Indices i0 .. i0 + 3, clamped to `last` (what lies past it is computed from that one and
// never stored).
fn idx4(i0: u32, last: u32) -> vec4<u32> {
    return min(vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

// u_i = b_in[i] + sum_k K_in[i][k] x_k for i = i0 .. i0 + 7, in columns 0 and 1.
fn open_block(s: u32, i0: u32) -> mat2x4<f32> {
    let ia = idx4(i0, W - 1u);
    let ib = idx4(i0 + 4u, W - 1u);
    var ua = vec4<f32>(params[OFF_BIN + ia.x], params[OFF_BIN + ia.y], params[OFF_BIN + ia.z], params[OFF_BIN + ia.w]);
    var ub = vec4<f32>(params[OFF_BIN + ib.x], params[OFF_BIN + ib.y], params[OFF_BIN + ib.z], params[OFF_BIN + ib.w]);
    let ra = ia * D;
    let rb = ib * D;
    for (var k = 0u; k < D; k++) {
        let x = xb[s * D + k];
        ua += x * vec4<f32>(params[ra.x + k], params[ra.y + k], params[ra.z + k], params[ra.w + k]);
        ub += x * vec4<f32>(params[rb.x + k], params[rb.y + k], params[rb.z + k], params[rb.w + k]);
    }
    return mat2x4<f32>(ua, ub);
}

// y_0 = sigma(K_in x + b_in) at i; initialises the integrator's second state.
fn open_store(s: u32, i: u32, u: f32) {
    if i >= W {
        return;
    }
    let y = act(u);
    st[s * W + i] = y;
    if INTEG == 2u {
        st[SLOT + s * W + i] = 0.0; // z_0 = 0
    } else if INTEG == 3u {
        st[SLOT + s * W + i] = y; // y_{-1} = y_0
    }
}

// Where a block of eight outputs goes (put_eight): y_0 (open_store), the opening's factor P
// (put_open_factor) or ybar (put_ybar); each drops the indices past W.
const TO_STATE: u32 = 0u;
const TO_FACTOR: u32 = 1u;
const TO_YBAR: u32 = 2u;

fn put_one(to: u32, s: u32, i: u32, v: f32) {
    if to == TO_STATE {
        open_store(s, i, v);
    } else if to == TO_FACTOR {
        put_open_factor(s, i, v);
    } else {
        put_ybar(s, i, v);
    }
}

// Outputs i0 .. i0 + 7 from columns 0 and 1 of u, written out so that no index into u is
// dynamic (a loop that the driver does not unroll would keep u in local memory).
fn put_eight(to: u32, s: u32, i0: u32, u: mat2x4<f32>) {
    put_one(to, s, i0, u[0].x);
    put_one(to, s, i0 + 1u, u[0].y);
    put_one(to, s, i0 + 2u, u[0].z);
    put_one(to, s, i0 + 3u, u[0].w);
    put_one(to, s, i0 + 4u, u[1].x);
    put_one(to, s, i0 + 5u, u[1].y);
    put_one(to, s, i0 + 6u, u[1].z);
    put_one(to, s, i0 + 7u, u[1].w);
}

// y_0 = sigma(K_in x + b_in); initialises the integrator's second state.
@compute @workgroup_size(WG)
fn open_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = example(gid, nwg);
    if s >= batch.n {
        return;
    }
    let g = order[batch.offset + s];
    for (var k = 0u; k < D; k++) {
        xb[s * D + k] = data_x[g * D + k];
    }
    for (var i0 = 0u; i0 < W; i0 += 8u) {
        let u = open_block(s, i0);
        put_eight(TO_STATE, s, i0, u);
    }
}

// Logits c0 .. c0 + 7 of the state at y0: mu_c + sum_i W[c][i] y_i.
fn logit_block(y0: u32, c0: u32) -> mat2x4<f32> {
    let ca = idx4(c0, C - 1u);
    let cb = idx4(c0 + 4u, C - 1u);
    var za = vec4<f32>(params[OFF_MU + ca.x], params[OFF_MU + ca.y], params[OFF_MU + ca.z], params[OFF_MU + ca.w]);
    var zb = vec4<f32>(params[OFF_MU + cb.x], params[OFF_MU + cb.y], params[OFF_MU + cb.z], params[OFF_MU + cb.w]);
    let ra = OFF_WC + ca * W;
    let rb = OFF_WC + cb * W;
    for (var i = 0u; i < W; i++) {
        let y = st[y0 + i];
        za += y * vec4<f32>(params[ra.x + i], params[ra.y + i], params[ra.z + i], params[ra.w + i]);
        zb += y * vec4<f32>(params[rb.x + i], params[rb.y + i], params[rb.z + i], params[rb.w + i]);
    }
    return mat2x4<f32>(za, zb);
}

// The arg-max so far (first of equals) and its logit, as classify's pass over c keeps them.
struct ArgMax {
    mx: f32,
    arg: u32,
}

// Logit c = z of example s into dlog, and the arg-max after it.
fn put_logit(s: u32, c: u32, z: f32, m: ArgMax) -> ArgMax {
    if c >= C {
        return m;
    }
    dlog[s * C + c] = z;
    if c == 0u || z > m.mx {
        return ArgMax(z, c);
    }
    return m;
}

// ybar_i = sum_c W[c][i] dlog_c for i = i0 .. i0 + 7.
fn ybar_block(s: u32, i0: u32) -> mat2x4<f32> {
    let ia = idx4(i0, W - 1u);
    let ib = idx4(i0 + 4u, W - 1u);
    var ya = vec4<f32>();
    var yb = vec4<f32>();
    for (var c = 0u; c < C; c++) {
        let d = dlog[s * C + c];
        let r = OFF_WC + c * W;
        ya += d * vec4<f32>(params[r + ia.x], params[r + ia.y], params[r + ia.z], params[r + ia.w]);
        yb += d * vec4<f32>(params[r + ib.x], params[r + ib.y], params[r + ib.z], params[r + ib.w]);
    }
    return mat2x4<f32>(ya, yb);
}

// ybar_i into adjoint slot job.aslot, the other slots zeroed.
fn put_ybar(s: u32, i: u32, yb: f32) {
    if i >= W {
        return;
    }
    acc[s * W + i] = select(0.0, yb, job.aslot == 0u);
    acc[SLOT + s * W + i] = select(0.0, yb, job.aslot == 1u);
    acc[2u * SLOT + s * W + i] = select(0.0, yb, job.aslot == 2u);
}

// logits = W y_N + mu; loss_s = -log softmax[label] / n; dlog = (softmax - onehot) / n;
// ybar = W^T dlog in acc slot job.aslot, the other adjoint slots zeroed.
@compute @workgroup_size(WG)
fn classify(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = example(gid, nwg);
    if s >= batch.n {
        return;
    }
    let y0 = job.slot * SLOT + s * W;
    var m = ArgMax(-3.4e38, 0u);
    for (var c0 = 0u; c0 < C; c0 += 8u) {
        let z = logit_block(y0, c0);
        m = put_logit(s, c0, z[0].x, m);
        m = put_logit(s, c0 + 1u, z[0].y, m);
        m = put_logit(s, c0 + 2u, z[0].z, m);
        m = put_logit(s, c0 + 3u, z[0].w, m);
        m = put_logit(s, c0 + 4u, z[1].x, m);
        m = put_logit(s, c0 + 5u, z[1].y, m);
        m = put_logit(s, c0 + 6u, z[1].z, m);
        m = put_logit(s, c0 + 7u, z[1].w, m);
    }
    let mx = m.mx;
    let label = data_y[order[batch.offset + s]];
    // -log softmax[label] = ln(sum) + mx - z_label (MODEL.md section 5), taken from the logit:
    // the label's exponential underflows to 0 once it is ~88 below the largest.
    let shifted = mx - dlog[s * C + label];
    var sum = 0.0;
    for (var c = 0u; c < C; c++) {
        let e = exp(dlog[s * C + c] - mx);
        dlog[s * C + c] = e;
        sum += e;
    }
    hits[s] = select(0.0, 1.0, m.arg == label);
    let inv_n = 1.0 / f32(batch.n);
    loss_s[s] = (log(sum) + shifted) * inv_n;
    for (var c = 0u; c < C; c++) {
        let p = dlog[s * C + c] / sum;
        dlog[s * C + c] = (p - select(0.0, 1.0, c == label)) * inv_n;
    }
    for (var i0 = 0u; i0 < W; i0 += 8u) {
        let yb = ybar_block(s, i0);
        put_eight(TO_YBAR, s, i0, yb);
    }
}

// P_i = sigma'(K_in x + b_in)_i ybar_i at i (reduced against Q = xb).
fn put_open_factor(s: u32, i: u32, u: f32) {
    if i < W {
        fac[FP * SLOT + s * W + i] = dact(u) * acc[s * W + i];
    }
}

// Opening layer backward: P = sigma'(K_in x + b_in) * ybar (reduced against Q = xb).
@compute @workgroup_size(WG)
fn open_adjoint(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = example(gid, nwg);
    if s >= batch.n {
        return;
    }
    for (var i0 = 0u; i0 < W; i0 += 8u) {
        let u = open_block(s, i0);
        put_eight(TO_FACTOR, s, i0, u);
    }
}

// Nets stepped in tiles (tiles.wgsl): build_ops writes the operator and its transpose, and
// b_j, there, padded to the width WP (a multiple of 4) with zeros.
override TILED: bool = false;

// The operator of step j at (a, b): K_j, or for antisym (K_j - K_j^T - gamma I) / 2 (MODEL.md
// section 2). From the parameters: k_at reads the block's cache when FUSE, which build_ops
// does not fill.
fn m_val(j: u32, a: u32, b: u32) -> f32 {
    let k = params[OFF_K + j * W * W + a * W + b];
    if INTEG == 1u {
        return 0.5 * (k - params[OFF_K + j * W * W + b * W + a]) - select(0.0, 0.5 * GAMMA, a == b);
    }
    return k;
}

// M_j for resnet/antisym, one entry per invocation (resnet.wgsl m_at); with TILED, M_j, M_j^T
// and b_j in the padded layout of tiles.wgsl's `ops`.
@compute @workgroup_size(WG)
fn build_ops(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if TILED {
        let mats = N * 2u * WP * WP;
        if e < mats {
            let j = e / (2u * WP * WP);
            let m = (e / (WP * WP)) % 2u;
            let k = (e / WP) % WP;
            let i = e % WP;
            var v = 0.0;
            if k < W && i < W {
                v = select(m_val(j, k, i), m_val(j, i, k), m == 1u);
            }
            ops[e] = v;
        } else if e < mats + N * WP {
            let f = e - mats;
            ops[e] = select(0.0, params[OFF_B + f / WP * W + f % WP], f % WP < W);
        }
        return;
    }
    if e < N * W * W {
        ops[e] = m_val(e / (W * W), (e / W) % W, e % W);
    }
}

// The step cursor: job.flags 0 sets it to job.j0, 1 adds job.j0 (wrapping, so 0xffffffff
// steps back by one).
@compute @workgroup_size(1)
fn advance() {
    if job.flags == 0u {
        cursor[0] = job.j0;
    } else {
        cursor[0] = cursor[0] + job.j0;
    }
}
