// tiles.wgsl — what the tiled integrator steps share (verlet_tiled.wgsl and verlet_tiled8.wgsl,
// leapfrog_tiled.wgsl, resnet_tiled.wgsl):
// a workgroup steps a tile of BM examples together, so every matrix-vector product of a step
// becomes a matrix product of the tile with K_j or K_j^T (resnet/antisym: M_j). The
// per-example kernels (verlet.wgsl, leapfrog.wgsl, resnet.wgsl) are best for narrow nets; at w = 32 and 128 their products
// read K_j one scalar at a time for each example and spilled their vectors (H100: 0.25x and
// 0.03x of PyTorch's time for Verlet).
//
// Tiles: invocation li owns examples 4r .. 4r + 3 (r = li % RQ) of the tile and components
// 4c .. 4c + 3 (c = li / RQ) of the padded width WP (a multiple of 4): a mat4x4 per quantity,
// column q for component 4c + q, row e for example 4r + e. The padding is exact: K, b are 0
// there, so the padded components stay 0 (sigma(0) = 0). Examples past the batch load 0 and
// are never stored (a step can make them nonzero: h sigma(b_j)); each product of factors in
// the gradient sums pairs one that is 0 for them (Verlet: all of P, R S^T's S; leapfrog: Q
// and R; resnet/antisym: P), so they add nothing.
// W, WP, RQ, DB, SPLIT, BP, PS_LEN, BS_LEN and KEEP are constants the host puts before these
// sources (shaders::tiled).
//
// Binding table (group 0):
//   0  ops     read  K_j, b_j padded (network.wgsl build_ops): in vec4 units, M_{j,m}[k][4c..]
//                    at ((j * 2 + m) * WP + k) * CQ + c, with M_{j,0} = K_j and M_{j,1} = K_j^T
//                    (resnet/antisym: their operator M_j, MODEL.md section 2);
//                    then b_j[4c..] at OPS_B + j * CQ + c
//   1  st      rw    states [2][NMAX][W] (network.wgsl: verlet y, z; leapfrog y_j in j % 2)
//   2  acc     rw    adjoints [3][NMAX][W] (verlet ybar, zbar; leapfrog a_j in j % 3)
//   3  tpart   rw    partial sums of dK_j, db_j: [step of the block][workgroup][W * W + W],
//                    which reduce_tiles adds in a fixed order (reduce.wgsl)
//   4  cursor  rw    [2] step cursors (network.wgsl)
//   5  kept    rw    resnet/antisym: the state before every step, [N][NMAX][W] (network.wgsl
//                    `store`; MODEL.md section 3); Verlet with KEEP: both pre-activations of
//                    every step, [2 N][NMAX][W] (verlet_tiled.wgsl keep_input)
//   6-9            st, acc, tpart, kept again as vec4 rows: tpart4 (8) for put_row's dK_j
//                    rows; st4, acc4, kept4 (6, 7, 9) through load4 and store4, for
//                    Verlet's kept pre-activations (KEPT4) and verlet_tiled8.wgsl's
//                    tile_adjoint8

const CQ: u32 = WP / 4u;
const BM: u32 = 4u * RQ;
const TWG: u32 = CQ * RQ;
const OUTS: u32 = W * W + W;

override N: u32;
override NMAX: u32;
override H: f32;
// The host leaves SLOT at NMAX W: the vec4 rows (kept4, st4, acc4) need it a multiple of 4
// where W is.
override SLOT: u32 = NMAX * W;
override OPS_B: u32 = N * 2u * WP * CQ;
// Steps per forward dispatch, and adjoint steps per dispatch (each with its partial slot).
override SPD: u32 = 1u;
override TBLOCK: u32 = 1u;
// Tiles per adjoint workgroup (consecutive ones), whose gradient sums share its partials: at
// wide nets one partial per tile of 32 examples was 67 MB per step.
override TPW: u32 = 1u;

@group(0) @binding(0) var<storage, read> ops: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> st: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;
@group(0) @binding(3) var<storage, read_write> tpart: array<f32>;
@group(0) @binding(4) var<storage, read_write> cursor: array<u32>;
@group(0) @binding(5) var<storage, read_write> kept: array<f32>;
// tpart as vec4 rows (put_row). Two bindings of one buffer are not coherent with each other
// inside a dispatch, so dK_j's partials go only through tpart4 where it is used, and db_j's,
// a range of their own, through tpart.
@group(0) @binding(8) var<storage, read_write> tpart4: array<vec4<f32>>;
// kept, st and acc as vec4 rows (load4 and store4: load and store with KEPT4, and
// verlet_tiled8.wgsl's tile_adjoint8).
@group(0) @binding(9) var<storage, read_write> kept4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> st4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> acc4: array<vec4<f32>>;

