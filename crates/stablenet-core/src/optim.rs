//! Optimisers acting on [`Params`]: SGD with momentum and Adam, in PyTorch's conventions,
//! minimising the objective J of MODEL.md section 5 (weight decay lives in the regulariser,
//! not here). State can be exported to and restored from checkpoint tensors.
use crate::error::{Error, Result};
use crate::params::Params;
use crate::real::Real;
use std::fmt;

/// Which optimiser, with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// v = momentum v + g; p -= lr v (momentum 0 is plain SGD).
    Sgd { lr: f64, momentum: f64 },
    /// Adam with bias correction: p -= lr m_hat / (sqrt(v_hat) + eps).
    Adam { lr: f64, beta1: f64, beta2: f64, eps: f64 },
}

impl OptimizerKind {
    /// The names the CLI accepts.
    pub const NAMES: [&'static str; 2] = ["sgd", "adam"];

    /// SGD with momentum, validated.
    pub fn sgd(lr: f64, momentum: f64) -> Result<Self> {
        let k = OptimizerKind::Sgd { lr, momentum };
        k.validate()?;
        Ok(k)
    }

    /// Adam with PyTorch's defaults beta1 0.9, beta2 0.999, eps 1e-8, validated.
    pub fn adam(lr: f64) -> Result<Self> {
        Self::adam_with(lr, 0.9, 0.999, 1e-8)
    }

    pub fn adam_with(lr: f64, beta1: f64, beta2: f64, eps: f64) -> Result<Self> {
        let k = OptimizerKind::Adam { lr, beta1, beta2, eps };
        k.validate()?;
        Ok(k)
    }

    /// From a CLI name: "sgd" (plain, momentum 0) or "adam" (default betas and eps).
    pub fn from_name(name: &str, lr: f64) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sgd" => Self::sgd(lr, 0.0),
            "adam" => Self::adam(lr),
            _ => Err(Error::Config(format!("unknown optimizer {name:?}; expected sgd or adam"))),
        }
    }

    /// Replaces the SGD momentum (an error for Adam).
    pub fn with_momentum(self, momentum: f64) -> Result<Self> {
        match self {
            OptimizerKind::Sgd { lr, .. } => Self::sgd(lr, momentum),
            OptimizerKind::Adam { .. } => Err(Error::Config("momentum applies to sgd only; adam uses beta1".into())),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adam { .. } => "adam",
        }
    }

    /// The same optimiser with another learning rate (schedules), validated.
    pub fn with_lr(self, lr: f64) -> Result<Self> {
        let k = match self {
            OptimizerKind::Sgd { momentum, .. } => OptimizerKind::Sgd { lr, momentum },
            OptimizerKind::Adam { beta1, beta2, eps, .. } => OptimizerKind::Adam { lr, beta1, beta2, eps },
        };
        k.validate()?;
        Ok(k)
    }

    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerKind::Sgd { lr, .. } | OptimizerKind::Adam { lr, .. } => lr,
        }
    }

    /// Rejects hyper-parameters outside lr > 0, 0 <= momentum, beta < 1, eps > 0.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("{} optimizer: {m}", self.name())));
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("learning rate must be finite and > 0, got {lr}"));
        }
        let unit = |x: f64| (0.0..1.0).contains(&x);
        match *self {
            OptimizerKind::Sgd { momentum, .. } if !unit(momentum) => {
                bad(format!("momentum must lie in [0, 1), got {momentum}"))
            }
            OptimizerKind::Adam { beta1, .. } if !unit(beta1) => bad(format!("beta1 must lie in [0, 1), got {beta1}")),
            OptimizerKind::Adam { beta2, .. } if !unit(beta2) => bad(format!("beta2 must lie in [0, 1), got {beta2}")),
            OptimizerKind::Adam { eps, .. } if !(eps.is_finite() && eps > 0.0) => {
                bad(format!("eps must be finite and > 0, got {eps}"))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OptimizerKind::Sgd { lr, momentum } => write!(f, "sgd(lr {lr}, momentum {momentum})"),
            OptimizerKind::Adam { lr, beta1, beta2, eps } => {
                write!(f, "adam(lr {lr}, betas ({beta1}, {beta2}), eps {eps})")
            }
        }
    }
}

