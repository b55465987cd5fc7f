//! The WGSL sources (`shaders/` at the repository root) and how they combine into modules.
//! WGSL has no includes: every module is `common.wgsl` followed by its own files.
use stablenet_core::Integrator;
use stablenet_core::optim::OptimizerKind;

pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");
pub const NETWORK: &str = include_str!("../../../shaders/network.wgsl");
pub const RESNET: &str = include_str!("../../../shaders/resnet.wgsl");
pub const VERLET: &str = include_str!("../../../shaders/verlet.wgsl");
pub const TILES: &str = include_str!("../../../shaders/tiles.wgsl");
pub const VERLET_TILED: &str = include_str!("../../../shaders/verlet_tiled.wgsl");
pub const VERLET_TILED8: &str = include_str!("../../../shaders/verlet_tiled8.wgsl");
pub const LEAPFROG_TILED: &str = include_str!("../../../shaders/leapfrog_tiled.wgsl");
pub const RESNET_TILED: &str = include_str!("../../../shaders/resnet_tiled.wgsl");
pub const LEAPFROG: &str = include_str!("../../../shaders/leapfrog.wgsl");
pub const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
pub const OPTIM: &str = include_str!("../../../shaders/optim.wgsl");
pub const CONV: &str = include_str!("../../../shaders/conv.wgsl");
pub const CONV_STEPS: &str = include_str!("../../../shaders/conv_steps.wgsl");
pub const IMAGE_NET: &str = include_str!("../../../shaders/image_net.wgsl");

/// The current mini-batch and the optimiser's step-dependent constants; mirrors `struct Batch`
/// in common.wgsl (one definition for the dense and the image trainers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BatchInfo {
    pub n: u32,
    pub offset: u32,
    pub step: u32,
    pub t: u32,
    pub lr: f32,
    pub c1: f32,
    pub c2: f32,
    pub pad: f32,
}

impl BatchInfo {
    /// Optimiser step `t` (from 1): lr, and for Adam c1 = lr / (1 - beta1^t) and
    /// c2 = sqrt(1 - beta2^t), computed in f64.
    pub fn optimizer(kind: OptimizerKind, t: u32) -> Self {
        let mut info = BatchInfo { t, lr: kind.lr() as f32, ..BatchInfo::default() };
        if let OptimizerKind::Adam { lr, beta1, beta2, .. } = kind {
            let t = f64::from(t);
            info.c1 = (lr / (1.0 - beta1.powf(t))) as f32;
            info.c2 = (1.0 - beta2.powf(t)).sqrt() as f32;
        }
        info
    }
}

/// The network module of an integrator and width: opening, classifier and the integrator's
/// steps. The width is a constant of the source, not an override: the kernels keep
/// per-example vectors in registers, whose size WGSL wants constant. So are the lengths of
/// the two workgroup arrays of narrow nets (`tf_len` factors, `kc_len` cached steps; 0 when
/// unused), so that wide nets do not ask for workgroup memory they do not use.
pub fn network(integrator: Integrator, width: usize, tf_len: usize, kc_len: usize) -> String {
    let steps = match integrator {
        Integrator::Resnet | Integrator::Antisym => RESNET,
        Integrator::Hamiltonian => VERLET,
        Integrator::Leapfrog => LEAPFROG,
    };
    let consts =
        format!("{}const TF_LEN: u32 = {}u;\nconst KC_LEN: u32 = {}u;", widths(width), tf_len.max(1), kc_len.max(1));
    // A checkout with CRLF line ends must unroll all the same.
    let src = [consts.as_str(), COMMON, NETWORK, steps].join("\n").replace("\r\n", "\n");
    if width <= MAX_UNROLL { unroll(&src, width) } else { src }
}

/// The width W and the padded width WP (a multiple of 4, for tiles.wgsl's vec4 blocks)
/// as WGSL constants.
fn widths(width: usize) -> String {
    format!("const W: u32 = {width}u;\nconst WP: u32 = {}u;\n", padded(width))
}

/// The width padded to a multiple of 4 (tiles.wgsl).
pub fn padded(width: usize) -> usize {
    width.div_ceil(4) * 4
}

/// Floats of the padded K_j, K_j^T and b_j of `steps` steps that the tiled steps read in one
/// binding (tiles.wgsl `ops`, written by network.wgsl build_ops).
pub fn tiled_operators(steps: usize, width: usize) -> u64 {
    let wp = padded(width) as u64;
    steps as u64 * (2 * wp * wp + wp)
}