// Two operand tiles, [tile][k][r]: component k of examples 4r .. 4r + 3 as one vec4.
var<workgroup> tiles: array<vec4<f32>, 2u * WP * RQ>;
var<workgroup> top: u32;
// The pieces of split gradient sums (split_partials, bias_sums): SPLIT per entry of dK, BP per
// component quad of db; the host sets SPLIT, BP and the lengths (1 where unused).
const QS: u32 = (RQ + SPLIT - 1u) / SPLIT;
const QB: u32 = (RQ + BP - 1u) / BP;
var<workgroup> psum: array<f32, PS_LEN>;
var<workgroup> bsum: array<vec4<f32>, BS_LEN>;

// The batch's tiles, and the adjoint's workgroups for them (TPW consecutive tiles each).
fn batch_tiles() -> u32 {
    return (batch.n + BM - 1u) / BM;
}

fn adjoint_groups() -> u32 {
    return (batch_tiles() + TPW - 1u) / TPW;
}

// A workgroup's index in its grid (grids past 65535 workgroups are 2-D).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// What a forward workgroup does: steps j0 .. j1 - 1 (SPD of them, those below N) for the
// examples of tile g. Every invocation calls it (it reads the cursor).
struct ForwardJob {
    g: u32,
    j0: u32,
    j1: u32,
}