/// An optimiser with its state: the velocity for SGD, the moments m, v for Adam, and the
/// number of steps taken `t` (both).
#[derive(Clone, Debug)]
pub struct Optimizer<T> {
    kind: OptimizerKind,
    /// SGD: [velocity]; Adam: [m, v].
    bufs: Vec<Params<T>>,
    t: u64,
}

impl<T: Real> Optimizer<T> {
    /// A fresh optimiser (zero state) for parameters shaped like `params`.
    pub fn new(kind: OptimizerKind, params: &Params<T>) -> Result<Self> {
        kind.validate()?;
        let nbufs = match kind {
            OptimizerKind::Sgd { .. } => 1,
            OptimizerKind::Adam { .. } => 2,
        };
        Ok(Optimizer { kind, bufs: vec![params.zeros_like(); nbufs], t: 0 })
    }

    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Values of the state buffers (one parameter-shaped buffer for SGD, two for Adam).
    pub fn state_values(&self) -> usize {
        self.bufs.iter().map(Params::num_values).sum()
    }

    /// Number of steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.t
    }

    pub fn lr(&self) -> f64 {
        self.kind.lr()
    }

    /// Changes the learning rate (schedules); an error unless lr is finite and > 0 (a cosine
    /// schedule that ends at 0 is one).
    pub fn set_lr(&mut self, new: f64) -> Result<()> {
        if !(new.is_finite() && new > 0.0) {
            return Err(Error::Config(format!("learning rate must be finite and > 0, got {new}")));
        }
        match &mut self.kind {
            OptimizerKind::Sgd { lr, .. } | OptimizerKind::Adam { lr, .. } => *lr = new,
        }
        Ok(())
    }

    /// One update of `params` from the gradient `grad` (same shapes as at `new`).
    pub fn step(&mut self, params: &mut Params<T>, grad: &Params<T>) -> Result<()> {
        let dims = |p: &Params<T>| (p.d, p.w, p.n, p.c);
        if dims(params) != dims(&self.bufs[0]) || dims(grad) != dims(&self.bufs[0]) {
            return Err(Error::Shape(
                "optimizer: parameter/gradient shapes changed since the optimizer was built (build a new one \
                 after prolongation)"
                    .into(),
            ));
        }
        self.t += 1;
        let mut bufs = self.bufs.iter_mut();
        let (b0, b1) = (bufs.next().expect("one buffer at least"), bufs.next());
        let mut b1 = b1.map(|b| b.groups_mut());
        for (i, (((_, p), (_, g)), (_, v))) in
            params.groups_mut().into_iter().zip(grad.groups()).zip(b0.groups_mut()).enumerate()
        {
            let m2 = b1.as_mut().map(|b| &mut b[i].1[..]);
            update(self.kind, self.t, p, g, v, m2);
        }
        Ok(())
    }

    fn buf_prefixes(&self) -> &'static [&'static str] {
        match self.kind {
            OptimizerKind::Sgd { .. } => &["optim.velocity"],
            OptimizerKind::Adam { .. } => &["optim.adam_m", "optim.adam_v"],
        }
    }

    /// Checkpoint tensors: `optim.velocity.<group>` (SGD) or `optim.adam_m.<group>` and
    /// `optim.adam_v.<group>` (Adam), with the PyTorch shapes of the groups, and the step
    /// count `optim.t` of shape [1] (exact in f32 up to 2^24 steps).
    pub fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<T>)> {
        let mut out = Vec::new();
        for (prefix, buf) in self.buf_prefixes().iter().zip(&self.bufs) {
            for (name, v) in buf.groups() {
                out.push((format!("{prefix}.{name}"), buf.group_shape(name), v.to_vec()));
            }
        }
        out.push(("optim.t".into(), vec![1], vec![T::c(self.t as f64)]));
        out
    }

    /// Restores the state written by [`Optimizer::state_tensors`] of an optimiser of the
    /// same kind and shapes. Tensors not named `optim.*` are ignored (a checkpoint may hold
    /// the model too); a missing, mis-shaped or unexpected `optim.*` entry is an error, and
    /// nothing is changed then.
    pub fn load_state(&mut self, tensors: &[(String, Vec<usize>, Vec<T>)]) -> Result<()> {
        let bad = |m: String| Err(Error::Shape(format!("optimizer state ({}): {m}", self.kind.name())));
        let find = |name: &str| tensors.iter().find(|(n, _, _)| n == name);
        let expected = self.state_tensors();
        for (name, _, _) in tensors.iter().filter(|(n, _, _)| n.starts_with("optim.")) {
            if !expected.iter().any(|(n, _, _)| n == name) {
                return bad(format!("unexpected tensor {name}; was the checkpoint written by another optimizer?"));
            }
        }
        for (name, shape, _) in &expected {
            let Some((_, s, v)) = find(name) else {
                return bad(format!("missing tensor {name}"));
            };
            let len: usize = shape.iter().product();
            if s != shape || v.len() != len {
                return bad(format!("{name} has shape {s:?} with {} values, expected {shape:?} with {len}", v.len()));
            }
            // A NaN moment would turn every parameter it touches into NaN at the next step.
            if v.iter().any(|x| !x.is_finite()) {
                return bad(format!("{name} holds a NaN or infinity"));
            }
            // Adam's second moment is a mean of squares; a negative one makes sqrt(v) NaN,
            // which the run would report as a divergence.
            if name.starts_with("optim.adam_v.")
                && let Some(i) = v.iter().position(|x| x.f64() < 0.0)
            {
                return bad(format!(
                    "{name} holds a negative second moment ({} at {i}); it is a mean of squares",
                    v[i].f64()
                ));
            }
        }
        let t = find("optim.t").expect("checked above").2[0].f64();
        if !(t.is_finite() && t >= 0.0 && t.fract() == 0.0) {
            return bad(format!("optim.t must be a whole number >= 0, got {t}"));
        }
        let prefixes = self.buf_prefixes();
        for (prefix, buf) in prefixes.iter().zip(self.bufs.iter_mut()) {
            for (gname, dst) in buf.groups_mut() {
                let src = &find(&format!("{prefix}.{gname}")).expect("checked above").2;
                dst.copy_from_slice(src);
            }
        }
        self.t = t as u64;
        Ok(())
    }
}

