// verlet_tiled.wgsl — the Hamiltonian (Verlet) step and its reverse-time adjoint for wider
// nets (MODEL.md sections 2-4), a tile of examples per workgroup (tiles.wgsl).
// CPU twin: stablenet_core::integrators::verlet (the same arithmetic as verlet.wgsl).

// Steps cursor[0] .. cursor[0] + SPD - 1 (those below N) for the tile's examples:
// z -= h sigma(K^T y + b); y += h sigma(K z + b).
// The states live in the tiles for the whole dispatch (y in 0, z in 1), each invocation
// updating its own block in place: the half step that reads one tile writes only the other,
// so two barriers a step keep them apart, as staging did, and no invocation holds the 32
// floats of its y and z blocks in registers through the products.
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
    let own = 4u * c * RQ + r;
    stage(0u, r, c, load(ST, 0u, s0, c));
    stage(1u, r, c, load(ST, 1u, s0, c));
    workgroupBarrier();
    for (var j = f.j0; j < f.j1; j++) {
        let u = add_bias(product(0u, 0u, j, r, c), j, c);
        keep_input(2u * j, s0, c, u);
        stage(1u, r, c, tile_rows(WP * RQ + own) - H * act_m(u));
        workgroupBarrier();
        let v = add_bias(product(1u, 1u, j, r, c), j, c);
        keep_input(2u * j + 1u, s0, c, v);
        stage(0u, r, c, tile_rows(own) + H * act_m(v));
        workgroupBarrier();
    }
    store(ST, 0u, s0, c, tile_rows(own));
    store(ST, 1u, s0, c, tile_rows(WP * RQ + own));
}

// KEEP (TiledTuning keep): the forward keeps the pre-activations K_j^T y_j + b_j in slot 2 j
// of `kept` and K_j z_{j+1} + b_j in slot 2 j + 1, and the adjoint reads them back instead of
// a product with the states it rebuilds (one product in four of a step). Its states are still
// rebuilt in reverse time, now from the kept sigma(u): y_j = y_{j+1} - h sigma(u) without
// the round-off of recomputing u, and the gradient sums still take them as the factors.
fn keep_input(slot: u32, s0: u32, c: u32, u: mat4x4<f32>) {
    if KEEP {
        store(KEPT, slot, s0, c, u);
    }
}

// layer_input, or with KEEP the forward's u from `slot`: x is staged for the gradient sums
// either way. With KEEP no barrier follows the stage: nothing reads tile 0 before the one in
// layer_adjoint.
fn step_input(x: mat4x4<f32>, m: u32, jj: u32, slot: u32, s0: u32, r: u32, c: u32) -> mat4x4<f32> {
    if KEEP {
        stage(0u, r, c, x);
        return load(KEPT, slot, s0, c);
    }
    return layer_input(x, m, jj, r, c);
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
            let u = step_input(z, 1u, jj, 2u * jj + 1u, s0, r, c);
            let s = H * dact_times(u, yb);
            y -= H * act_m(u);
            zb += layer_adjoint(s, 1u, jj, r, c, base, tt == 0u, li);
            // c = K^T y_j + b; t = -sigma'(c) h zbar; ybar += K t; z_j = z_{j+1} + h sigma(c).
            let cv = step_input(y, 0u, jj, 2u * jj, s0, r, c);
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
