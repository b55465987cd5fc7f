// optim.wgsl — regulariser gradients (MODEL.md section 5) and the optimiser updates, one
// parameter per invocation over the flat parameter vector [K_in | b_in | K | b | W | mu].
// CPU twins: stablenet_core::regularize::Regularizer::add_gradient, stablenet_core::optim.
//
// Binding table (group 0):
//   0  params  rw
//   1  grads   rw   (the regulariser adds into it)
//   2  m       rw   SGD velocity | Adam first moment
//   3  v       rw   Adam second moment

override W: u32;
override D: u32;
override C: u32;
override N: u32;
override H: f32;
override ALPHA_T: f32 = 0.0;
override ALPHA_W: f32 = 0.0;
override MOMENTUM: f32 = 0.0;
override BETA1: f32 = 0.9;
override BETA2: f32 = 0.999;
override EPS: f32 = 1e-8;

override OFF_BIN: u32 = W * D;
override OFF_K: u32 = OFF_BIN + W;
override OFF_B: u32 = OFF_K + N * W * W;
override OFF_WC: u32 = OFF_B + N * W;
override OFF_MU: u32 = OFF_WC + C * W;
override COUNT: u32 = OFF_MU + C;

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;

// Weight decay on K_in, K_j, W; smoothness in time on K_j and b_j:
// dJ/dx_j = (alpha_t / h) ((x_j - x_{j-1}) [j > 0] - (x_{j+1} - x_j) [j < N - 1]).
@compute @workgroup_size(WG)
fn regularize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if e >= COUNT {
        return;
    }
    var g = 0.0;
    let decayed = e < OFF_BIN || (e >= OFF_K && e < OFF_B) || (e >= OFF_WC && e < OFF_MU);
    if decayed {
        g += ALPHA_W * params[e];
    }
    var stride = 0u;
    var j = 0u;
    if e >= OFF_K && e < OFF_B {
        stride = W * W;
        j = (e - OFF_K) / stride;
    } else if e >= OFF_B && e < OFF_WC {
        stride = W;
        j = (e - OFF_B) / stride;
    }
    if stride > 0u && ALPHA_T > 0.0 {
        var d = 0.0;
        if j > 0u {
            d += params[e] - params[e - stride];
        }
        if j + 1u < N {
            d -= params[e + stride] - params[e];
        }
        g += ALPHA_T / H * d;
    }
    grads[e] += g;
}

// v = momentum v + g; p -= lr v (PyTorch's convention).
@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if e >= COUNT {
        return;
    }
    let vel = MOMENTUM * m[e] + grads[e];
    m[e] = vel;
    params[e] -= batch.lr * vel;
}

// Adam as PyTorch: p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = example(gid, nwg);
    if e >= COUNT {
        return;
    }
    let g = grads[e];
    let m1 = BETA1 * m[e] + (1.0 - BETA1) * g;
    let v1 = BETA2 * v[e] + (1.0 - BETA2) * g * g;
    m[e] = m1;
    v[e] = v1;
    params[e] -= batch.c1 * m1 / (sqrt(v1) / batch.c2 + EPS);
}
