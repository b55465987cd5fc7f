// reduce.wgsl — deterministic batch reductions of per-example gradient factors (MODEL.md
// section 4: dK_j, db_j are sums over the batch). No atomics: each layer of workgroups (z)
// sums a fixed chunk of CHUNK examples in order, then reduce_finish adds the chunks in a fixed
// tree, so the same inputs give the same bits on the same device.
//   G[a][b] = sum_s P[s][a] Q[s][b]  (+ R[s][a] S[s][b] when job.flags & 1; Q = 1 when & 2)
//   flags & 4: out = (G - G^T) / 2 (antisym, MODEL.md section 2); & 8: out index += batch.step;
//   & 16: out index += cursor * job.j1 (the step's slot in the gradient)
//   flags & 32: the same job also sums the bias row g[a] = sum_s B[s][a], B in p at job.b_off,
//   into out[job.b_out + a] (+ cursor * rows with & 16): dK and db in one pair of dispatches.
//   flags & 64: reduce_finish also sets the other step cursor to this one minus the steps it
//   reduced, so the next adjoint step (which reads the other) needs no dispatch that steps back.
//   The cursor read is cursor[job.cur].
//   flags & 128: the partials come from the adjoint step (network.wgsl tile_partials,
//   verlet_tiled.wgsl partials), one per workgroup of job.j0 examples instead of one per
//   CHUNK, for job.block steps (cursor, cursor - 1, ..; partial[k][group][output] for step
//   cursor - k); reduce_finish (narrow nets' few outputs) or reduce_tiles (the tiled steps'
//   many) alone runs.
// Outputs: G's rows * cols entries, then the rows bias entries; the bias entries have their own
// workgroups in reduce_partial, which sum them exactly as a job (rows, cols = 1, Q = 1) would.
// CPU twin: stablenet_core::linalg::add_outer summed over the batch.
//
// Binding table (group 0):
//   0  p        read  factor P at job.p_off (and B at job.b_off), row stride job.rows
//   1  q        read  factor Q at job.q_off, row stride job.cols
//   2  r        read  factor R at job.r_off, row stride job.rows
//   3  s        read  factor S at job.s_off, row stride job.cols
//   4  partial  rw    [chunks][outputs]
//   5  out      rw    the result at job.out_off (gradients, or the loss log)
//   6  cursor   rw    [2] the step the reduction belongs to (network.wgsl)

const CHUNK: u32 = 256u;

// The job's outputs: G's rows * cols entries, then with flags & 32 the bias row's rows.
fn job_outputs() -> u32 {
    return job.rows * job.cols + select(0u, job.rows, (job.flags & 32u) != 0u);
}
// Floats of each staging tile: SUB = TILE / max(rows, cols) examples' rows of P, Q, R, S at a
// time (4 x 4 KiB, inside the 16 KiB of workgroup memory every adapter has).
const TILE: u32 = 1024u;

@group(0) @binding(0) var<storage, read> p: array<f32>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read> sf: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> cursor: array<u32>;

var<workgroup> tp: array<f32, TILE>;
var<workgroup> tq: array<f32, TILE>;
var<workgroup> tr: array<f32, TILE>;
var<workgroup> ts: array<f32, TILE>;

