//! The image network end to end (docs/IMAGES.md): opening convolution, stages, widening and
//! pooling between them, global pooling and the classifier; the loss and its exact gradient.
//!
//! Examples are independent until the parameter gradient, so a batch is cut into fixed chunks
//! of [`CHUNK`] examples, threads take chunks, and the per-chunk partial gradients are summed in
//! chunk order: the same bits for any number of threads.
use super::conv::{
    Shape, add_bias, avgpool2, avgpool2_t, bias_grad, conv1x1, conv1x1_t, conv1x1_wgrad, conv3x3, conv3x3_wgrad, pad,
};
use super::kernels::{act_inplace, dsig_from_value};
use super::stage::{Scratch, Stage};
use super::{ImageConfig, ImageParams};
use crate::config::Integrator;
use crate::error::Result;
use crate::real::Real;
use std::ops::Range;

/// Examples per chunk of the deterministic gradient reduction.
pub const CHUNK: usize = 8;

/// Where each tensor lies in the flat parameter vector.
#[derive(Clone, Debug)]
struct Offsets {
    open: (Range<usize>, Range<usize>),
    stage: Vec<(Range<usize>, Range<usize>)>,
    widen: Vec<(Range<usize>, Range<usize>)>,
    classifier: (Range<usize>, Range<usize>),
}

/// A network: its configuration and the derived sizes.
#[derive(Clone, Debug)]
pub struct ImageNet {
    pub cfg: ImageConfig,
    off: Offsets,
    shapes: Vec<Shape>,
}

/// Loss, correct predictions and gradient of a batch.
pub struct LossGrad<T> {
    /// Mean cross-entropy over the batch.
    pub loss: f64,
    pub correct: usize,
    pub grad: ImageParams<T>,
}

/// Evaluation of a data set: mean loss, accuracy and every predicted class.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageEval {
    pub loss: f64,
    pub accuracy: f64,
    pub predictions: Vec<u32>,
}

/// Per-example buffers of one worker.
struct Example<T> {
    xpad: Vec<T>,
    /// sigma of the opening's pre-activation.
    open_u: Vec<T>,
    /// Final states y, z of every stage (the adjoint starts from them).
    y: Vec<Vec<T>>,
    z: Vec<Vec<T>>,
    /// resnet/antisym: y_0 .. y_{N-1} of every stage.
    stored: Vec<Vec<T>>,
    /// sigma of each widening convolution's pre-activation (before pooling).
    widen_u: Vec<Vec<T>>,
    ybar: Vec<Vec<T>>,
    abar: Vec<T>,
    tmp: Vec<T>,
    pooled: Vec<T>,
    logits: Vec<T>,
    sc: Scratch<T>,
}

impl ImageNet {
    pub fn new(cfg: &ImageConfig) -> Result<Self> {
        cfg.validate()?;
        let p = ImageParams::<f32>::zeros(cfg);
        let r = |name: &str| {
            let s = p.slot(name);
            s.offset..s.offset + s.len
        };
        let pair = |pre: &str| (r(&format!("{pre}.weight")), r(&format!("{pre}.bias")));
        let off = Offsets {
            open: pair("opening"),
            stage: (0..cfg.stages()).map(|s| pair(&format!("stages.{s}"))).collect(),
            widen: (0..cfg.stages() - 1).map(|s| pair(&format!("widen.{s}"))).collect(),
            classifier: pair("classifier"),
        };
        let shapes = (0..cfg.stages()).map(|s| cfg.stage_shape(s)).collect();
        Ok(ImageNet { cfg: cfg.clone(), off, shapes })
    }

    /// Input values per example (c0 x H x W).
    pub fn input_len(&self) -> usize {
        self.cfg.input.len()
    }

    fn stores_states(&self) -> bool {
        matches!(self.cfg.integrator, Integrator::Resnet | Integrator::Antisym)
    }

