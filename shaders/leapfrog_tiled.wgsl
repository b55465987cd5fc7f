// leapfrog_tiled.wgsl — the second-order step y_{j+1} = 2 y_j - y_{j-1} + h^2 F_j(y_j),
// F_j(y) = -K_j^T sigma(K_j y + b_j), and its reverse-time adjoint for wider nets (MODEL.md
// sections 2-4), a tile of examples per workgroup (tiles.wgsl). y_j lives in st slot j % 2
// and a_j in acc slot j % 3 between dispatches, as leapfrog.wgsl keeps them.
// CPU twin: stablenet_core::integrators::leapfrog (the same arithmetic as leapfrog.wgsl).

// Steps cursor[0] .. cursor[0] + SPD - 1 (those below N) for the tile's examples.
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
    var y = load(ST, f.j0 % 2u, s0, c); // y_j
    var yp = load(ST, (f.j0 + 1u) % 2u, s0, c); // y_{j-1}
    // Each barrier also keeps a tile from being overwritten while another invocation still
    // reads it for the step before.
    for (var j = f.j0; j < f.j1; j++) {
        stage(0u, r, c, y);
        workgroupBarrier();
        stage(1u, r, c, act_m(add_bias(product(0u, 1u, j, r, c), j, c)));
        workgroupBarrier();
        // h^2 F_j(y_j) = -h^2 K^T sigma(K y_j + b).
        let next = 2.0 * y - yp - (H * H) * product(1u, 0u, j, r, c);
        yp = y;
        y = next;
    }
    store(ST, f.j1 % 2u, s0, c, y);
    store(ST, (f.j1 + 1u) % 2u, s0, c, yp);
}

// Adjoint steps j = cursor[job.cur], j - 1, .. (min(TBLOCK, j + 1) of them) of the examples
// of TPW consecutive tiles, one tile after the other, each step's sums of dK_j, db_j in the
// workgroup's partial of slot k of the block. Step j backwards (leapfrog.wgsl): with
// v = h^2 a_{j+1}, u = K y_j + b, g = sigma'(u) (K v): a_j += 2 a_{j+1} - K^T g (a_1 - K^T g
// at j = 0), a_{j-1} -= a_{j+1}, y_{j-1} = 2 y_j - y_{j+1} + h^2 F(y_j).
// Factors: P = -sigma(u), Q = v, R = -g, S = y_j, B = -g.
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
        // The registers hold step `at`'s y_at, y_{at+1}, a_{at+1}, a_at, a_{at-1}.
        var at = a.j;
        var y = load(ST, at % 2u, s0, c);
        var yn = load(ST, (at + 1u) % 2u, s0, c);
        var an = load(ACC, (at + 1u) % 3u, s0, c);
        var ac = load(ACC, at % 3u, s0, c);
        var ap = load(ACC, (at + 2u) % 3u, s0, c);
        for (var k = 0u; k < a.count; k++) {
            let jj = a.j - k;
            let base = partial_base(a, k);
            // u = K y_j + b and K v.
            stage(0u, r, c, y);
            stage(1u, r, c, (H * H) * an);
            workgroupBarrier();
            let u = add_bias(product(0u, 1u, jj, r, c), jj, c);
            let rg = -1.0 * dact_times(u, product(1u, 1u, jj, r, c));
            workgroupBarrier();
            // P Q^T, and F(y_j) = K^T P.
            stage(0u, r, c, -1.0 * act_m(u));
            workgroupBarrier();
            partials(0u, 1u, base, tt == 0u, li);
            let f = product(0u, 0u, jj, r, c);
            workgroupBarrier();
            // R S^T, db = sum B, and -K^T g = K^T R.
            stage(0u, r, c, rg);
            stage(1u, r, c, y);
            let prev = 2.0 * y - yn + (H * H) * f;
            workgroupBarrier();
            partials(0u, 1u, base, false, li);
            bias_sums(0u, base, tt == 0u, li);
            ac += select(2.0, 1.0, jj == 0u) * an + product(0u, 0u, jj, r, c);
            if jj > 0u {
                // To step jj - 1: a_{jj-2} starts from 0, as leapfrog.wgsl zeroes its slot.
                ap -= an;
                yn = y;
                y = prev;
                an = ac;
                ac = ap;
                ap = mat4x4<f32>();
                at = jj - 1u;
            }
            workgroupBarrier();
        }
        store(ST, at % 2u, s0, c, y);
        store(ST, (at + 1u) % 2u, s0, c, yn);
        store(ACC, (at + 1u) % 3u, s0, c, an);
        store(ACC, at % 3u, s0, c, ac);
        store(ACC, (at + 2u) % 3u, s0, c, ap);
    }
}
