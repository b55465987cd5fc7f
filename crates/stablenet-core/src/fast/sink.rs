//! The gradient that every worker thread adds its tiles into, in tile order.
//!
//! A tile's share of the gradient comes in phases: the classifier (with the loss and hit
//! count), then dK_j, db_j for j = N-1 .. 0 as the adjoint walks back, then the opening
//! layer. Tile t enters a phase only once tile t-1 has left it, so every sum runs over the
//! tiles in the same order whatever the number of threads (bit-identical results), and no
//! per-chunk copy of the gradient is needed: the memory of a step stays flat in N. Tiles are
//! handed out in increasing order and a tile only waits on the one before it, which is
//! already running, so the wait always ends.
use crate::params::Params;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Shared, phase-ordered access to the gradient, loss and hit count of one call.
pub(crate) struct Sink<'a> {
    k_in: *mut f32,
    b_in: *mut f32,
    k: *mut f32,
    b: *mut f32,
    wc: *mut f32,
    mu: *mut f32,
    loss: *mut f64,
    correct: *mut usize,
    d: usize,
    w: usize,
    steps: usize,
    c: usize,
    /// Phases completed by each tile of the call.
    done: &'a [AtomicUsize],
    /// Set when a worker panicked, so that the others stop waiting for it.
    failed: AtomicBool,
    _grad: PhantomData<&'a mut Params<f32>>,
}

// SAFETY: the pointers are only turned into slices inside a phase, and at most one tile is
// inside a given phase at any time (the Acquire load of the previous tile's count pairs with
// the Release store that ended its phase); distinct phases touch disjoint ranges.
unsafe impl Sync for Sink<'_> {}

/// One tile's exclusive access to the ranges of one phase, reached through Deref; leaving
/// (drop) lets the next tile in. The slices stay private, so none can outlive the turn.
pub(crate) struct Turn<'s, T> {
    out: T,
    done: &'s AtomicUsize,
    phase: usize,
}

impl<T> std::ops::Deref for Turn<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.out
    }
}

impl<T> std::ops::DerefMut for Turn<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.out
    }
}

impl<T> Drop for Turn<'_, T> {
    fn drop(&mut self) {
        self.done.store(self.phase + 1, Ordering::Release);
    }
}

/// The classifier phase's outputs: dW, dmu, and the running loss sum and hit count.
pub(crate) struct Head<'s> {
    pub wc: &'s mut [f32],
    pub mu: &'s mut [f32],
    pub loss: &'s mut f64,
    pub correct: &'s mut usize,
}

impl<'a> Sink<'a> {
    /// Zeroes `grad` and starts a call of `done.len()` tiles.
    pub fn new(grad: &'a mut Params<f32>, loss: &'a mut f64, correct: &'a mut usize, done: &'a [AtomicUsize]) -> Self {
        for (_, g) in grad.groups_mut() {
            g.fill(0.0);
        }
        (*loss, *correct) = (0.0, 0);
        for t in done {
            t.store(0, Ordering::Relaxed);
        }
        Sink {
            k_in: grad.k_in.as_mut_ptr(),
            b_in: grad.b_in.as_mut_ptr(),
            k: grad.k.as_mut_ptr(),
            b: grad.b.as_mut_ptr(),
            wc: grad.wc.as_mut_ptr(),
            mu: grad.mu.as_mut_ptr(),
            loss,
            correct,
            d: grad.d,
            w: grad.w,
            steps: grad.n,
            c: grad.c,
            done,
            failed: AtomicBool::new(false),
            _grad: PhantomData,
        }
    }

    /// Waits until tile t-1 has left `phase` (tile t must have left the phase before).
    fn enter(&self, t: usize, phase: usize) -> &AtomicUsize {
        debug_assert_eq!(self.done[t].load(Ordering::Relaxed), phase, "tile {t} skipped a phase");
        if t > 0 {
            let mut spins = 0u32;
            while self.done[t - 1].load(Ordering::Acquire) <= phase {
                assert!(!self.failed.load(Ordering::Relaxed), "another worker thread panicked");
                if spins < 256 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        }
        &self.done[t]
    }

    /// # Safety
    /// `p + start .. p + start + len` lies in one group, and the caller is inside the only
    /// phase that touches it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, p: *mut f32, start: usize, len: usize) -> &mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(p.add(start), len) }
    }

    /// Phase 0: the classifier.
    pub fn head(&self, t: usize) -> Turn<'_, Head<'_>> {
        let done = self.enter(t, 0);
        // SAFETY: inside phase 0, which alone touches W, mu, the loss and the hit count.
        let out = unsafe {
            Head {
                wc: self.slice(self.wc, 0, self.c * self.w),
                mu: self.slice(self.mu, 0, self.c),
                loss: &mut *self.loss,
                correct: &mut *self.correct,
            }
        };
        Turn { out, done, phase: 0 }
    }

    /// Phase N - j: (dK_j, db_j) of step j, entered for j = N-1 down to 0.
    #[allow(clippy::mut_from_ref)] // exclusive by the phase order (module docs), not by &mut
    pub fn step(&self, t: usize, j: usize) -> Turn<'_, (&mut [f32], &mut [f32])> {
        let (w, phase) = (self.w, self.steps - j);
        let done = self.enter(t, phase);
        // SAFETY: inside phase N - j, which alone touches step j's rows of K and b.
        let out = unsafe { (self.slice(self.k, j * w * w, w * w), self.slice(self.b, j * w, w)) };
        Turn { out, done, phase }
    }

    /// Phase N + 1: (dK_in, db_in) of the opening layer.
    #[allow(clippy::mut_from_ref)] // exclusive by the phase order (module docs), not by &mut
    pub fn open(&self, t: usize) -> Turn<'_, (&mut [f32], &mut [f32])> {
        let phase = self.steps + 1;
        let done = self.enter(t, phase);
        // SAFETY: inside the last phase, which alone touches K_in and b_in.
        let out = unsafe { (self.slice(self.k_in, 0, self.w * self.d), self.slice(self.b_in, 0, self.w)) };
        Turn { out, done, phase }
    }

    /// Called by a worker that is unwinding, so that no other waits forever on its tile.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }
}