fn forward_job(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> ForwardJob {
    let j0 = read_cursor(li, 0u);
    // j1 >= j0 even for a cursor at or past N (never dispatched): no steps, and leapfrog's
    // slot parity (j1 % 2) stays that of the state it holds.
    return ForwardJob(group_index(wid, nwg), j0, max(j0, min(j0 + SPD, N)));
}

// What an adjoint workgroup does: steps j, j - 1, .. (count of them) for the tiles
// g * TPW .. of the batch, with `groups` workgroups in all (workgroups past them idle, as a
// 2-D grid's last row has). Every invocation calls it (it reads the cursor).
struct AdjointJob {
    g: u32,
    groups: u32,
    j: u32,
    count: u32,
}

fn adjoint_job(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> AdjointJob {
    let j = read_cursor(li, job.cur);
    return AdjointJob(group_index(wid, nwg), adjoint_groups(), j, min(TBLOCK, j + 1u));
}

// The job's tiles: TPW, fewer in the batch's last workgroup, none in an idle one. Uniform, so
// the barriers in a loop over them are reached by the whole workgroup.
fn job_tiles(a: AdjointJob) -> u32 {
    let first = a.g * TPW;
    return select(0u, min(TPW, batch_tiles() - first), first < batch_tiles());
}

// The first example of tile tt of the job, for example quad r.
fn job_example(a: AdjointJob, tt: u32, r: u32) -> u32 {
    return (a.g * TPW + tt) * BM + 4u * r;
}

// Where the workgroup's partial of step a.j - k starts in tpart: [k][group][W * W + W], the
// layout reduce_tiles reads.
fn partial_base(a: AdjointJob, k: u32) -> u32 {
    return (k * a.groups + a.g) * OUTS;
}

// Step cursor `cur` as a workgroup-uniform value (the step loops hold barriers); every
// invocation of the workgroup calls it.
fn read_cursor(li: u32, cur: u32) -> u32 {
    if li == 0u {
        top = cursor[cur];
    }
    return workgroupUniformLoad(&top);
}

// Puts a quantity of the invocation's block into tile t.
fn stage(t: u32, r: u32, c: u32, m: mat4x4<f32>) {
    let at = (t * WP + 4u * c) * RQ + r;
    tiles[at] = m[0];
    tiles[at + RQ] = m[1];
    tiles[at + 2u * RQ] = m[2];
    tiles[at + 3u * RQ] = m[3];
}

// Four consecutive components k .. k + 3 of example quad e of a tile, at `at` = its row k:
// column q holds component k + q of the four examples (stage's inverse).
fn tile_rows(at: u32) -> mat4x4<f32> {
    return mat4x4<f32>(tiles[at], tiles[at + RQ], tiles[at + 2u * RQ], tiles[at + 3u * RQ]);
}

// X M_{j,m} for the invocation's block, X the tile t: sum over k of X[e][k] M[k][4c + q],
// k in order. Four k at a time, each a rank-1 update of the block in 16 multiply-adds into
// the sums themselves: a 4x4 matrix product added to them was 64 multiply-adds and 16 more
// additions, each entry's chain of four ending in one.
fn product(t: u32, m: u32, j: u32, r: u32, c: u32) -> mat4x4<f32> {
    var a = mat4x4<f32>();
    let x0 = t * WP * RQ + r;
    let m0 = (j * 2u + m) * WP * CQ + c;
    var x = tile_rows(x0);
    var o = op_rows(m0);
    for (var k = 4u; k < WP; k += 4u) {
        // The next rows' loads before this rows' multiply-adds.
        let xn = tile_rows(x0 + k * RQ);
        let on = op_rows(m0 + k * CQ);
        a = rank4(a, x, o);
        x = xn;
        o = on;
    }
    return rank4(a, x, o);
}

// a + sum over kk of x[kk] o[kk]^T, kk in order (rank1).
fn rank4(a: mat4x4<f32>, x: mat4x4<f32>, o: mat4x4<f32>) -> mat4x4<f32> {
    return rank1(rank1(rank1(rank1(a, x[0], o[0]), x[1], o[1]), x[2], o[2]), x[3], o[3]);
}

// a + x o^T: column q gains x o[q] (x over the block's examples, o over its components).
fn rank1(a: mat4x4<f32>, x: vec4<f32>, o: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(fma(x, vec4<f32>(o.x), a[0]), fma(x, vec4<f32>(o.y), a[1]), fma(x, vec4<f32>(o.z), a[2]), fma(x, vec4<f32>(o.w), a[3]));
}

// Rows k .. k + 3 of an operator's component quad, from `at` = row k's: column kk holds row
// k + kk (product's and product8's loads of K_j or K_j^T).
fn op_rows(at: u32) -> mat4x4<f32> {
    return mat4x4<f32>(ops[at], ops[at + CQ], ops[at + 2u * CQ], ops[at + 3u * CQ]);
}

fn add_bias(m: mat4x4<f32>, j: u32, c: u32) -> mat4x4<f32> {
    let b = ops[OPS_B + j * CQ + c];
    return mat4x4<f32>(m[0] + b.x, m[1] + b.y, m[2] + b.z, m[3] + b.w);
}

fn act_m(m: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(act4(m[0]), act4(m[1]), act4(m[2]), act4(m[3]));
}

// sigma'(u) * v, entrywise.
fn dact_times(u: mat4x4<f32>, v: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(dact4(u[0]) * v[0], dact4(u[1]) * v[1], dact4(u[2]) * v[2], dact4(u[3]) * v[3]);
}

// The adjoint of one layer sigma(X M_{jj,m} + b_jj) of a step, in two halves around what the
// integrator does with u (Verlet folds sigma(u) into its state between them, which ends u's
// life before the products). Both use both tiles; every invocation calls them.

// u = X M_{jj,m} + b_jj for the invocation's block, X staged from x.
fn layer_input(x: mat4x4<f32>, m: u32, jj: u32, r: u32, c: u32) -> mat4x4<f32> {
    stage(0u, r, c, x);
    workgroupBarrier();
    return add_bias(product(0u, m, jj, r, c), jj, c);
}

// With P = (factor) sigma'(u) (adjoint of the layer's output): adds P's share of the step's
// gradient to the workgroup's partial at `base` (dK += P X^T through M = K, X P^T through
// M = K^T; db += P) and returns P M^T, the adjoint of X.
fn layer_adjoint(p: mat4x4<f32>, m: u32, jj: u32, r: u32, c: u32, base: u32, first: bool, li: u32) -> mat4x4<f32> {
    stage(1u, r, c, p);
    workgroupBarrier();
    let back = product(1u, 1u - m, jj, r, c);
    partials(m, 1u - m, base, first, li);
    bias_sums(1u, base, first, li);
    // Before the next stage overwrites a tile another invocation still reads.
    workgroupBarrier();
    return back;
}

// Where ld, load, put and store go: st, acc, or the states the forward pass keeps (kept).
const ST: u32 = 0u;
const ACC: u32 = 1u;
const KEPT: u32 = 2u;
// Verlet's kept pre-activations (KEEP) at a width that is a multiple of 4 move through kept4
// (load4, store4), an example's four components as one vec4: one float at a time,
// neighbouring invocations' stores sat 4 W bytes apart, and keeping cost wide's forward 3.4 ms on the H100 (run 10) for
// 1 GiB written. Only load and store reach kept then, so no dispatch mixes the two bindings.
const KEPT4: bool = KEEP && W % 4u == 0u;

// Entry (s, i) of a [NMAX][W] slot of buffer `buf`; 0 past the batch or the width.
fn ld(buf: u32, slot: u32, s: u32, i: u32) -> f32 {
    if s >= batch.n || i >= W {
        return 0.0;
    }
    let at = slot * SLOT + s * W + i;
    if buf == ACC {
        return acc[at];
    }
    if buf == KEPT {
        return kept[at];
    }
    return st[at];
}

fn ld_col(buf: u32, slot: u32, s0: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(ld(buf, slot, s0, i), ld(buf, slot, s0 + 1u, i), ld(buf, slot, s0 + 2u, i), ld(buf, slot, s0 + 3u, i));
}

fn load(buf: u32, slot: u32, s0: u32, c: u32) -> mat4x4<f32> {
    let i = 4u * c;
    if KEPT4 && buf == KEPT {
        return load4(buf, slot, s0, 0u, c);
    }
    return mat4x4<f32>(ld_col(buf, slot, s0, i), ld_col(buf, slot, s0, i + 1u), ld_col(buf, slot, s0, i + 2u), ld_col(buf, slot, s0, i + 3u));
}

fn put(buf: u32, slot: u32, s: u32, i: u32, v: f32) {
    if s >= batch.n || i >= W {
        return;
    }
    let at = slot * SLOT + s * W + i;
    if buf == ACC {
        acc[at] = v;
    } else if buf == KEPT {
        kept[at] = v;
    } else {
        st[at] = v;
    }
}

fn put_col(buf: u32, slot: u32, s0: u32, i: u32, v: vec4<f32>) {
    put(buf, slot, s0, i, v.x);
    put(buf, slot, s0 + 1u, i, v.y);
    put(buf, slot, s0 + 2u, i, v.z);
    put(buf, slot, s0 + 3u, i, v.w);
}

fn store(buf: u32, slot: u32, s0: u32, c: u32, m: mat4x4<f32>) {
    let i = 4u * c;
    if KEPT4 && buf == KEPT {
        store4(buf, slot, s0, 0u, c, m);
        return;
    }
    put_col(buf, slot, s0, i, m[0]);
    put_col(buf, slot, s0, i + 1u, m[1]);
    put_col(buf, slot, s0, i + 2u, m[2]);
    put_col(buf, slot, s0, i + 3u, m[3]);
}

// Row s of slot `slot` of st, acc or kept, components 4c .. 4c + 3 (one vec4: W % 4 = 0); 0
// past the batch.
fn row4(buf: u32, slot: u32, s: u32, c: u32) -> vec4<f32> {
    if s >= batch.n {
        return vec4<f32>();
    }
    let at = (slot * SLOT + s * W) / 4u + c;
    if buf == ACC {
        return acc4[at];
    }
    if buf == KEPT {
        return kept4[at];
    }
    return st4[at];
}

// The block (example quad r of the tile at s0, component quad c) as load() gives it: column
// q for component 4c + q, row e for example 4r + e.
fn load4(buf: u32, slot: u32, s0: u32, r: u32, c: u32) -> mat4x4<f32> {
    let s = s0 + 4u * r;
    return transpose(mat4x4<f32>(row4(buf, slot, s, c), row4(buf, slot, s + 1u, c), row4(buf, slot, s + 2u, c), row4(buf, slot, s + 3u, c)));
}

fn put_row4(buf: u32, slot: u32, s: u32, c: u32, v: vec4<f32>) {
    if s >= batch.n {
        return;
    }
    let at = (slot * SLOT + s * W) / 4u + c;
    if buf == ACC {
        acc4[at] = v;
    } else if buf == KEPT {
        kept4[at] = v;
    } else {
        st4[at] = v;
    }
}

// load4's inverse: nothing past the batch.
fn store4(buf: u32, slot: u32, s0: u32, r: u32, c: u32, m: mat4x4<f32>) {
    let s = s0 + 4u * r;
    let t = transpose(m);
    put_row4(buf, slot, s, c, t[0]);
    put_row4(buf, slot, s + 1u, c, t[1]);
    put_row4(buf, slot, s + 2u, c, t[2]);
    put_row4(buf, slot, s + 3u, c, t[3]);
}

// Adds v[q] to partial row `row`, columns b0 + q < W for q < len (the first round writes).
fn put_partial(row: u32, b0: u32, len: u32, v: vec4<f32>, first: bool) {
    let n = min(W - min(b0, W), len);
    for (var q = 0u; q < n; q++) {
        if first {
            tpart[row + b0 + q] = v[q];
        } else {
            tpart[row + b0 + q] += v[q];
        }
    }
}

// One round of the tile's gradient sums: dK[a][b] += sum_e A[e][a] B[e][b] for A the tile
// ta and B the tile tb (P Q^T, then R S^T). DB x DB blocks of dK over the invocations (DB =
// 4, 2 or 1, the largest that gives every invocation a block); each block keeps its
// invocation in every round and tile, which reads back what it wrote, so the sums need no
// barrier and run in a fixed order. Neighbouring invocations read rows a multiple of 2 RQ vec4 apart, the same
// banks of workgroup memory, so each starts its examples at its own offset (skew).
// Where the entries are fewer than the invocations (SPLIT > 1: w <= 8), split_partials
// instead; every invocation calls this then (a barrier), as it does bias_sums.
fn partials(ta: u32, tb: u32, base: u32, first: bool, li: u32) {
    if SPLIT > 1u {
        split_partials(ta, tb, base, first, li);
        return;
    }
    let nb = WP / DB;
    let skew = li % RQ;
    for (var blk = li; blk < nb * nb; blk += TWG) {
        let a0 = blk / nb * DB;
        let b0 = blk % nb * DB;
        let pa = (ta * WP + a0) * RQ;
        let pb = (tb * WP + b0) * RQ;
        if DB == 4u {
            // m[bb][aa] = sum over the tile's examples l of A[l][a0 + aa] B[l][b0 + bb], a
            // rank-1 update per example (rank4, as in product).
            var m = mat4x4<f32>();
            for (var i = 0u; i < RQ; i++) {
                let e = skewed(i, skew);
                m = rank4(m, transpose(tile_rows(pa + e)), transpose(tile_rows(pb + e)));
            }
            // m[bb][aa] = dK[a0 + aa][b0 + bb]: rows of dK are the columns of m^T.
            let mt = transpose(m);
            put_row(base, a0, b0, mt[0], first);
            put_row(base, a0 + 1u, b0, mt[1], first);
            put_row(base, a0 + 2u, b0, mt[2], first);
            put_row(base, a0 + 3u, b0, mt[3], first);
        } else if DB == 2u {
            // Even and odd quads in two sums: one was a chain of 4 RQ dependent multiply-adds
            // per entry (mid: 128), twice per adjoint step.
            var m0 = vec4<f32>();
            var m1 = vec4<f32>();
            for (var i = 0u; i + 1u < RQ; i += 2u) {
                m0 += dots2(pa, pb, skewed(i, skew));
                m1 += dots2(pa, pb, skewed(i + 1u, skew));
            }
            if RQ % 2u == 1u {
                m0 += dots2(pa, pb, skewed(RQ - 1u, skew));
            }
            let m = m0 + m1;
            put_row(base, a0, b0, vec4<f32>(m.xy, 0.0, 0.0), first);
            put_row(base, a0 + 1u, b0, vec4<f32>(m.zw, 0.0, 0.0), first);
        } else {
            var m = 0.0;
            for (var i = 0u; i < RQ; i++) {
                let e = skewed(i, skew);
                m += dot(tiles[pa + e], tiles[pb + e]);
            }
            put_row(base, a0, b0, vec4<f32>(m, 0.0, 0.0, 0.0), first);
        }
    }
}

// A 2 x 2 block of dK from example quad e: rows pa, pa + RQ of one tile against pb, pb + RQ
// of the other.
fn dots2(pa: u32, pb: u32, e: u32) -> vec4<f32> {
    let x0 = tiles[pa + e];
    let x1 = tiles[pa + RQ + e];
    let y0 = tiles[pb + e];
    let y1 = tiles[pb + RQ + e];
    return vec4<f32>(dot(x0, y0), dot(x0, y1), dot(x1, y0), dot(x1, y1));
}

// The entries of dK over all TWG invocations, SPLIT per entry (DB = 1): invocation li sums
// entry li % WP^2 over the tile's example quads of piece li / WP^2, two quads at a time into
// two sums; after a barrier the first WP^2 invocations add their entry's SPLIT pieces in
// order. One invocation per entry over all RQ quads was a chain of 4 RQ dependent
// multiply-adds, twice per adjoint step, while half the workgroup waited (w = 8: 256).
fn split_partials(ta: u32, tb: u32, base: u32, first: bool, li: u32) {
    let o = li % (WP * WP);
    let h = li / (WP * WP);
    if h < SPLIT {
        let pa = (ta * WP + o / WP) * RQ + h * QS;
        let pb = (tb * WP + o % WP) * RQ + h * QS;
        let n = piece_quads(h, QS);
        let skew = li % n;
        var m0 = 0.0;
        var m1 = 0.0;
        for (var i = 0u; i + 1u < n; i += 2u) {
            let e = wrapped(i + skew, n);
            let f = wrapped(i + 1u + skew, n);
            m0 += dot(tiles[pa + e], tiles[pb + e]);
            m1 += dot(tiles[pa + f], tiles[pb + f]);
        }
        if n % 2u == 1u {
            let e = wrapped(n - 1u + skew, n);
            m0 += dot(tiles[pa + e], tiles[pb + e]);
        }
        psum[li] = m0 + m1;
    }
    workgroupBarrier();
    if li < WP * WP {
        var m = 0.0;
        for (var k = 0u; k < SPLIT; k++) {
            m += psum[k * WP * WP + li];
        }
        put_row(base, li / WP, li % WP, vec4<f32>(m, 0.0, 0.0, 0.0), first);
    }
}

// Quads of piece h of a split sum over the tile's RQ example quads, `size` per piece.
fn piece_quads(h: u32, size: u32) -> u32 {
    return min(size, RQ - min(h * size, RQ));
}

// i mod n for i < 2 n.
fn wrapped(i: u32, n: u32) -> u32 {
    return select(i, i - n, i >= n);
}

// db[a] += sum_e B[e][a] for B the tile t, into the partial's db entries (base + W W).
// BP invocations per component quad each sum a piece of QB example quads; with BP > 1
// (RQ >= 16), after a barrier the first CQ add their pieces in order: one invocation per
// quad over all RQ was a chain of RQ additions while the rest waited.
fn bias_sums(t: u32, base: u32, first: bool, li: u32) {
    let h = li / CQ;
    var v = vec4<f32>();
    if h < BP {
        let p = (t * WP + 4u * (li % CQ)) * RQ + h * QB;
        let n = piece_quads(h, QB);
        // Pieces QB quads apart start in the same banks: a skew, as in partials.
        let skew = li % n;
        for (var i = 0u; i < n; i++) {
            // Each component's sum over the four examples.
            v += vec4<f32>(1.0) * tile_rows(p + wrapped(i + skew, n));
        }
    }
    if BP > 1u {
        if h < BP {
            bsum[li] = v;
        }
        workgroupBarrier();
        v = vec4<f32>();
        if li < CQ {
            for (var k = 0u; k < BP; k++) {
                v += bsum[k * CQ + li];
            }
        }
    }
    if li < CQ {
        put_partial(base + W * W, 4u * li, 4u, v, first);
    }
}

// Example quad i + skew of the tile, wrapped.
fn skewed(i: u32, skew: u32) -> u32 {
    return wrapped(i + skew, RQ);
}

// Row a of a DB-wide block of dK at column b0 (v's first DB entries); nothing past the width.
// 4 x 4 blocks of a width that is a multiple of 4 move as one vec4 through tpart4: scalar
// stores, 16 bytes apart from one invocation to the next, used a quarter of each sector they
// wrote, once per tile and half step (wide: 128 KiB a tile).
fn put_row(base: u32, a: u32, b0: u32, v: vec4<f32>, first: bool) {
    if a >= W {
        return;
    }
    if DB == 4u && W % 4u == 0u {
        add_row4((base + a * W + b0) / 4u, v, first);
        return;
    }
    put_partial(base + a * W, b0, DB, v, first);
}

// Adds v to tpart4[at] (the first round writes).
fn add_row4(at: u32, v: vec4<f32>, first: bool) {
    if first {
        tpart4[at] = v;
    } else {
        tpart4[at] += v;
    }
}