    fn example_buffers<T: Real>(&self) -> Example<T> {
        let z = |n| vec![T::zero(); n];
        let lens: Vec<usize> = self.shapes.iter().map(|s| s.len()).collect();
        let max_len = lens.iter().copied().max().unwrap_or(0);
        let max_pad = self.shapes.iter().map(|s| s.padded_len()).max().unwrap_or(0).max(self.cfg.input.padded_len());
        let n = if self.stores_states() { self.cfg.steps } else { 0 };
        let widen_lens: Vec<usize> =
            (1..self.shapes.len()).map(|s| self.shapes[s].c * self.shapes[s - 1].pixels()).collect();
        Example {
            xpad: z(self.cfg.input.padded_len()),
            open_u: z(lens[0]),
            y: lens.iter().map(|&l| z(l)).collect(),
            z: lens.iter().map(|&l| z(l)).collect(),
            stored: lens.iter().map(|&l| z(n * l)).collect(),
            widen_u: widen_lens.iter().map(|&l| z(l)).collect(),
            ybar: lens.iter().map(|&l| z(l)).collect(),
            abar: z(max_len),
            tmp: z(widen_lens.iter().copied().max().unwrap_or(0).max(max_len)),
            pooled: z(*self.cfg.channels.last().expect("validated")),
            logits: z(self.cfg.classes),
            sc: Scratch::new(max_len, max_pad),
        }
    }

