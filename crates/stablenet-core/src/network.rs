//! The whole network of MODEL.md section 1 for a batch: opening layer, N integrator steps,
//! classifier, mean softmax cross-entropy, and its exact gradient (section 4).
//!
//! Examples are processed one at a time, each through all steps and back; per-example
//! parameter gradients are summed in example order, so results are bit-reproducible.
use crate::config::{Integrator, ModelConfig};
use crate::error::{Error, Result};
use crate::integrators::{Scratch, Step, leapfrog, resnet, verlet};
use crate::linalg::{add_outer, matvec_t};
use crate::params::Params;
use crate::real::Real;

/// How the adjoint pass obtains the states it needs (MODEL.md section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradMethod {
    /// Keep every state of the forward pass.
    Stored,
    /// Keep states at every k-th step (k >= 1). resnet/antisym recompute each segment from
    /// its checkpoint (O(N/k + k) memory); hamiltonian/leapfrog rebuild backwards in time and
    /// restart from the stored states, which bounds the f32 drift (O(N/k) memory).
    Checkpoint(usize),
    /// hamiltonian/leapfrog only: rebuild every state backwards in time; memory independent
    /// of depth.
    Reverse,
}

impl GradMethod {
    /// resnet/antisym: checkpoints every ceil(sqrt N) steps; hamiltonian: pure reverse time;
    /// leapfrog: reverse time with restarts every 256 steps, because its rebuild amplifies
    /// round-off with depth (MODEL.md section 3 measures 6e-5 at N = 256 in f32). The restarts
    /// bound the rebuilt states' drift; the f32 gradient error is the same with or without
    /// them, and with stored states (its adjoint amplifies round-off as the forward pass
    /// does; `tests/reverse_time.rs`), which is why the fast path uses pure reverse time.
    pub fn default_for(cfg: &ModelConfig) -> Self {
        match cfg.integrator {
            Integrator::Resnet | Integrator::Antisym => {
                GradMethod::Checkpoint((cfg.steps as f64).sqrt().ceil() as usize)
            }
            Integrator::Hamiltonian => GradMethod::Reverse,
            Integrator::Leapfrog => GradMethod::Checkpoint(256),
        }
    }

    fn check(self, integrator: Integrator) -> Result<()> {
        match self {
            GradMethod::Checkpoint(0) => Err(Error::Config("checkpoint interval must be >= 1".into())),
            GradMethod::Reverse if !integrator.is_reversible() => Err(Error::Config(format!(
                "{integrator} steps cannot be run backwards in time; use stored states or checkpoints"
            ))),
            _ => Ok(()),
        }
    }

    /// The checkpoint interval, where `None` means nothing but the end state is kept.
    fn interval(self) -> Option<usize> {
        match self {
            GradMethod::Stored => Some(1),
            // 0 is refused where a method comes in (`check`); here it must not divide by 0.
            GradMethod::Checkpoint(k) => Some(k.max(1)),
            GradMethod::Reverse => None,
        }
    }
}

/// Loss and gradient of a batch.
#[derive(Clone, Debug)]
pub struct LossGrad<T> {
    /// Mean cross-entropy over the batch.
    pub loss: T,
    /// Number of examples whose arg-max logit is the label.
    pub correct: usize,
    pub grad: Params<T>,
    /// States held per example by the adjoint pass (memory measure, in units of w).
    pub stored_states: usize,
}

/// A network ready to run: configuration, parameters, and the per-step operators.
pub struct Network<'a, T> {
    pub cfg: &'a ModelConfig,
    pub p: &'a Params<T>,
    /// M_j for resnet/antisym (built once per pass); empty otherwise.
    ops: Vec<T>,
    h: T,
}

impl<'a, T: Real> Network<'a, T> {
    pub fn new(cfg: &'a ModelConfig, p: &'a Params<T>) -> Result<Self> {
        cfg.validate()?;
        p.check_shape(cfg)?;
        p.check_finite()?;
        let w = cfg.width;
        let mut ops = Vec::new();
        if matches!(cfg.integrator, Integrator::Resnet | Integrator::Antisym) {
            ops = vec![T::zero(); p.k.len()];
            for (j, m) in ops.chunks_exact_mut(w * w).enumerate() {
                resnet::operator(cfg.integrator, p.k_step(j), w, cfg.gamma, m);
            }
        }
        Ok(Network { cfg, p, ops, h: T::c(cfg.h()) })
    }

