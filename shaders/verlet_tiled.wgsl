// verlet_tiled.wgsl — the Hamiltonian (Verlet) step and its reverse-time adjoint for wider
// nets (MODEL.md sections 2-4), a tile of examples per workgroup (tiles.wgsl).
// CPU twin: stablenet_core::integrators::verlet (the same arithmetic as verlet.wgsl).

// Steps cursor[0] .. cursor[0] + SPD - 1 (those below N) for the tile's examples:
// z -= h sigma(K^T y + b); y += h sigma(K z + b).
@compute @workgroup_size(TWG)
fn tile_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let f = forward_job(wid, nwg, li);
    let r = li % RQ;
    let c = li / RQ;
    let s0 = f.g * BM + 4u * r;
    var y = load(ST, 0u, s0, c);
    var z = load(ST, 1u, s0, c);
    // Each barrier also keeps a tile from being overwritten while another invocation still
    // reads it for the step before.
    for (var j = f.j0; j < f.j1; j++) {
        stage(0u, r, c, y);
        workgroupBarrier();
        z -= H * act_m(add_bias(product(0u, 0u, j, r, c), j, c));
        stage(1u, r, c, z);
        workgroupBarrier();
        y += H * act_m(add_bias(product(1u, 1u, j, r, c), j, c));
    }
    store(ST, 0u, s0, c, y);
    store(ST, 1u, s0, c, z);
}

// Adjoint steps j = cursor[job.cur], j - 1, .. (min(TBLOCK, j + 1) of them) of the examples
// of TPW consecutive tiles, one tile after the other, each step's sums of dK_j, db_j over
// them in the workgroup's partial of slot k of the block. On entry the state of step j + 1
// and its adjoints; on exit those of the block's last step, y_j, z_j rebuilt in reverse time.
// Factors (verlet.wgsl): P = s, Q = z_{j+1}, R = y_j, S = t.
@compute @workgroup_size(TWG)
fn tile_adjoint(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let a = adjoint_job(wid, nwg, li);
    let r = li % RQ;
    let c = li / RQ;
    for (var tt = 0u; tt < job_tiles(a); tt++) {
        let s0 = job_example(a, tt, r);
        var y = load(ST, 0u, s0, c);
        var z = load(ST, 1u, s0, c);
        var yb = load(ACC, 0u, s0, c);
        var zb = load(ACC, 1u, s0, c);
        for (var k = 0u; k < a.count; k++) {
            let jj = a.j - k;
            let base = partial_base(a, k);
            // u = K z_{j+1} + b; s = sigma'(u) h ybar; zbar += K^T s; y_j = y_{j+1} - h sigma(u)
            // (updated at once, which ends u's life before the products).
            let u = layer_input(z, 1u, jj, r, c);
            let s = H * dact_times(u, yb);
            y -= H * act_m(u);
            zb += layer_adjoint(s, 1u, jj, r, c, base, tt == 0u, li);
            // c = K^T y_j + b; t = -sigma'(c) h zbar; ybar += K t; z_j = z_{j+1} + h sigma(c).
            let cv = layer_input(y, 0u, jj, r, c);
            let t = -H * dact_times(cv, zb);
            z += H * act_m(cv);
            yb += layer_adjoint(t, 0u, jj, r, c, base, false, li);
        }
        store(ST, 0u, s0, c, y);
        store(ST, 1u, s0, c, z);
        store(ACC, 0u, s0, c, yb);
        store(ACC, 1u, s0, c, zb);
    }
}

// tile_forward with 8 x 8 blocks (TiledTuning fblock=8; an experiment for the next H100 run,
// not the default): a quarter of the invocations, each two example quads by two component
// quads, so that every load of the tile or of K_j feeds twice the multiply-adds (16 products
// for two loads, against 8). The states live in the two tiles (y in 0, z in 1) for the whole
// dispatch, since four blocks of each would not fit registers; each invocation updates its
// own blocks in place between the barriers. Needs RQ and CQ even (the host checks).
const TWG8: u32 = max(TWG / 4u, 1u);
const RQ2: u32 = max(RQ / 2u, 1u);

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
        let u = product8(0u, 0u, j, r, c);
        step_block(1u, -H, u[0], j, r, c);
        step_block(1u, -H, u[1], j, r, c + 1u);
        step_block(1u, -H, u[2], j, r + 1u, c);
        step_block(1u, -H, u[3], j, r + 1u, c + 1u);
        workgroupBarrier();
        let v = product8(1u, 1u, j, r, c);
        step_block(0u, H, v[0], j, r, c);
        step_block(0u, H, v[1], j, r, c + 1u);
        step_block(0u, H, v[2], j, r + 1u, c);
        step_block(0u, H, v[3], j, r + 1u, c + 1u);
        workgroupBarrier();
    }
    for (var x = li; x < WP * BM; x += TWG8) {
        let e = x / WP;
        let at = (x % WP) * RQ + e / 4u;
        put(ST, 0u, s0 + e, x % WP, tiles[at][e % 4u]);
        put(ST, 1u, s0 + e, x % WP, tiles[WP * RQ + at][e % 4u]);
    }
}

// The block (quad r, component quad c) of the state in tile t plus g sigma(u + b_j).
fn step_block(t: u32, g: f32, u: mat4x4<f32>, j: u32, r: u32, c: u32) {
    let x = tile_rows((t * WP + 4u * c) * RQ + r);
    stage(t, r, c, x + g * act_m(add_bias(u, j, c)));
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