    fn stage<'a, T: Real>(&self, p: &'a ImageParams<T>, s: usize) -> Stage<'a, T> {
        let (k, b) = &self.off.stage[s];
        Stage {
            integrator: self.cfg.integrator,
            act: self.cfg.activation,
            shape: self.shapes[s],
            h: T::c(self.cfg.h()),
            gamma: T::c(self.cfg.gamma),
            k: &p.data[k.clone()],
            b: &p.data[b.clone()],
        }
    }

    /// Forward pass of one example; the logits are left in `ex.logits`.
    fn forward_example<T: Real>(&self, p: &ImageParams<T>, x: &[T], ex: &mut Example<T>) {
        let act = self.cfg.activation;
        let (ow, ob) = &self.off.open;
        pad(self.cfg.input, x, &mut ex.xpad);
        conv3x3(&p.data[ow.clone()], self.cfg.input, self.shapes[0].c, &ex.xpad, &mut ex.open_u);
        add_bias(&p.data[ob.clone()], self.shapes[0].pixels(), &mut ex.open_u);
        // open_u and widen_u keep sigma(u): the backward pass takes sigma' from it.
        act_inplace(act, &mut ex.open_u);
        ex.y[0].copy_from_slice(&ex.open_u);
        for s in 0..self.shapes.len() {
            let stored = self.stores_states().then_some(&mut ex.stored[s][..]);
            self.stage(p, s).forward(&mut ex.y[s], &mut ex.z[s], stored, &mut ex.sc);
            if s + 1 < self.shapes.len() {
                let (sh, next) = (self.shapes[s], self.shapes[s + 1]);
                let (ww, wb) = &self.off.widen[s];
                let u = &mut ex.widen_u[s];
                conv1x1(&p.data[ww.clone()], sh.c, next.c, sh.pixels(), &ex.y[s], u);
                add_bias(&p.data[wb.clone()], sh.pixels(), u);
                act_inplace(act, u);
                avgpool2(Shape::new(next.c, sh.h, sh.w), u, &mut ex.y[s + 1]);
            }
        }
        let last = *self.shapes.last().expect("validated");
        let inv = T::c(1.0 / last.pixels() as f64);
        for (pc, row) in ex.pooled.iter_mut().zip(ex.y[self.shapes.len() - 1].chunks_exact(last.pixels())) {
            *pc = inv * row.iter().copied().sum::<T>();
        }
        let (cw, cb) = &self.off.classifier;
        let (w, mu) = (&p.data[cw.clone()], &p.data[cb.clone()]);
        for (k, l) in ex.logits.iter_mut().enumerate() {
            *l = mu[k] + crate::real::dot(&w[k * last.c..][..last.c], &ex.pooled);
        }
    }

    /// Softmax cross-entropy of the logits in `ex` (log-sum-exp shifted by the maximum); with
    /// `scale`, leaves dLoss/dlogits * scale in `ex.logits`. Returns (loss, correct).
    fn softmax_loss<T: Real>(ex: &mut Example<T>, label: usize, scale: Option<T>) -> (f64, bool) {
        let l = &mut ex.logits;
        let (mut best, mut max) = (0, l[0]);
        for (k, &v) in l.iter().enumerate() {
            if v > max {
                (best, max) = (k, v);
            }
        }
        let sum: T = l.iter().map(|&v| (v - max).exp()).sum();
        let loss = (sum.ln() + max - l[label]).f64();
        if let Some(scale) = scale {
            for (k, v) in l.iter_mut().enumerate() {
                let pk = (*v - max).exp() / sum;
                *v = scale * (if k == label { pk - T::one() } else { pk });
            }
        }
        (loss, best == label)
    }

    /// Adds the gradient of `scale` x the loss of one example to `g` (after the forward pass and
    /// [`ImageNet::softmax_loss`] left dLoss/dlogits in `ex.logits`).
    fn backward_example<T: Real>(&self, p: &ImageParams<T>, ex: &mut Example<T>, g: &mut [T]) {
        let act = self.cfg.activation;
        let ns = self.shapes.len();
        let last = self.shapes[ns - 1];
        // Classifier and global pooling.
        let (cw, cb) = &self.off.classifier;
        let w = &p.data[cw.clone()];
        let (gw, gmu) = g[cw.start..cb.end].split_at_mut(cw.len());
        let inv = T::c(1.0 / last.pixels() as f64);
        let ybar = &mut ex.ybar[ns - 1];
        for (c, row) in ybar.chunks_exact_mut(last.pixels()).enumerate() {
            let mut pbar = T::zero();
            for (k, &d) in ex.logits.iter().enumerate() {
                pbar += w[k * last.c + c] * d;
            }
            row.fill(pbar * inv);
        }
        for (k, &d) in ex.logits.iter().enumerate() {
            gmu[k] += d;
            for (gw, &pc) in gw[k * last.c..][..last.c].iter_mut().zip(&ex.pooled) {
                *gw += d * pc;
            }
        }
        for s in (0..ns).rev() {
            let (k, b) = &self.off.stage[s];
            let (dk, db) = g[k.start..b.end].split_at_mut(k.len());
            let stored = self.stores_states().then_some(&ex.stored[s][..]);
            self.stage(p, s).adjoint(
                &mut ex.y[s],
                &mut ex.z[s],
                stored,
                &mut ex.ybar[s],
                &mut ex.abar[..self.shapes[s].len()],
                dk,
                db,
                &mut ex.sc,
            );
            if s == 0 {
                break;
            }
            // The widening before stage s: y_s = pool(sigma(W y_end + b)), y_end the final
            // state of stage s - 1 (still in ex.y[s - 1]: its adjoint has not run yet).
            let (prev, sh) = (self.shapes[s - 1], self.shapes[s]);
            let (ww, wb) = &self.off.widen[s - 1];
            let u = &ex.widen_u[s - 1];
            let ubar = &mut ex.tmp[..u.len()];
            avgpool2_t(Shape::new(sh.c, prev.h, prev.w), &ex.ybar[s], ubar);
            for (ub, &a) in ubar.iter_mut().zip(u.iter()) {
                *ub *= dsig_from_value(act, a);
            }
            let (gww, gwb) = g[ww.start..wb.end].split_at_mut(ww.len());
            conv1x1_wgrad(ubar, prev.c, sh.c, prev.pixels(), &ex.y[s - 1], gww);
            bias_grad(ubar, prev.pixels(), gwb);
            conv1x1_t(&p.data[ww.clone()], prev.c, sh.c, prev.pixels(), ubar, &mut ex.ybar[s - 1]);
        }
        // Opening: y_0 = sigma(K_in x + b_in).
        let (ow, ob) = &self.off.open;
        let ubar = &mut ex.ybar[0];
        for (ub, &a) in ubar.iter_mut().zip(&ex.open_u) {
            *ub *= dsig_from_value(act, a);
        }
        let (gow, gob) = g[ow.start..ob.end].split_at_mut(ow.len());
        conv3x3_wgrad(ubar, self.cfg.input, self.shapes[0].c, &ex.xpad, gow);
        bias_grad(ubar, self.shapes[0].pixels(), gob);
    }

    fn check_batch<T: Real>(&self, p: &ImageParams<T>, x: &[T], labels: &[u32]) -> Result<usize> {
        p.check_shape(&self.cfg)?;
        self.cfg.check_batch(x, labels)
    }

    /// Mean loss of the batch and its gradient, on `threads` threads (0: all). `x` is n images.
    pub fn loss_grad<T: Real>(
        &self,
        p: &ImageParams<T>,
        x: &[T],
        labels: &[u32],
        threads: usize,
    ) -> Result<LossGrad<T>> {
        let mut grad = p.zeros_like();
        let (loss, correct) = self.loss_grad_into(p, x, labels, threads, &mut Vec::new(), &mut grad)?;
        Ok(LossGrad { loss, correct, grad })
    }

    /// [`ImageNet::loss_grad`] into `grad`, with `partials` reused between calls.
    pub fn loss_grad_into<T: Real>(
        &self,
        p: &ImageParams<T>,
        x: &[T],
        labels: &[u32],
        threads: usize,
        partials: &mut Vec<(f64, usize, Vec<T>)>,
        grad: &mut ImageParams<T>,
    ) -> Result<(f64, usize)> {
        let n = self.check_batch(p, x, labels)?;
        let d = self.input_len();
        let chunks = n.div_ceil(CHUNK);
        partials.resize_with(chunks, || (0.0, 0, vec![T::zero(); p.data.len()]));
        let scale = T::c(1.0 / n as f64);
        let work = |ex: &mut Example<T>, ci: usize, part: &mut (f64, usize, Vec<T>)| {
            part.2.fill(T::zero());
            (part.0, part.1) = (0.0, 0);
            for e in ci * CHUNK..((ci + 1) * CHUNK).min(n) {
                self.forward_example(p, &x[e * d..][..d], ex);
                let (l, ok) = Self::softmax_loss(ex, labels[e] as usize, Some(scale));
                part.0 += l;
                part.1 += ok as usize;
                self.backward_example(p, ex, &mut part.2);
            }
        };
        self.parallel(threads, &mut partials[..chunks], work);
        grad.data.fill(T::zero());
        let (mut loss, mut correct) = (0.0, 0);
        for (l, c, g) in &partials[..chunks] {
            loss += l;
            correct += c;
            for (a, &b) in grad.data.iter_mut().zip(g) {
                *a += b;
            }
        }
        Ok((loss / n as f64, correct))
    }

    /// Runs `work(buffers, chunk index, item)` for every item on up to `threads` threads,
    /// item i on thread i mod threads.
    fn parallel<T: Real, I: Send>(
        &self,
        threads: usize,
        items: &mut [I],
        work: impl Fn(&mut Example<T>, usize, &mut I) + Sync,
    ) {
        let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let t = if threads == 0 { all } else { threads }.min(items.len()).max(1);
        if t == 1 {
            let mut ex = self.example_buffers();
            for (i, item) in items.iter_mut().enumerate() {
                work(&mut ex, i, item);
            }
            return;
        }
        let mut lanes: Vec<Vec<(usize, &mut I)>> = (0..t).map(|_| Vec::new()).collect();
        for (i, item) in items.iter_mut().enumerate() {
            lanes[i % t].push((i, item));
        }
        std::thread::scope(|scope| {
            for lane in lanes {
                let work = &work;
                scope.spawn(move || {
                    let mut ex = self.example_buffers();
                    for (i, item) in lane {
                        work(&mut ex, i, item);
                    }
                });
            }
        });
    }

    /// Logits of every image (n x C, row-major).
    pub fn logits<T: Real>(&self, p: &ImageParams<T>, x: &[T], threads: usize) -> Result<Vec<T>> {
        let d = self.input_len();
        let n = x.len() / d;
        self.check_batch(p, x, &vec![0; n])?;
        let c = self.cfg.classes;
        let mut out = vec![T::zero(); n * c];
        let mut rows: Vec<&mut [T]> = out.chunks_mut(CHUNK * c).collect();
        self.parallel(threads, &mut rows, |ex, ci, rows| {
            for (k, row) in rows.chunks_mut(c).enumerate() {
                let e = ci * CHUNK + k;
                self.forward_example(p, &x[e * d..][..d], ex);
                row.copy_from_slice(&ex.logits);
            }
        });
        Ok(out)
    }

    /// Mean loss, accuracy and predictions on a labelled set.
    pub fn evaluate<T: Real>(&self, p: &ImageParams<T>, x: &[T], labels: &[u32], threads: usize) -> Result<ImageEval> {
        self.check_batch(p, x, labels)?;
        let logits = self.logits(p, x, threads)?;
        let c = self.cfg.classes;
        let (mut loss, mut correct, mut predictions) = (0.0, 0, Vec::with_capacity(labels.len()));
        for (row, &label) in logits.chunks_exact(c).zip(labels) {
            let max = row.iter().copied().fold(T::neg_infinity(), T::max);
            let best = row.iter().position(|&v| v == max).unwrap_or(0);
            let sum: T = row.iter().map(|&v| (v - max).exp()).sum();
            loss += (sum.ln() + max - row[label as usize]).f64();
            correct += (best == label as usize) as usize;
            predictions.push(best as u32);
        }
        let n = labels.len() as f64;
        Ok(ImageEval { loss: loss / n, accuracy: correct as f64 / n, predictions })
    }
}