    /// Step j's parameters (with M_j in place of K_j for resnet/antisym).
    pub fn step(&self, j: usize) -> Step<'_, T> {
        let ww = self.cfg.width * self.cfg.width;
        let k = if self.ops.is_empty() { self.p.k_step(j) } else { &self.ops[j * ww..(j + 1) * ww] };
        Step::new(k, self.p.b_step(j), self.h, self.cfg.activation)
    }

    /// Opening layer: y = sigma(K_in x + b_in); leaves the pre-activation in `u`.
    fn open(&self, x: &[T], y: &mut [T], u: &mut [T]) {
        crate::linalg::matvec(&self.p.k_in, x, u);
        for ((yi, ui), bi) in y.iter_mut().zip(u.iter_mut()).zip(&self.p.b_in) {
            *ui += *bi;
            *yi = self.cfg.activation.f(*ui);
        }
    }

    /// The opening state y_0 and the final state y_N of one example (the GPU's forward
    /// kernels are checked against these).
    pub fn states(&self, x: &[T], y0: &mut [T], y_n: &mut [T], ws: &mut Workspace<T>) {
        let Workspace { y, z, u, sc, .. } = ws;
        self.open(x, y, u);
        y0.copy_from_slice(y);
        self.run_steps(0, self.cfg.steps, y, z, sc, |_, _, _| {});
        y_n.copy_from_slice(y);
    }

    /// Logits of one example (length C) from its input x (length d).
    pub fn logits(&self, x: &[T], out: &mut [T], ws: &mut Workspace<T>) {
        let Workspace { y, z, u, sc, .. } = ws;
        self.open(x, y, u);
        self.run_steps(0, self.cfg.steps, y, z, sc, |_, _, _| {});
        classify(self.p, y, out);
    }

    /// Runs steps `from..to` forward on the state (y, z) — z is y_{j-1} for leapfrog and the
    /// momentum for hamiltonian — calling `visit(j, y, z)` with the state before each step j.
    fn run_steps(
        &self,
        from: usize,
        to: usize,
        y: &mut [T],
        z: &mut [T],
        sc: &mut Scratch<T>,
        mut visit: impl FnMut(usize, &[T], &[T]),
    ) {
        if from == 0 {
            match self.cfg.integrator {
                Integrator::Hamiltonian => z.iter_mut().for_each(|v| *v = T::zero()),
                Integrator::Leapfrog => z.copy_from_slice(y),
                _ => {}
            }
        }
        for j in from..to {
            visit(j, y, z);
            let st = self.step(j);
            match self.cfg.integrator {
                Integrator::Resnet | Integrator::Antisym => resnet::forward_step(&st, y, sc),
                Integrator::Hamiltonian => verlet::forward_step(&st, y, z, sc),
                Integrator::Leapfrog => leapfrog::forward_step(&st, z, y, sc),
            }
        }
    }

    /// Mean cross-entropy and its exact gradient over a batch. `x` is n x d row-major (any
    /// float type convertible to T), `labels` are 0-based.
    pub fn loss_grad(&self, x: &[f32], labels: &[u32], method: GradMethod) -> Result<LossGrad<T>> {
        let cfg = self.cfg;
        method.check(cfg.integrator)?;
        check_batch(cfg, x, labels)?;
        let (n, d, w, c) = (labels.len(), cfg.d, cfg.width, cfg.classes);
        let mut grad = self.p.zeros_like();
        // resnet/antisym accumulate dL/dM_j and map it to K_j at the end.
        let mut dm = if self.ops.is_empty() { Vec::new() } else { vec![T::zero(); self.ops.len()] };
        let mut ws = Workspace::new(cfg, method);
        let mut xi = vec![T::zero(); d];
        let mut logits = vec![T::zero(); c];
        let mut loss = T::zero();
        let mut correct = 0;
        let inv_n = T::one() / T::c(n as f64);
        for (i, &label) in labels.iter().enumerate() {
            for (a, b) in xi.iter_mut().zip(&x[i * d..(i + 1) * d]) {
                *a = T::c(*b as f64);
            }
            // Forward, keeping the states the method asks for.
            {
                let Workspace { y, z, u_in, sc, store, slot, .. } = &mut ws;
                self.open(&xi, y, u_in);
                self.run_steps(0, cfg.steps, y, z, sc, |j, y, z| {
                    if let Some(s) = slot[j] {
                        store[2 * s * w..(2 * s + 1) * w].copy_from_slice(y);
                        store[(2 * s + 1) * w..(2 * s + 2) * w].copy_from_slice(z);
                    }
                });
            }
            classify(self.p, &ws.y, &mut logits);
            // Softmax cross-entropy; dlogits = (softmax - onehot) / n.
            let (li, hit) = softmax_xent(&mut logits, label as usize);
            loss += li;
            correct += hit as usize;
            logits.iter_mut().for_each(|g| *g *= inv_n);
            add_outer(&mut grad.wc, &logits, &ws.y);
            grad.mu.iter_mut().zip(&logits).for_each(|(a, b)| *a += *b);
            matvec_t(&self.p.wc, &logits, &mut ws.ybar);
            // Backward through the steps.
            let gk = if dm.is_empty() { &mut grad.k } else { &mut dm };
            match cfg.integrator {
                Integrator::Resnet | Integrator::Antisym => self.back_euler(&mut ws, gk, &mut grad.b),
                Integrator::Hamiltonian => self.back_verlet(&mut ws, gk, &mut grad.b),
                Integrator::Leapfrog => self.back_leapfrog(&mut ws, gk, &mut grad.b),
            }
            // Opening layer: s = sigma'(u_in) * ybar.
            let Workspace { ybar, u_in, .. } = &mut ws;
            for (s, ui) in ybar.iter_mut().zip(u_in.iter()) {
                *s *= cfg.activation.df(*ui);
            }
            add_outer(&mut grad.k_in, ybar, &xi);
            grad.b_in.iter_mut().zip(ybar.iter()).for_each(|(a, b)| *a += *b);
        }
        for (j, g) in dm.chunks_exact(w * w).enumerate() {
            resnet::operator_grad(cfg.integrator, g, w, &mut grad.k[j * w * w..(j + 1) * w * w]);
        }
        Ok(LossGrad { loss: loss * inv_n, correct, grad, stored_states: ws.held_states() })
    }

    /// resnet/antisym: walk the checkpointed segments backwards, recomputing each.
    fn back_euler(&self, ws: &mut Workspace<T>, gk: &mut [T], gb: &mut [T]) {
        let (n, w) = (self.cfg.steps, self.cfg.width);
        let k = ws.interval.expect("checked: resnet/antisym always have an interval");
        let Workspace { y, z, ybar, sc, store, slot, seg, .. } = ws;
        let mut end = n;
        while end > 0 {
            let start = (end - 1) / k * k;
            let s = slot[start].expect("segment starts are checkpoints");
            y.copy_from_slice(&store[2 * s * w..(2 * s + 1) * w]);
            self.run_steps(start, end, y, z, sc, |j, y, _| {
                let o = (j - start) * w;
                seg[o..o + w].copy_from_slice(y);
            });
            for j in (start..end).rev() {
                let ww = w * w;
                let yj = &seg[(j - start) * w..(j - start + 1) * w];
                let (dmj, dbj) = (&mut gk[j * ww..(j + 1) * ww], &mut gb[j * w..(j + 1) * w]);
                resnet::adjoint_step(&self.step(j), yj, ybar, dmj, dbj, sc);
            }
            end = start;
        }
    }

    /// hamiltonian: the fused adjoint-and-rebuild of MODEL.md section 4.
    fn back_verlet(&self, ws: &mut Workspace<T>, gk: &mut [T], gb: &mut [T]) {
        let (n, w) = (self.cfg.steps, self.cfg.width);
        let Workspace { y, z, ybar, zbar, sc, store, slot, .. } = ws;
        zbar.iter_mut().for_each(|v| *v = T::zero());
        for j in (0..n).rev() {
            let stored = slot[j].map(|s| {
                let (a, b) = store[2 * s * w..(2 * s + 2) * w].split_at(w);
                (a, b)
            });
            let ww = w * w;
            let (dkj, dbj) = (&mut gk[j * ww..(j + 1) * ww], &mut gb[j * w..(j + 1) * w]);
            verlet::adjoint_step(&self.step(j), y, z, stored, ybar, zbar, dkj, dbj, sc);
        }
    }

    /// leapfrog: adjoint accumulators a_{j+1}, a_j, a_{j-1} roll down while y_{j-1} is
    /// rebuilt from (y_j, y_{j+1}) (MODEL.md sections 3 and 4).
    fn back_leapfrog(&self, ws: &mut Workspace<T>, gk: &mut [T], gb: &mut [T]) {
        let (n, w) = (self.cfg.steps, self.cfg.width);
        let Workspace { y, z, ybar, acc, f, sc, store, slot, .. } = ws;
        // Forward left (y, z) = (y_N, y_{N-1}); name them (nxt, cur) = (y_{j+1}, y_j).
        let (mut nxt, mut cur) = (y, z);
        // acc[ia] = a_{j+1}, acc[ib] = a_j, acc[ic] = a_{j-1}.
        let (mut ia, mut ib, mut ic) = (0, 1, 2);
        acc[ia].copy_from_slice(ybar);
        acc[ib].iter_mut().for_each(|v| *v = T::zero());
        acc[ic].iter_mut().for_each(|v| *v = T::zero());
        for j in (0..n).rev() {
            let ww = w * w;
            let (dkj, dbj) = (&mut gk[j * ww..(j + 1) * ww], &mut gb[j * w..(j + 1) * w]);
            let st = self.step(j);
            if let Some(s) = slot[j] {
                // Restart from the exact pair (y_j, y_{j-1}) stored before step j.
                cur.copy_from_slice(&store[2 * s * w..(2 * s + 1) * w]);
            }
            let [a_next, a_cur, a_prev] = acc.get_disjoint_mut([ia, ib, ic]).expect("distinct");
            leapfrog::adjoint_step(&st, j == 0, cur, a_next, a_cur, a_prev, dkj, dbj, f, sc);
            if j == 0 {
                ybar.copy_from_slice(a_cur); // dL/dy_0 for the opening layer
                break;
            }
            // y_{j-1} = 2 y_j - y_{j+1} + h^2 F_j(y_j), written over y_{j+1}.
            let h2 = st.h * st.h;
            for i in 0..w {
                nxt[i] = T::c(2.0) * cur[i] - nxt[i] + h2 * f[i];
            }
            if let Some(s) = slot[j] {
                nxt.copy_from_slice(&store[(2 * s + 1) * w..(2 * s + 2) * w]);
            }
            std::mem::swap(&mut nxt, &mut cur);
            // a_{j+1} is finished; a_{j-2} starts at 0.
            (ia, ib, ic) = (ib, ic, ia);
            acc[ic].iter_mut().for_each(|v| *v = T::zero());
        }
    }
}