// Output e of chunk wid.z, summed over the chunk's examples in order. The workgroups of the
// outputs (G's, then the bias row's) fold into a 2-D grid, as examples do (example()): a wide
// enough opening or classifier needs more than 65535. When one
// workgroup holds every output (rows * cols <= WG: the narrow nets), it copies the chunk's
// factor rows into workgroup memory, SUB examples at a time, with contiguous loads that all run
// at once, and sums from there: read one by one from storage, the same sum is a chain of
// dependent global loads, and it bounded every step (H100: 190 us -> 100 us per step, w = 8).
// Wider outputs go to block_sums, a workgroup per 32 x 32 block of G. (Staging whole rows for
// a workgroup per output measured slower on the H100; the direct loop it replaced was a
// dependent pair of loads per product.) The bias row keeps its paths (the staged one up to WG
// entries, else the direct loop, whose entries read contiguous rows of B).
@compute @workgroup_size(WG)
fn reduce_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let rc = job.rows * job.cols;
    let outputs = job_outputs();
    // Workgroups past G's are the bias row's: (rows, cols = 1, Q = 1, P = B). Those past
    // both (the 2-D grid's last row, or a host that dispatched more) have nothing to do:
    // uniform, so before any barrier.
    let g = wid.x + wid.y * nwg.x;
    let kgroups = g_groups(job.rows, job.cols);
    if g >= kgroups + (outputs - rc + WG - 1u) / WG {
        return;
    }
    if g < kgroups && rc > WG {
        block_sums(g, li, wid.z, outputs);
        return;
    }
    let bias = g >= kgroups;
    var cols = job.cols;
    var p_off = job.p_off;
    var two = (job.flags & 1u) != 0u;
    var ones = (job.flags & 2u) != 0u;
    var e = g * WG + li;
    var at = e;
    if bias {
        cols = 1u;
        p_off = job.b_off;
        two = false;
        ones = true;
        e = (g - kgroups) * WG + li;
        at = rc + e;
    }
    let rows = job.rows;
    let n_out = rows * cols;
    let live = e < n_out;
    let a = e / cols;
    let b = e % cols;
    let c = wid.z;
    let first = c * CHUNK;
    let last = min(batch.n, first + CHUNK);
    var sum = 0.0;
    if n_out > WG {
        if live {
            for (var s = first; s < last; s++) {
                var qv = 1.0;
                if !ones {
                    qv = q[job.q_off + s * cols + b];
                }
                sum += p[p_off + s * rows + a] * qv;
                if two {
                    sum += r[job.r_off + s * rows + a] * sf[job.s_off + s * cols + b];
                }
            }
        }
    } else {
        let sub = TILE / max(rows, cols);
        for (var s0 = first; s0 < last; s0 += sub) {
            let m = min(sub, last - s0);
            for (var k = li; k < m * rows; k += WG) {
                tp[k] = p[p_off + s0 * rows + k];
                if two {
                    tr[k] = r[job.r_off + s0 * rows + k];
                }
            }
            // S is staged whenever it is used, also when Q is all ones (no job does both
            // today; workgroup memory is not zeroed, so a skipped load would add stale values).
            if !ones || two {
                for (var k = li; k < m * cols; k += WG) {
                    if !ones {
                        tq[k] = q[job.q_off + s0 * cols + k];
                    }
                    if two {
                        ts[k] = sf[job.s_off + s0 * cols + k];
                    }
                }
            }
            workgroupBarrier();
            if live {
                for (var i = 0u; i < m; i++) {
                    var qv = 1.0;
                    if !ones {
                        qv = tq[i * cols + b];
                    }
                    sum += tp[i * rows + a] * qv;
                    if two {
                        sum += tr[i * rows + a] * ts[i * cols + b];
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if live {
        partial[c * outputs + at] = sum;
    }
}

// Workgroups of G's outputs: one for the few of narrow nets (rows * cols <= WG), else one per
// RT x RT block (block_sums). engine.rs partial_groups is the same count.
fn g_groups(rows: u32, cols: u32) -> u32 {
    if rows * cols <= WG {
        return 1u;
    }
    return ((rows + RT - 1u) / RT) * ((cols + RT - 1u) / RT);
}

// Edge of the block of G that a workgroup of block_sums sums; examples staged at a time.
const RT: u32 = 32u;
const ST: u32 = TILE / RT;

// Chunk c of G's block g (RT x RT outputs, blocks row-major over G), for wide outputs (the
// opening's w d, the classifier's C w, the per-example steps' w w). The
// workgroup stages ST examples' rows of P, Q (R, S) for its block with contiguous loads, and
// invocation li (WG = 64: an 8 x 8 grid) sums a 4 x 4 block of outputs from there, each
// example's 16 products for eight loads. One invocation per output, reading storage directly,
// took two dependent loads per product; the opening's sums (w = 128, d = 64, 32768 examples)
// are probably most of its 3.3 ms phase on the H100 (not profiled). Each output still adds
// the chunk's examples in order, so the partials are the same sums.
fn block_sums(g: u32, li: u32, c: u32, outputs: u32) {
    let rows = job.rows;
    let cols = job.cols;
    let col_blocks = (cols + RT - 1u) / RT;
    let a0 = g / col_blocks * RT;
    let b0 = g % col_blocks * RT;
    let two = (job.flags & 1u) != 0u;
    let ones = (job.flags & 2u) != 0u;
    let first = c * CHUNK;
    let last = min(batch.n, first + CHUNK);
    let ea = 4u * (li / 8u);
    let eb = 4u * (li % 8u);
    // m[q][e]: output (a0 + ea + e, b0 + eb + q).
    var m = mat4x4<f32>();
    for (var s0 = first; s0 < last; s0 += ST) {
        let count = min(ST, last - s0);
        for (var k = li; k < ST * RT; k += WG) {
            let i = k / RT;
            let a = a0 + k % RT;
            let b = b0 + k % RT;
            let s = s0 + i;
            var pv = 0.0;
            var qv = 1.0;
            var rv = 0.0;
            var sv = 0.0;
            if i < count && a < rows {
                pv = p[job.p_off + s * rows + a];
                if two {
                    rv = r[job.r_off + s * rows + a];
                }
            }
            if i < count && b < cols {
                if !ones {
                    qv = q[job.q_off + s * cols + b];
                }
                if two {
                    sv = sf[job.s_off + s * cols + b];
                }
            }
            tp[k] = pv;
            tq[k] = qv;
            tr[k] = rv;
            ts[k] = sv;
        }
        workgroupBarrier();
        for (var i = 0u; i < count; i++) {
            let x = i * RT;
            let pa = vec4<f32>(tp[x + ea], tp[x + ea + 1u], tp[x + ea + 2u], tp[x + ea + 3u]);
            let qb = vec4<f32>(tq[x + eb], tq[x + eb + 1u], tq[x + eb + 2u], tq[x + eb + 3u]);
            m += outer(pa, qb);
            if two {
                let ra = vec4<f32>(tr[x + ea], tr[x + ea + 1u], tr[x + ea + 2u], tr[x + ea + 3u]);
                let sb = vec4<f32>(ts[x + eb], ts[x + eb + 1u], ts[x + eb + 2u], ts[x + eb + 3u]);
                m += outer(ra, sb);
            }
        }
        // Before the next examples overwrite the staged rows.
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        for (var e = 0u; e < 4u; e++) {
            let a = a0 + ea + e;
            let b = b0 + eb + j;
            if a < rows && b < cols {
                partial[c * outputs + a * cols + b] = m[j][e];
            }
        }
    }
}

// u v^T, column q = u v[q].
fn outer(u: vec4<f32>, v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(u * v.x, u * v.y, u * v.z, u * v.w);
}

// Invocations of reduce_finish: one workgroup per output.
const FINISH: u32 = 64u;
var<workgroup> red: array<f32, FINISH>;

// The job's step cursor, as a workgroup-uniform value.
var<workgroup> top: u32;

// Workgroup x = k * outputs + e: output e of the block's step k (k = 0 unless flags & 128
// with job.block > 1). Invocation li sums partials li, li + FINISH, ... in order, then a fixed
// halving tree adds the FINISH sums (loads in parallel; a fixed order, so the same bits every
// run).
@compute @workgroup_size(FINISH)
fn reduce_finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let outputs = job_outputs();
    let block = max(job.block, 1u);
    let x = wid.x + wid.y * nwg.x;
    if x >= outputs * block {
        return;
    }
    if li == 0u {
        top = cursor[job.cur];
    }
    let j = workgroupUniformLoad(&top);
    let k = x / outputs;
    let e = x % outputs;
    // The last block of the adjoint pass ends at step 0.
    if k > j {
        return;
    }
    let per = select(CHUNK, job.j0, (job.flags & 128u) != 0u);
    let chunks = (batch.n + per - 1u) / per;
    let base = k * chunks * outputs;
    red[li] = partial_sum(base, outputs, e, li, FINISH, chunks);
    workgroupBarrier();
    for (var h = FINISH / 2u; h > 0u; h >>= 1u) {
        if li < h {
            red[li] += red[li + h];
        }
        workgroupBarrier();
    }
    if li == 0u {
        put_result(x, e, k, j, red[0]);
    }
}

// Partials c = first, first + step, .. < chunks of output e, in order, from `base`; with
// flags & 4 (antisym) less those of the transposed entry.
fn partial_sum(base: u32, outputs: u32, e: u32, first: u32, step: u32, chunks: u32) -> f32 {
    let anti = (job.flags & 4u) != 0u && e < job.rows * job.cols;
    let t = (e % job.cols) * job.cols + e / job.cols;
    var v = 0.0;
    for (var c = first; c < chunks; c += step) {
        v += partial[base + c * outputs + e];
        if anti {
            v -= partial[base + c * outputs + t];
        }
    }
    return v;
}

// Writes output e of the block's step k (x = k * outputs + e), summed over the partials, to
// its place in `out` (the flags above); x = 0 also sets the other cursor (flags & 64).
fn put_result(x: u32, e: u32, k: u32, j: u32, sum: f32) {
    let rc = job.rows * job.cols;
    let bias = e >= rc;
    var total = sum;
    if (job.flags & 4u) != 0u && !bias {
        total *= 0.5;
    }
    var at = job.out_off + e;
    var stride = job.j1;
    if bias {
        at = job.b_out + e - rc;
        stride = job.rows;
    }
    if (job.flags & 8u) != 0u {
        at += batch.step;
    }
    if (job.flags & 16u) != 0u {
        at += (j - k) * stride;
    }
    out[at] = total;
    // Every workgroup of this dispatch reads cursor[cur] only; the next one reads the other.
    // After the last block (j < block) this wraps to u32 max; nothing reads it then (the host
    // records exactly ceil(N / block) blocks).
    if (job.flags & 64u) != 0u && x == 0u {
        cursor[1u - job.cur] = j - min(max(job.block, 1u), j + 1u);
    }
}

// reduce_tiles: TOUT consecutive outputs per workgroup, TLANES invocations each. The host sets
// TLANES (4, 8, 16 or 32) so that each lane sums at most 64 partials: a lane's sum is a chain
// of loads and adds, and at one tile per workgroup (wide: 1024 partials a step) 4 lanes made
// it 256 long.
override TLANES: u32 = 4u;
override TOUT: u32 = 256u / TLANES;
var<workgroup> tred: array<f32, 256>;

// The second pass for the tiled steps' partials (flags & 128): thousands of outputs, each
// summed over a few hundred partials. Invocation li takes output li % TOUT of the
// workgroup's and sums partials li / TOUT, + TLANES, .. in order; the TLANES sums are added
// in a fixed order. Neighbouring invocations read neighbouring outputs, so a warp's loads
// come in whole cache lines. With one workgroup per output (reduce_finish), each load had a
// sector of its own.
@compute @workgroup_size(256)
fn reduce_tiles(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let outputs = job_outputs();
    let x = (wid.x + wid.y * nwg.x) * TOUT + li % TOUT;
    let lane = li / TOUT;
    if li == 0u {
        top = cursor[job.cur];
    }
    let j = workgroupUniformLoad(&top);
    let k = x / outputs;
    let e = x % outputs;
    // The last block of the adjoint pass ends at step 0.
    let live = x < outputs * max(job.block, 1u) && k <= j;
    let chunks = (batch.n + job.j0 - 1u) / job.j0;
    var v = 0.0;
    if live {
        v = partial_sum(k * chunks * outputs, outputs, e, lane, TLANES, chunks);
    }
    tred[li] = v;
    workgroupBarrier();
    if lane == 0u && live {
        var sum = tred[li];
        for (var l = 1u; l < TLANES; l++) {
            sum += tred[li + l * TOUT];
        }
        put_result(x, e, k, j, sum);
    }
}
