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
            stage(0u, r, c, z);
            workgroupBarrier();
            let u = add_bias(product(0u, 1u, jj, r, c), jj, c);
            stage(1u, r, c, H * dact_times(u, yb));
            y -= H * act_m(u);
            workgroupBarrier();
            zb += product(1u, 0u, jj, r, c);
            partials(1u, 0u, base, tt == 0u, li);
            bias_sums(1u, base, tt == 0u, li);
            workgroupBarrier();
            // c = K^T y_j + b; t = -sigma'(c) h zbar; ybar += K t; z_j = z_{j+1} + h sigma(c).
            stage(0u, r, c, y);
            workgroupBarrier();
            let cv = add_bias(product(0u, 0u, jj, r, c), jj, c);
            stage(1u, r, c, -H * dact_times(cv, zb));
            z += H * act_m(cv);
            workgroupBarrier();
            yb += product(1u, 1u, jj, r, c);
            partials(0u, 1u, base, false, li);
            bias_sums(1u, base, false, li);
            workgroupBarrier();
        }
        store(ST, 0u, s0, c, y);
        store(ST, 1u, s0, c, z);
        store(ACC, 0u, s0, c, yb);
        store(ACC, 1u, s0, c, zb);
    }
}