/// Per-example buffers of one pass, allocated once per batch.
pub struct Workspace<T> {
    y: Vec<T>,
    z: Vec<T>,
    u: Vec<T>,
    u_in: Vec<T>,
    ybar: Vec<T>,
    zbar: Vec<T>,
    acc: [Vec<T>; 3],
    f: Vec<T>,
    /// Stored states: slot s holds (y, z) before step j at [2 s w, (2 s + 2) w).
    store: Vec<T>,
    /// slot[j]: the store slot of the state before step j, if kept.
    slot: Vec<Option<usize>>,
    /// resnet/antisym: the states of one recomputed segment.
    seg: Vec<T>,
    interval: Option<usize>,
    sc: Scratch<T>,
}

impl<T: Real> Workspace<T> {
    pub fn new(cfg: &ModelConfig, method: GradMethod) -> Self {
        let (n, w) = (cfg.steps, cfg.width);
        let z = |len| vec![T::zero(); len];
        let interval = method.interval();
        let slot: Vec<Option<usize>> = (0..n).map(|j| interval.filter(|k| j % k == 0).map(|k| j / k)).collect();
        let kept = slot.iter().flatten().count();
        let seg_len = match cfg.integrator {
            Integrator::Resnet | Integrator::Antisym => interval.unwrap_or(n).min(n) * w,
            _ => 0,
        };
        Workspace {
            y: z(w),
            z: z(w),
            u: z(w),
            u_in: z(w),
            ybar: z(w),
            zbar: z(w),
            acc: [z(w), z(w), z(w)],
            f: z(w),
            store: z(2 * kept * w),
            slot,
            seg: z(seg_len),
            interval,
            sc: Scratch::new(w),
        }
    }

