//! The WGSL sources (`shaders/` at the repository root) and how they combine into modules.
//! WGSL has no includes: every module is `common.wgsl` followed by its own files.
use stablenet_core::Integrator;
use stablenet_core::optim::OptimizerKind;

pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");
pub const NETWORK: &str = include_str!("../../../shaders/network.wgsl");
pub const RESNET: &str = include_str!("../../../shaders/resnet.wgsl");
pub const VERLET: &str = include_str!("../../../shaders/verlet.wgsl");
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
    let consts = format!(
        "const W: u32 = {width}u;\nconst TF_LEN: u32 = {}u;\nconst KC_LEN: u32 = {}u;",
        tf_len.max(1),
        kc_len.max(1)
    );
    [consts.as_str(), COMMON, NETWORK, steps].join("\n")
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
        .map(|i| (format!("network+{}", i.name()), network(*i, 8, 5 * 64 * 8, 32 * 72)))
        .collect();
    out.push(("reduce".into(), reduce()));
    out.push(("optim".into(), optim()));
    out.push(("image".into(), image()));
    out.push(("image_net".into(), image_net()));
    out
}
