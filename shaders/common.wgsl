// common.wgsl — prepended to every stablenet module: the per-dispatch uniforms and sigma.
//
// Binding table (group 1, shared by every module):
//   0  job    uniform, dynamic offset: what this dispatch does (step range, reduction shape)
//   1  batch  uniform: the current mini-batch (size, offset into the shuffled order, Adam t)

struct Meta {
    j0: u32,        // first step of the dispatch; reductions with flags & 128: examples per partial
    j1: u32,        // one past the last step
    rows: u32,      // reductions: A in G[a][b] = sum_s P[s,a] Q[s,b] (+ R[s,a] S[s,b])
    cols: u32,      // reductions: B (1 for bias sums)
    flags: u32,     // reductions: 1 = has R,S; 2 = Q is all ones; 4 = antisymmetrise; 8 = out += step;
                    // 16 = out += cursor * j1; 32 = with the bias row; 64 = step the cursor back;
                    // 128 = partials from step_adjoint (reduce.wgsl)
    out_off: u32,   // element offset of the result in `out`
    p_off: u32,     // element offsets of P, Q, R, S in their buffers
    q_off: u32,
    r_off: u32,
    s_off: u32,
    slot: u32,      // state slot that holds y_N (leapfrog: N % 2)
    aslot: u32,     // adjoint slot that receives ybar = dLoss/dy_N (leapfrog: N % 3)
    b_off: u32,     // reductions with flags & 32: the bias factor B in P's buffer,
    b_out: u32,     // and where its sums go in `out`
    cur: u32,       // which of the two step cursors an adjoint step (and its reduction) reads
    block: u32,     // reductions with flags & 128: steps of the adjoint block (0 or 1: one);
                    // also pads Meta to 64 bytes (uniform structs in multiples of 16)
}

struct Batch {
    n: u32,         // examples in this batch (<= NMAX)
    offset: u32,    // first position of the batch in the shuffled order
    step: u32,      // index of this step within the epoch (loss log slot)
    t: u32,         // optimiser step count, from 1
    lr: f32,
    c1: f32,        // Adam: lr / (1 - beta1^t) and sqrt(1 - beta2^t), computed in f64 on the host
    c2: f32,
    pad: f32,
}

@group(1) @binding(0) var<uniform> job: Meta;
@group(1) @binding(1) var<uniform> batch: Batch;

// 0 = tanh, 1 = relu (MODEL.md section 1).
override ACT: u32 = 0u;
// Workgroup size; the host passes its own value so dispatch sizes and kernels agree.
override WG: u32 = 64u;

// The example of a per-example invocation: batches beyond one dispatch dimension
// (65535 workgroups) run as a 2-D grid.
fn example(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// tanh saturates to +-1 in f32 beyond |x| = 9; clamping avoids exp overflow on drivers that
// implement tanh through exp.
fn act(x: f32) -> f32 {
    if ACT == 0u {
        return tanh(clamp(x, -15.0, 15.0));
    }
    return max(x, 0.0);
}

fn dact(x: f32) -> f32 {
    if ACT == 0u {
        let t = tanh(clamp(x, -15.0, 15.0));
        return 1.0 - t * t;
    }
    return select(0.0, 1.0, x > 0.0);
}

// act and dact on four values at once (tiles.wgsl).
fn act4(x: vec4<f32>) -> vec4<f32> {
    if ACT == 0u {
        return tanh(clamp(x, vec4<f32>(-15.0), vec4<f32>(15.0)));
    }
    return max(x, vec4<f32>(0.0));
}

fn dact4(x: vec4<f32>) -> vec4<f32> {
    if ACT == 0u {
        let t = tanh(clamp(x, vec4<f32>(-15.0), vec4<f32>(15.0)));
        return 1.0 - t * t;
    }
    return select(vec4<f32>(0.0), vec4<f32>(1.0), x > vec4<f32>(0.0));
}