    /// Number of width-w state vectors the adjoint pass keeps per example.
    pub fn held_states(&self) -> usize {
        let w = self.y.len().max(1);
        (self.store.len() + self.seg.len()) / w
    }
}

/// logits = W y + mu
fn classify<T: Real>(p: &Params<T>, y: &[T], out: &mut [T]) {
    crate::linalg::matvec(&p.wc, y, out);
    out.iter_mut().zip(&p.mu).for_each(|(o, m)| *o += *m);
}

/// Turns logits into softmax - onehot(label) in place; returns (-log softmax[label], whether
/// the arg-max is the label). Uses the max-shift so large logits cannot overflow, and takes the
/// loss as ln(sum) + max - z[label], not from the exponential, which underflows to 0 (a loss
/// of inf) once the label's logit is ~88 (f32) below the largest.
fn softmax_xent<T: Real>(z: &mut [T], label: usize) -> (T, bool) {
    let (mut arg, mut max) = (0, z[0]);
    for (i, &v) in z.iter().enumerate() {
        if v > max {
            (arg, max) = (i, v);
        }
    }
    let shifted = max - z[label];
    let mut sum = T::zero();
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let loss = sum.ln() + shifted;
    z.iter_mut().for_each(|v| *v /= sum);
    z[label] -= T::one();
    (loss, arg == label)
}

