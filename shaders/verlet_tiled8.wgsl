// verlet_tiled8.wgsl — the tiled Verlet steps with 8 x 8 blocks (TiledTuning fblock=8 and
// ablock=8), not the defaults: on the H100 (2026-11-28, run 10) both were slower than the 4 x 4
// blocks at mid and wide (wide: 32.9 ms with the 8 x 8 forward, 45.1 with the 8 x 8 adjoint,
// against 28.5), likely because a quarter of the invocations per tile leaves too few in
// flight. Kernel tuning still tries them. Follows verlet_tiled.wgsl.
// CPU twin: stablenet_core::integrators::verlet, as for the 4 x 4 blocks.
//
// Why: a 4 x 4 block's product loads four vec4 of the tile and four of K_j for 64
// multiply-adds. Loads of workgroup memory and of the L1 cache share one data path per SM,
// and a 128-bit load of a warp takes four of its cycles, so by that count the path is busy
// twice as long as the multiply-adds take (H100 run 8: the wide products ran at about 17% of
// the f32 rate). An 8 x 8 block, two example quads by two component quads, does 256
// multiply-adds for 16 loads. A quarter of the invocations own the same tile.
//
// tile_adjoint8 (W % 4 = 0) moves its state blocks and gradient rows 16 bytes at a time,
// through tiles.wgsl's vec4 views of st, acc and tpart (bindings 6-8; load4, store4, add_row4).
// Two bindings of one buffer are not coherent with each other inside a dispatch, so
// tile_adjoint8 reaches the states only through st4 and acc4, and dK_j's partials only through
// tpart4; bias_sums writes db_j's, a range of their own, through tpart. With KEEP both 8 x 8
// kernels reach the kept pre-activations only through tiles.wgsl's load and store (kept4).

const TWG8: u32 = max(TWG / 4u, 1u);
const RQ2: u32 = max(RQ / 2u, 1u);

// tile_forward with 8 x 8 blocks. The states live in the two tiles (y in 0, z in 1) for the whole
// dispatch, since four blocks of each would not fit registers; each invocation updates its
// own blocks in place between the barriers. Needs RQ and CQ even (the host checks).
@compute @workgroup_size(TWG8)
fn tile_forward8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let f = forward_job(wid, nwg, li);
    let r = 2u * (li % RQ2);
    let c = 2u * (li / RQ2);
    let s0 = f.g * BM;
    // The tile's states in, component-fastest so that the loads are contiguous rows.
    for (var x = li; x < WP * BM; x += TWG8) {
        let e = x / WP;
        let at = (x % WP) * RQ + e / 4u;
        tiles[at][e % 4u] = ld(ST, 0u, s0 + e, x % WP);
        tiles[WP * RQ + at][e % 4u] = ld(ST, 1u, s0 + e, x % WP);
    }
    workgroupBarrier();
    for (var j = f.j0; j < f.j1; j++) {
        // z -= h sigma(K^T y + b), then y += h sigma(K z + b), each block in place.
        let u = biased8(product8(0u, 0u, j, r, c), j, c);
        keep8(2u * j, s0, r, c, u);
        step_block(1u, -H, u[0], r, c);
        step_block(1u, -H, u[1], r, c + 1u);
        step_block(1u, -H, u[2], r + 1u, c);
        step_block(1u, -H, u[3], r + 1u, c + 1u);
        workgroupBarrier();
        let v = biased8(product8(1u, 1u, j, r, c), j, c);
        keep8(2u * j + 1u, s0, r, c, v);
        step_block(0u, H, v[0], r, c);
        step_block(0u, H, v[1], r, c + 1u);
        step_block(0u, H, v[2], r + 1u, c);
        step_block(0u, H, v[3], r + 1u, c + 1u);
        workgroupBarrier();
    }
    for (var x = li; x < WP * BM; x += TWG8) {
        let e = x / WP;
        let at = (x % WP) * RQ + e / 4u;
        put(ST, 0u, s0 + e, x % WP, tiles[at][e % 4u]);
        put(ST, 1u, s0 + e, x % WP, tiles[WP * RQ + at][e % 4u]);
    }
}

// The block (quad r, component quad c) of the state in tile t plus g sigma(u).
fn step_block(t: u32, g: f32, u: mat4x4<f32>, r: u32, c: u32) {
    let x = tile_rows((t * WP + 4u * c) * RQ + r);
    stage(t, r, c, x + g * act_m(u));
}

// product8's blocks plus b_j (component quads c, c + 1).
fn biased8(p: array<mat4x4<f32>, 4>, j: u32, c: u32) -> array<mat4x4<f32>, 4> {
    let b = c + 1u;
    return array<mat4x4<f32>, 4>(add_bias(p[0], j, c), add_bias(p[1], j, b), add_bias(p[2], j, c), add_bias(p[3], j, b));
}

