//! Which field slot holds what, and every dispatch of a stage's forward and adjoint passes
//! with its uniform entry (`struct ConvJob`). The order of the list is the order of
//! `Stage::forward` / `Stage::adjoint` (stablenet_core::image::stage).
use super::{ConvJob, StageSpec};
use stablenet_core::Integrator;

/// The entry points of conv.wgsl / conv_steps.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    InitSlot,
    EulerStep,
    EulerAdjointS,
    EulerAdjointBar,
    VerletZ,
    VerletY,
    VerletAdjointY,
    VerletAdjointZbar,
    VerletAdjointZ,
    VerletAdjointYbar,
    LeapAct,
    LeapStep,
    LeapAdjointG,
    LeapAdjointA,
    ReducePartial,
    ReduceFinish,
}

/// How a kernel's invocations are laid out.
pub(crate) enum Grid {
    /// One per (example, channel, pixel), on a 2-D grid of workgroups when needed.
    Pixels,
    /// One per gradient entry (x, y: a 2-D grid) and reduction chunk (z).
    Partial,
    /// One per gradient entry (x, y).
    Finish,
}

impl Kernel {
    pub fn entry(self) -> &'static str {
        match self {
            Kernel::InitSlot => "init_slot",
            Kernel::EulerStep => "euler_step",
            Kernel::EulerAdjointS => "euler_adjoint_s",
            Kernel::EulerAdjointBar => "euler_adjoint_bar",
            Kernel::VerletZ => "verlet_z",
            Kernel::VerletY => "verlet_y",
            Kernel::VerletAdjointY => "verlet_adjoint_y",
            Kernel::VerletAdjointZbar => "verlet_adjoint_zbar",
            Kernel::VerletAdjointZ => "verlet_adjoint_z",
            Kernel::VerletAdjointYbar => "verlet_adjoint_ybar",
            Kernel::LeapAct => "leap_act",
            Kernel::LeapStep => "leap_step",
            Kernel::LeapAdjointG => "leap_adjoint_g",
            Kernel::LeapAdjointA => "leap_adjoint_a",
            Kernel::ReducePartial => "reduce_partial",
            Kernel::ReduceFinish => "reduce_finish",
        }
    }

    pub fn grid(self) -> Grid {
        match self {
            Kernel::ReducePartial => Grid::Partial,
            Kernel::ReduceFinish => Grid::Finish,
            _ => Grid::Pixels,
        }
    }
}

pub(crate) struct Dispatch {
    pub kernel: Kernel,
    pub job: ConvJob,
}

/// Field slots and the dispatch list of one stage.
pub(crate) struct Plan {
    spec: StageSpec,
    /// (example, row) pairs per reduction chunk.
    rpc: u32,
    /// Field slots in all.
    pub slots: u32,
    /// The slot that receives y_0.
    pub input: u32,
    /// Where y_N and the second state (hamiltonian z_N, leapfrog y_{N-1}) are after it.
    pub final_slots: (u32, Option<u32>),
    /// The slot that receives ybar = dLoss/dy_N.
    pub ybar_in: u32,
    /// Where dLoss/dy_0 and y_0 are after the adjoint pass.
    pub ybar_out: u32,
    pub y0_out: u32,
    /// Dispatches of the forward pass (the adjoint's follow in [`Plan::jobs`]).
    pub forward_len: usize,
}

// Hamiltonian slots: y, z (two: z_j and z_{j+1} coexist in the adjoint), ybar, zbar, s, t.
const VY: u32 = 0;
const VZ: [u32; 2] = [1, 2];
const VYB: u32 = 3;
const VZB: u32 = 4;
const VS: u32 = 5;
const VT: u32 = 6;
// Leapfrog slots: y_j in j % 2, a_j in 2 + j % 2, sigma(u) (also the forward's t), g.
const LA: u32 = 2;
const LSIG: u32 = 4;
const LG: u32 = 5;

fn job(j: usize, n: u32, s: &[u32]) -> ConvJob {
    let mut out = ConvJob { j: j as u32, n, ..ConvJob::default() };
    out.s[..s.len()].copy_from_slice(s);
    out
}

impl Plan {
    pub fn new(spec: StageSpec, rpc: u32) -> Self {
        let n = spec.steps as u32;
        let (p, q) = (n % 2, (n + 1) % 2); // parities of N and N - 1
        let mut plan = Plan {
            spec,
            rpc,
            slots: 0,
            input: 0,
            final_slots: (0, None),
            ybar_in: 0,
            ybar_out: 0,
            y0_out: 0,
            forward_len: 0,
        };
        match spec.integrator {
            // y_j in slot j (resnet/antisym keep every state), then ybar, s.
            Integrator::Resnet | Integrator::Antisym => {
                plan.slots = n + 3;
                plan.final_slots = (n, None);
                (plan.ybar_in, plan.ybar_out) = (n + 1, n + 1);
            }
            Integrator::Hamiltonian => {
                plan.slots = 7;
                plan.input = VY;
                plan.final_slots = (VY, Some(VZ[0]));
                (plan.ybar_in, plan.ybar_out) = (VYB, VYB);
            }
            Integrator::Leapfrog => {
                plan.slots = 6;
                plan.final_slots = (p, Some(q));
                // a_N = ybar; a_0 ends in slot LA.
                (plan.ybar_in, plan.ybar_out) = (LA + p, LA);
            }
        }
        plan.forward_len = plan.forward(1).len();
        plan
    }

    /// Reduction chunks of a batch of n.
    pub fn chunks(&self, n: u32) -> u32 {
        (n * self.spec.shape.h as u32).div_ceil(self.rpc)
    }