/// Shapes and labels of a batch against the configuration.
pub fn check_batch(cfg: &ModelConfig, x: &[f32], labels: &[u32]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::Shape("empty batch".into()));
    }
    if x.len() != labels.len() * cfg.d {
        return Err(Error::Shape(format!(
            "batch x holds {} values; {} labels with input dimension d = {} need {}",
            x.len(),
            labels.len(),
            cfg.d,
            labels.len() * cfg.d
        )));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= cfg.classes) {
        return Err(Error::Data(format!(
            "label {} of example {i} is outside 0..{} (the model has {} classes)",
            labels[i], cfg.classes, cfg.classes
        )));
    }
    if let Some(k) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Data(format!("example {} has a non-finite input {}", k / cfg.d, x[k])));
    }
    Ok(())
}

/// Loss and exact gradient of a batch (see [`Network::loss_grad`]).
pub fn loss_grad<T: Real>(
    cfg: &ModelConfig,
    p: &Params<T>,
    x: &[f32],
    labels: &[u32],
    method: GradMethod,
) -> Result<LossGrad<T>> {
    Network::new(cfg, p)?.loss_grad(x, labels, method)
}

/// Logits of every example of `x` (n x d), n x C row-major.
pub fn logits<T: Real>(cfg: &ModelConfig, p: &Params<T>, x: &[f32]) -> Result<Vec<T>> {
    let net = Network::new(cfg, p)?;
    if !x.len().is_multiple_of(cfg.d) {
        return Err(Error::Shape(format!("x holds {} values, not a multiple of d = {}", x.len(), cfg.d)));
    }
    let n = x.len() / cfg.d;
    let mut ws = Workspace::new(cfg, GradMethod::Checkpoint(cfg.steps.max(1)));
    let mut out = vec![T::zero(); n * cfg.classes];
    let mut xi = vec![T::zero(); cfg.d];
    for (xs, o) in x.chunks_exact(cfg.d).zip(out.chunks_exact_mut(cfg.classes)) {
        xi.iter_mut().zip(xs).for_each(|(a, b)| *a = T::c(*b as f64));
        net.logits(&xi, o, &mut ws);
    }
    Ok(out)
}

/// Mean loss and accuracy of a labelled set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub n: usize,
}

pub fn evaluate<T: Real>(cfg: &ModelConfig, p: &Params<T>, x: &[f32], labels: &[u32]) -> Result<Evaluation> {
    check_batch(cfg, x, labels)?;
    let z = logits(cfg, p, x)?;
    let (mut loss, mut correct) = (0.0, 0usize);
    for (row, &l) in z.chunks_exact(cfg.classes).zip(labels) {
        let mut row = row.to_vec();
        let (li, hit) = softmax_xent(&mut row, l as usize);
        loss += li.f64();
        correct += hit as usize;
    }
    let n = labels.len();
    Ok(Evaluation { loss: loss / n as f64, accuracy: correct as f64 / n as f64, n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, Integrator};

    /// A confidently wrong prediction: the label's logit 200 below the other, where its
    /// exponential underflows (f32 and f64 alike at 800). The loss is still the logit gap, and
    /// the gradient softmax - onehot.
    #[test]
    fn confidently_wrong_predictions_have_a_finite_loss() {
        let cfg = ModelConfig {
            d: 2,
            width: 3,
            steps: 2,
            final_time: 1.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 2,
        };
        for gap in [200.0, 800.0] {
            let mut p = Params::<f64>::init(&cfg, 1);
            p.wc.iter_mut().for_each(|v| *v = 0.0);
            p.mu = vec![0.0, gap];
            let (x, labels) = ([0.3, -0.2, 1.0, 0.5], [0, 0]);
            let lg = loss_grad(&cfg, &p, &x, &labels, GradMethod::Reverse).unwrap();
            assert!((lg.loss - gap).abs() < 1e-9 * gap, "f64, gap {gap}: loss {}", lg.loss);
            assert_eq!(lg.grad.mu, vec![-1.0, 1.0], "f64, gap {gap}");
            let lg = loss_grad(&cfg, &p.cast::<f32>(), &x, &labels, GradMethod::Reverse).unwrap();
            assert!((lg.loss as f64 - gap).abs() < 1e-5 * gap, "f32, gap {gap}: loss {}", lg.loss);
            let ev = evaluate(&cfg, &p, &x, &labels).unwrap();
            assert!((ev.loss - gap).abs() < 1e-9 * gap && ev.accuracy == 0.0, "{ev:?}");
        }
    }
}