// With KEEP, the blocks' pre-activations into slot `slot` of `kept` (keep_input's layout).
fn keep8(slot: u32, s0: u32, r: u32, c: u32, u: array<mat4x4<f32>, 4>) {
    if KEEP {
        store(KEPT, slot, s0 + 4u * r, c, u[0]);
        store(KEPT, slot, s0 + 4u * r, c + 1u, u[1]);
        store(KEPT, slot, s0 + 4u * r + 4u, c, u[2]);
        store(KEPT, slot, s0 + 4u * r + 4u, c + 1u, u[3]);
    }
}

// The pre-activations of the invocation's blocks at step jj from tile 0 (product8 with M_{jj,m},
// plus b_jj), or with KEEP as the forward kept them in `slot`.
fn input8(m: u32, jj: u32, slot: u32, s0: u32, r: u32, c: u32) -> array<mat4x4<f32>, 4> {
    if KEEP {
        let s = s0 + 4u * r;
        return array<mat4x4<f32>, 4>(
            load(KEPT, slot, s, c),
            load(KEPT, slot, s, c + 1u),
            load(KEPT, slot, s + 4u, c),
            load(KEPT, slot, s + 4u, c + 1u),
        );
    }
    return biased8(product8(0u, m, jj, r, c), jj, c);
}

// X M_{j,m} for quads r, r + 1 and component quads c, c + 1 of tile t: block b = 2 qa + cb,
// each entry the same sum over k, in the same order, as product's.
fn product8(t: u32, m: u32, j: u32, r: u32, c: u32) -> array<mat4x4<f32>, 4> {
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    let x0 = t * WP * RQ + r;
    let m0 = (j * 2u + m) * WP * CQ + c;
    for (var k = 0u; k < WP; k += 4u) {
        let xa = tile_rows(x0 + k * RQ);
        let xb = tile_rows(x0 + 1u + k * RQ);
        let ra = transpose(op_rows(m0 + k * CQ));
        let rb = transpose(op_rows(m0 + 1u + k * CQ));
        a0 += xa * ra;
        a1 += xa * rb;
        a2 += xb * ra;
        a3 += xb * rb;
    }
    return array<mat4x4<f32>, 4>(a0, a1, a2, a3);
}

// tile_adjoint with 8 x 8 blocks: the same steps, factors and partial slots. An invocation's
// share of the four states (y, z, ybar, zbar: 256 floats) cannot stay in registers as the 4 x 4
// kernel keeps its 64, and the tiles hold the products' operands, so the states stay in st and
// acc: each invocation reads and writes only its own blocks there, in program order, so no
// barrier guards them. Needs RQ >= 4 and even, CQ even, W % 4 = 0 (the host checks).
@compute @workgroup_size(TWG8)
fn tile_adjoint8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let a = adjoint_job(wid, nwg, li);
    let r = 2u * (li % RQ2);
    let c = 2u * (li / RQ2);
    for (var tt = 0u; tt < job_tiles(a); tt++) {
        let s0 = job_example(a, tt, 0u);
        for (var k = 0u; k < a.count; k++) {
            let jj = a.j - k;
            let base = partial_base(a, k);
            // u = K z_{j+1} + b; s = sigma'(u) h ybar; zbar += K^T s; y_j = y_{j+1} - h sigma(u).
            stage_state(1u, s0, r, c);
            barrier_unless_kept();
            let u = input8(1u, jj, 2u * jj + 1u, s0, r, c);
            rebuild_block(0u, -H, 0u, H, u[0], s0, r, c);
            rebuild_block(0u, -H, 0u, H, u[1], s0, r, c + 1u);
            rebuild_block(0u, -H, 0u, H, u[2], s0, r + 1u, c);
            rebuild_block(0u, -H, 0u, H, u[3], s0, r + 1u, c + 1u);
            workgroupBarrier();
            add_products(1u, product8(1u, 0u, jj, r, c), s0, r, c);
            partials8(1u, 0u, base, tt == 0u, li);
            bias_sums(1u, base, tt == 0u, li);
            workgroupBarrier();
            // c = K^T y_j + b; t = -sigma'(c) h zbar; ybar += K t; z_j = z_{j+1} + h sigma(c).
            stage_state(0u, s0, r, c);
            barrier_unless_kept();
            let v = input8(0u, jj, 2u * jj, s0, r, c);
            rebuild_block(1u, H, 1u, -H, v[0], s0, r, c);
            rebuild_block(1u, H, 1u, -H, v[1], s0, r, c + 1u);
            rebuild_block(1u, H, 1u, -H, v[2], s0, r + 1u, c);
            rebuild_block(1u, H, 1u, -H, v[3], s0, r + 1u, c + 1u);
            workgroupBarrier();
            add_products(0u, product8(1u, 1u, jj, r, c), s0, r, c);
            partials8(0u, 1u, base, false, li);
            bias_sums(1u, base, false, li);
            workgroupBarrier();
        }
    }
}

