// resnet_tiled.wgsl — forward Euler for resnet and antisym, y_{j+1} = y_j + h sigma(M_j y_j
// + b_j), and its adjoint for wider nets (MODEL.md sections 2-4), a tile of examples per
// workgroup (tiles.wgsl). Not invertible: the forward pass keeps the state before every step
// (`kept`), and the adjoint reads it back.
// CPU twin: stablenet_core::integrators::resnet (the arithmetic of resnet.wgsl, rounded in
// another order: h (sigma' ybar) here).

// Steps cursor[0] .. cursor[0] + SPD - 1 (those below N) for the tile's examples. The steps use
// the two tiles in turn: a tile is staged again two steps later, after the barrier of the
// step between, which every invocation passes only once it has read the tile.
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
    for (var j = f.j0; j < f.j1; j++) {
        store(KEPT, j, s0, c, y);
        stage(j % 2u, r, c, y);
        workgroupBarrier();
        y += H * act_m(add_bias(product(j % 2u, 1u, j, r, c), j, c));
    }
    store(ST, 0u, s0, c, y);
}

// Adjoint steps j = cursor[job.cur], j - 1, .. (min(TBLOCK, j + 1) of them) of the examples
// of TPW consecutive tiles, each step's sums of dM_j, db_j in the workgroup's partial of slot
// k of the block (reduce.wgsl antisymmetrises them for antisym). Step j backwards, with y_j
// from `kept`: P = sigma'(M_j y_j + b_j) h ybar, Q = y_j, B = P; ybar += M_j^T P.
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
        var yb = load(ACC, 0u, s0, c);
        for (var k = 0u; k < a.count; k++) {
            let jj = a.j - k;
            let base = partial_base(a, k);
            let u = layer_input(load(KEPT, jj, s0, c), 1u, jj, r, c);
            yb += layer_adjoint(H * dact_times(u, yb), 1u, jj, r, c, base, tt == 0u, li);
        }
        store(ACC, 0u, s0, c, yb);
    }
}