/// The tiled steps of wider nets, a workgroup stepping a tile of `4 rq` examples together
/// (tiles.wgsl with verlet_tiled.wgsl, leapfrog_tiled.wgsl or resnet_tiled.wgsl); `rq` is a
/// source constant because it sizes the workgroup's tiles, and so is `db`, the edge of each
/// invocation's gradient blocks (4, 2 or 1; [`gradient_block`] is the default). `keep`: the
/// Verlet forward keeps its pre-activations for the adjoint (`TiledTuning::keep`).
pub fn tiled(integrator: Integrator, width: usize, rq: usize, db: usize, keep: bool) -> String {
    let steps = match integrator {
        Integrator::Hamiltonian => [VERLET_TILED, VERLET_TILED8].join("\n"),
        Integrator::Leapfrog => LEAPFROG_TILED.into(),
        Integrator::Resnet | Integrator::Antisym => RESNET_TILED.into(),
    };
    let (split, bp) = sum_pieces(padded(width), rq, db);
    let (psum, bsum) = piece_arrays(padded(width), rq, db);
    let consts = format!(
        "{}const RQ: u32 = {rq}u;\nconst DB: u32 = {db}u;\nconst SPLIT: u32 = {split}u;\nconst BP: u32 = {bp}u;\n\
         const PS_LEN: u32 = {}u;\nconst BS_LEN: u32 = {}u;\nconst KEEP: bool = {keep};",
        widths(width),
        psum.max(1),
        bsum.max(1),
    );
    [consts.as_str(), COMMON, TILES, &steps].join("\n")
}

/// How tiles.wgsl splits its gradient sums over the invocations at padded width `wp`, `rq`
/// example quads per tile and gradient blocks of edge `db`: SPLIT pieces per entry of dK_j
/// where its entries are fewer than the invocations (db = 1; w <= 8), and BP pieces per
/// component quad of db_j (rq >= 16).
pub fn sum_pieces(wp: usize, rq: usize, db: usize) -> (usize, usize) {
    let split = if db == 1 { (wp / 4 * rq / (wp * wp)).max(1) } else { 1 };
    (split, (rq / 8).clamp(1, 8))
}

/// The lengths of tiles.wgsl's arrays of pieces: floats of psum (SPLIT per entry of dK_j)
/// and vec4s of bsum (BP per component quad of db_j); 0 where the sums are not split.
fn piece_arrays(wp: usize, rq: usize, db: usize) -> (usize, usize) {
    let (split, bp) = sum_pieces(wp, rq, db);
    (if split > 1 { split * wp * wp } else { 0 }, if bp > 1 { bp * wp / 4 } else { 0 })
}

/// Bytes of workgroup memory of tiles.wgsl's arrays: the two tiles, the pieces of the split
/// gradient sums, and 16 for the cursor.
pub fn tiled_workgroup_bytes(wp: usize, rq: usize, db: usize) -> usize {
    let (psum, bsum) = piece_arrays(wp, rq, db);
    32 * wp * rq + 4 * psum + 16 * bsum + 16
}

/// The edge of the blocks of dK_j that tiles.wgsl gives each invocation: 4, 2 or 1,
/// the largest with a block for every invocation (at w = 32, 4 x 4 blocks would idle three
/// quarters of them).
pub fn gradient_block(width: usize, rq: usize) -> usize {
    let wp = padded(width);
    let invocations = wp / 4 * rq;
    [4, 2].into_iter().find(|db| (wp / db) * (wp / db) >= invocations).unwrap_or(1)
}

/// Widest net whose loops over the width are unrolled ([`unroll`]).
pub const MAX_UNROLL: usize = 16;

/// Floats of the narrow nets' workgroup arrays in the network module (network.wgsl): the
/// factors P, Q, R, S, B of a workgroup of `wg` examples (`tf`), and K_j, b_j of `block` steps
/// (`kc`), per step `(w^2 + w)`.
pub fn fused_arrays(width: usize, wg: usize, block: usize) -> (usize, usize) {
    (5 * wg * width, block * (width * width + width))
}