    /// Uniform entries (dispatches) of a forward and an adjoint pass.
    pub fn entries(&self) -> usize {
        self.jobs(1).len()
    }

    /// The kernels the plan uses (one pipeline each).
    pub fn kernels(&self) -> Vec<Kernel> {
        let mut out: Vec<Kernel> = Vec::new();
        for d in self.jobs(1) {
            if !out.contains(&d.kernel) {
                out.push(d.kernel);
            }
        }
        out
    }

    /// Every dispatch of the forward pass, then of the adjoint pass, for a batch of n.
    pub fn jobs(&self, n: u32) -> Vec<Dispatch> {
        let mut out = self.forward(n);
        out.extend(self.adjoint(n));
        out
    }

    fn forward(&self, n: u32) -> Vec<Dispatch> {
        let mut out = Vec::new();
        let mut push = |kernel, job| out.push(Dispatch { kernel, job });
        match self.spec.integrator {
            Integrator::Hamiltonian => push(Kernel::InitSlot, job(0, n, &[0, VZ[0]])), // z_0 = 0
            Integrator::Leapfrog => {
                let mut init = job(0, n, &[0, 1]); // y_{-1} = y_0
                init.flags = 1;
                push(Kernel::InitSlot, init);
            }
            _ => {}
        }
        for j in 0..self.spec.steps {
            let (cur, other) = ((j % 2) as u32, ((j + 1) % 2) as u32);
            match self.spec.integrator {
                Integrator::Resnet | Integrator::Antisym => {
                    push(Kernel::EulerStep, job(j, n, &[j as u32, j as u32 + 1]));
                }
                Integrator::Hamiltonian => {
                    push(Kernel::VerletZ, job(j, n, &[VY, VZ[0]]));
                    push(Kernel::VerletY, job(j, n, &[VZ[0], VY]));
                }
                Integrator::Leapfrog => {
                    push(Kernel::LeapAct, job(j, n, &[cur, LSIG]));
                    push(Kernel::LeapStep, job(j, n, &[cur, LSIG, other]));
                }
            }
        }
        out
    }

    fn adjoint(&self, n: u32) -> Vec<Dispatch> {
        let (steps, h2) = (self.spec.steps, (self.spec.h * self.spec.h) as f32);
        let mut out = Vec::new();
        let mut push = |kernel, job| out.push(Dispatch { kernel, job });
        match self.spec.integrator {
            Integrator::Hamiltonian => push(Kernel::InitSlot, job(0, n, &[0, VZB])), // zbar = 0
            // a_{N-1} accumulates from 0.
            Integrator::Leapfrog => push(Kernel::InitSlot, job(0, n, &[0, LA + (steps as u32 + 1) % 2])),
            _ => {}
        }
        for j in (0..steps).rev() {
            let (cur, next) = ((j % 2) as u32, ((j + 1) % 2) as u32);
            match self.spec.integrator {
                Integrator::Resnet | Integrator::Antisym => {
                    let (yj, yb, s) = (j as u32, steps as u32 + 1, steps as u32 + 2);
                    push(Kernel::EulerAdjointS, job(j, n, &[yj, yb, s]));
                    // dK = wgrad(s, y_j) (antisym: (wgrad(s, y_j) - wgrad(y_j, s)) / 2), db = sum s.
                    let mut r = job(j, n, &[s, yj, yj, s, s]);
                    (r.alpha, r.g1) = (1.0, 1.0);
                    if self.spec.integrator == Integrator::Antisym {
                        (r.flags, r.alpha, r.beta) = (1, 0.5, -0.5);
                    }
                    push(Kernel::ReducePartial, r);
                    push(Kernel::ReduceFinish, r);
                    push(Kernel::EulerAdjointBar, job(j, n, &[yj, yb, s]));
                }
                Integrator::Hamiltonian => {
                    // z_{j+1} in VZ[(N-1-j) % 2], z_j goes to the other one.
                    let (zc, zn) = (VZ[(steps - 1 - j) % 2], VZ[(steps - j) % 2]);
                    let s = [zc, VY, VYB, VS, VZB, zn, VT];
                    push(Kernel::VerletAdjointY, job(j, n, &s));
                    push(Kernel::VerletAdjointZbar, job(j, n, &s));
                    push(Kernel::VerletAdjointZ, job(j, n, &s));
                    push(Kernel::VerletAdjointYbar, job(j, n, &s));
                    // dK = wgrad(s, z_{j+1}) + wgrad(y_j, t), db = sum s + sum t.
                    let mut r = job(j, n, &[VS, zc, VY, VT, VS, VT]);
                    (r.flags, r.alpha, r.beta, r.g1, r.g2) = (3, 1.0, 1.0, 1.0, 1.0);
                    push(Kernel::ReducePartial, r);
                    push(Kernel::ReduceFinish, r);
                }
                Integrator::Leapfrog => {
                    let (yj, an) = (cur, LA + next);
                    push(Kernel::LeapAdjointG, job(j, n, &[yj, an, LSIG, LG]));
                    // Before leap_adjoint_a negates a_{j+1}: dK = -h^2 wgrad(sigma(u), a_{j+1})
                    // - wgrad(g, y_j), db = -sum g.
                    let mut r = job(j, n, &[LSIG, an, LG, yj, LG]);
                    (r.flags, r.alpha, r.beta, r.g1) = (1, -h2, -1.0, -1.0);
                    push(Kernel::ReducePartial, r);
                    push(Kernel::ReduceFinish, r);
                    let mut a = job(j, n, &[yj, an, LSIG, LG, LA + cur, next]);
                    a.flags = (j == 0) as u32;
                    push(Kernel::LeapAdjointA, a);
                }
            }
        }
        out
    }
}
