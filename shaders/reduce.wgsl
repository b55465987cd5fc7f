// reduce.wgsl — deterministic batch reductions of per-example gradient factors (MODEL.md
// section 4: dK_j, db_j are sums over the batch). No atomics: each workgroup row sums a fixed
// chunk of CHUNK examples in order, then reduce_finish sums the chunks in order, so the same
// inputs give the same bits on the same device.
//   G[a][b] = sum_s P[s][a] Q[s][b]  (+ R[s][a] S[s][b] when job.flags & 1; Q = 1 when & 2)
//   flags & 4: out = (G - G^T) / 2 (antisym, MODEL.md section 2); & 8: out index += batch.step;
//   & 16: out index += cursor * job.j1 (the step's slot in the gradient)
// CPU twin: stablenet_core::linalg::add_outer summed over the batch.
//
// Binding table (group 0):
//   0  p        read  factor P at job.p_off, row stride job.rows
//   1  q        read  factor Q at job.q_off, row stride job.cols
//   2  r        read  factor R at job.r_off, row stride job.rows
//   3  s        read  factor S at job.s_off, row stride job.cols
//   4  partial  rw    [chunks][rows * cols]
//   5  out      rw    the result at job.out_off (gradients, or the loss log)
//   6  cursor   read  the step the reduction belongs to (network.wgsl)

const CHUNK: u32 = 256u;

@group(0) @binding(0) var<storage, read> p: array<f32>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read> sf: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> cursor: array<u32>;

@compute @workgroup_size(WG)
fn reduce_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let rc = job.rows * job.cols;
    let e = gid.x;
    if e >= rc {
        return;
    }
    let a = e / job.cols;
    let b = e % job.cols;
    let c = wid.y;
    let first = c * CHUNK;
    let last = min(batch.n, first + CHUNK);
    var sum = 0.0;
    for (var s = first; s < last; s++) {
        var qv = 1.0;
        if (job.flags & 2u) == 0u {
            qv = q[job.q_off + s * job.cols + b];
        }
        sum += p[job.p_off + s * job.rows + a] * qv;
        if (job.flags & 1u) != 0u {
            sum += r[job.r_off + s * job.rows + a] * sf[job.s_off + s * job.cols + b];
        }
    }
    partial[c * rc + e] = sum;
}

@compute @workgroup_size(WG)
fn reduce_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let rc = job.rows * job.cols;
    let e = gid.x;
    if e >= rc {
        return;
    }
    let chunks = (batch.n + CHUNK - 1u) / CHUNK;
    var total = 0.0;
    for (var c = 0u; c < chunks; c++) {
        total += partial[c * rc + e];
    }
    if (job.flags & 4u) != 0u {
        let t = (e % job.cols) * job.cols + e / job.cols;
        var other = 0.0;
        for (var c = 0u; c < chunks; c++) {
            other += partial[c * rc + t];
        }
        total = 0.5 * (total - other);
    }
    var at = job.out_off + e;
    if (job.flags & 8u) != 0u {
        at += batch.step;
    }
    if (job.flags & 16u) != 0u {
        at += cursor[0] * job.j1;
    }
    out[at] = total;
}