/// Unrolls each loop `for (var X = 0u; X < W; X++) { .. }` on the line after a `// unroll`
/// comment into W blocks `{ let X = 0u; .. }`, .., inner marked loops first. With every index
/// a constant, the drivers keep per-example arrays in registers; left as loops, a driver that
/// does not unroll them puts the arrays in local memory, whose traffic bounded a narrow step
/// (H100: the time per step grew with the batch once it spilled out of L1). A marked body may
/// not hold `break`, `continue` or a comment (its braces would count).
pub fn unroll(src: &str, width: usize) -> String {
    let mut out = String::with_capacity(src.len() * 2);
    let mut rest = src;
    while let Some(at) = rest.find("// unroll\n") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "// unroll\n".len()..];
        let head_end = after.find('{').expect("a marked loop opens a block") + 1;
        let head = after[..head_end].trim();
        let var = head
            .strip_prefix("for (var ")
            .and_then(|h| h.split(' ').next())
            .filter(|v| head == format!("for (var {v} = 0u; {v} < W; {v}++) {{"))
            .unwrap_or_else(|| panic!("`// unroll` marks `for (var X = 0u; X < W; X++) {{`, not `{head}`"));
        // The body: up to the brace that closes the loop's block.
        let mut depth = 1;
        let close = after[head_end..]
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| head_end + i)
            .expect("a marked loop's block closes");
        let raw = &after[head_end..close];
        assert!(
            !["//", "break", "continue"].iter().any(|t| raw.replace("// unroll\n", "").contains(t)),
            "a loop marked `// unroll` holds a comment, break or continue: {raw}"
        );
        let body = unroll(raw, width);
        for i in 0..width {
            out.push_str(&format!("{{\n let {var} = {i}u;{body}}}\n"));
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

pub fn reduce() -> String {
    [COMMON, REDUCE].join("\n")
}

pub fn optim() -> String {
    [COMMON, OPTIM].join("\n")
}

/// The image stage module: convolution operators, reductions and every integrator's steps.
pub fn image() -> String {
    [COMMON, CONV, CONV_STEPS].join("\n")
}

/// The image network's junctions: opening, widening + pooling, head (image_net.wgsl).
pub fn image_net() -> String {
    [COMMON, IMAGE_NET].join("\n")
}

/// Every module the engine builds, by name (for `cargo xtask validate`).
pub fn all_modules() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Integrator::ALL
        .iter()
        .filter(|i| **i != Integrator::Antisym) // same module as resnet
        .map(|i| {
            let (tf, kc) = fused_arrays(8, 64, 32);
            (format!("network+{}", i.name()), network(*i, 8, tf, kc))
        })
        .collect();
    for i in [Integrator::Hamiltonian, Integrator::Leapfrog, Integrator::Resnet] {
        for (w, rq) in [(32, 32), (13, 7), (128, 8), (8, 64)] {
            for db in [1, 2, 4] {
                out.push((format!("tiles+{} (w = {w}, {db}x{db} blocks)", i.name()), tiled(i, w, rq, db, false)));
            }
            if i == Integrator::Hamiltonian {
                let src = tiled(i, w, rq, gradient_block(w, rq), true);
                out.push((format!("tiles+{} (w = {w}, pre-activations kept)", i.name()), src));
            }
        }
    }
    out.push(("reduce".into(), reduce()));
    out.push(("optim".into(), optim()));
    out.push(("image".into(), image()));
    out.push(("image_net".into(), image_net()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unroll_replaces_marked_loops_inner_first() {
        let src = "a;\n// unroll\nfor (var i = 0u; i < W; i++) {\n  // unroll\n  for (var k = 0u; k < W; k++) {\n    x[i] += y[k];\n  }\n}\nb;\nfor (var j = 0u; j < W; j++) { z; }\n";
        let out = unroll(src, 2);
        assert!(!out.contains("// unroll") && !out.contains("var i") && !out.contains("var k"));
        assert_eq!(out.matches("x[i] += y[k];").count(), 4);
        assert_eq!(out.matches("let i = 1u;").count(), 1);
        assert_eq!(out.matches("let k = 1u;").count(), 2);
        assert!(out.starts_with("a;\n") && out.ends_with("b;\nfor (var j = 0u; j < W; j++) { z; }\n"));
        // Braces still balance.
        assert_eq!(out.matches('{').count(), out.matches('}').count());
    }

    #[test]
    #[should_panic(expected = "marks")]
    fn unroll_rejects_other_loops() {
        unroll("// unroll\nfor (var i = 1u; i < W; i++) {}\n", 2);
    }
}
