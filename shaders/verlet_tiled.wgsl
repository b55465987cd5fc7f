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