// Before product8 reads tile 0; with KEEP nothing reads it before rebuild_block's half step
// ends at a barrier (as step_input).
fn barrier_unless_kept() {
    if !KEEP {
        workgroupBarrier();
    }
}

// Puts the invocation's four blocks of state `slot` (0 y, 1 z) into tile 0.
fn stage_state(slot: u32, s0: u32, r: u32, c: u32) {
    stage(0u, r, c, load4(ST, slot, s0, r, c));
    stage(0u, r, c + 1u, load4(ST, slot, s0, r, c + 1u));
    stage(0u, r + 1u, c, load4(ST, slot, s0, r + 1u, c));
    stage(0u, r + 1u, c + 1u, load4(ST, slot, s0, r + 1u, c + 1u));
}

// One block of a half step, u = X M_j + b_j: the factor f sigma'(u) times adjoint slot
// `aslot` into tile 1, and state `slot` plus g sigma(u), the state rebuilt.
fn rebuild_block(slot: u32, g: f32, aslot: u32, f: f32, u: mat4x4<f32>, s0: u32, r: u32, c: u32) {
    stage(1u, r, c, f * dact_times(u, load4(ACC, aslot, s0, r, c)));
    store4(ST, slot, s0, r, c, load4(ST, slot, s0, r, c) + g * act_m(u));
}

// Adjoint slot `slot` plus the four blocks p (product8's order) of the invocation.
fn add_products(slot: u32, p: array<mat4x4<f32>, 4>, s0: u32, r: u32, c: u32) {
    store4(ACC, slot, s0, r, c, load4(ACC, slot, s0, r, c) + p[0]);
    store4(ACC, slot, s0, r, c + 1u, load4(ACC, slot, s0, r, c + 1u) + p[1]);
    store4(ACC, slot, s0, r + 1u, c, load4(ACC, slot, s0, r + 1u, c) + p[2]);
    store4(ACC, slot, s0, r + 1u, c + 1u, load4(ACC, slot, s0, r + 1u, c + 1u) + p[3]);
}

// partials with 8 x 8 blocks of dK (rows a0 .. a0 + 7 of tile ta against columns b0 .. b0 + 7
// of tile tb): 16 loads for 256 multiply-adds per example quad, where DB = 4 does 8 for 64.
// Each block keeps its invocation, and the skew, as partials.
fn partials8(ta: u32, tb: u32, base: u32, first: bool, li: u32) {
    // (At WP = 4, which never runs this, 1: a constant 0 would not compile.)
    let nb = max(WP / 8u, 1u);
    let skew = li % RQ;
    for (var blk = li; blk < nb * nb; blk += TWG8) {
        let a0 = blk / nb * 8u;
        let b0 = blk % nb * 8u;
        let pa = (ta * WP + a0) * RQ;
        let pb = (tb * WP + b0) * RQ;
        var m00 = mat4x4<f32>();
        var m01 = mat4x4<f32>();
        var m10 = mat4x4<f32>();
        var m11 = mat4x4<f32>();
        for (var i = 0u; i < RQ; i++) {
            let e = skewed(i, skew);
            let xa = transpose(tile_rows(pa + e));
            let xb = transpose(tile_rows(pa + 4u * RQ + e));
            let ya = tile_rows(pb + e);
            let yb = tile_rows(pb + 4u * RQ + e);
            m00 += xa * ya;
            m01 += xa * yb;
            m10 += xb * ya;
            m11 += xb * yb;
        }
        // As in partials, m[bb][aa] = dK[a0 + aa][b0 + bb]: the rows are the columns of m^T.
        put_rows4(base, a0, b0, transpose(m00), first);
        put_rows4(base, a0, b0 + 4u, transpose(m01), first);
        put_rows4(base, a0 + 4u, b0, transpose(m10), first);
        put_rows4(base, a0 + 4u, b0 + 4u, transpose(m11), first);
    }
}

// Rows a0 .. a0 + 3 of the partial's dK at columns b0 .. b0 + 3, column q of mt for row
// a0 + q (the first round writes); W % 4 = 0, so each is one vec4 of tpart4.
fn put_rows4(base: u32, a0: u32, b0: u32, mt: mat4x4<f32>, first: bool) {
    let at = (base + a0 * W + b0) / 4u;
    let rs = W / 4u;
    add_row4(at, mt[0], first);
    add_row4(at + rs, mt[1], first);
    add_row4(at + 2u * rs, mt[2], first);
    add_row4(at + 3u * rs, mt[3], first);
}