/// The update rule of step `t` (1-based) on matching slices: SGD with momentum (`b0` the
/// velocity) or Adam (`b0`, `b1` the moments m, v). Shared by every optimiser in the crate.
pub(crate) fn update<T: Real>(kind: OptimizerKind, t: u64, p: &mut [T], g: &[T], b0: &mut [T], b1: Option<&mut [T]>) {
    match kind {
        OptimizerKind::Sgd { lr, momentum } => {
            let (lr, mom) = (T::c(lr), T::c(momentum));
            for ((p, &g), v) in p.iter_mut().zip(g).zip(b0.iter_mut()) {
                *v = mom * *v + g;
                *p -= lr * *v;
            }
        }
        OptimizerKind::Adam { lr, beta1, beta2, eps } => {
            // PyTorch: denom = sqrt(v) / sqrt(1 - b2^t) + eps; p -= lr / (1 - b1^t) * m / denom.
            let t = t as f64;
            let step = T::c(lr / (1.0 - beta1.powf(t)));
            let sqrt_bc2 = T::c((1.0 - beta2.powf(t)).sqrt());
            let (b1c, b2c, eps) = (T::c(beta1), T::c(beta2), T::c(eps));
            let one = T::one();
            let v = b1.expect("adam keeps two moment buffers");
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(b0.iter_mut()).zip(v.iter_mut()) {
                *m = b1c * *m + (one - b1c) * g;
                *v = b2c * *v + (one - b2c) * g * g;
                *p -= step * *m / (v.sqrt() / sqrt_bc2 + eps);
            }
        }
    }
}

#[cfg(test)]
mod tests;
