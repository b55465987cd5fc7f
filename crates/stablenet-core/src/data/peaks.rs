//! The peaks data set of MODEL.md section 8: level sets of MATLAB's `peaks` function, binned
//! into 5 classes, sampled with classes balanced.
use super::synthetic::linspace;
use super::{Dataset, Split};
use crate::rng::Rng;

/// Points per axis of the grid over [-3, 3]^2 that the samples are drawn from.
pub const PEAKS_GRID: usize = 256;
/// Number of classes (equal-width bins of the range of f on the grid).
pub const PEAKS_CLASSES: usize = 5;

/// f(x,y) = 3(1-x)^2 e^{-x^2-(y+1)^2} - 10(x/5 - x^3 - y^5) e^{-x^2-y^2} - (1/3) e^{-(x+1)^2-y^2}.
pub fn peaks_f(x: f64, y: f64) -> f64 {
    3.0 * (1.0 - x).powi(2) * (-x * x - (y + 1.0).powi(2)).exp()
        - 10.0 * (x / 5.0 - x.powi(3) - y.powi(5)) * (-x * x - y * y).exp()
        - (-(x + 1.0).powi(2) - y * y).exp() / 3.0
}

/// 5 classes in d = 2: grid points of a 256 x 256 linspace grid over [-3,3]^2, class = which
/// of 5 equal-width bins of [min f, max f] (over the grid) holds f(x,y), the maximum going into
/// the top bin. Each set holds the same number of points per class, drawn uniformly with
/// replacement from that class's grid points (MODEL.md section 8, defaults 5000/1000).
///
/// When `n` is not divisible by 5, the remainder `n % 5` goes one point each to classes
/// 0, 1, ... (so class counts differ by at most one). Stream order: the training set first,
/// then the validation set (separate draws), each class by class (0..5), one `below` per point.
/// Samples are stored class by class in that order (training shuffles).
pub fn peaks(n_train: usize, n_val: usize, seed: u64) -> Split {
    let grid = Grid::new();
    let mut rng = Rng::new(seed);
    let train = grid.draw(&mut rng, n_train);
    let val = grid.draw(&mut rng, n_val);
    Split { train, val }
}

/// Points per class for a set of `n`: n / 5 each, the remainder to the lowest classes.
pub fn peaks_class_counts(n: usize) -> [usize; PEAKS_CLASSES] {
    std::array::from_fn(|c| n / PEAKS_CLASSES + usize::from(c < n % PEAKS_CLASSES))
}

struct Grid {
    /// linspace(-3, 3, 256), the same for both axes.
    axis: Vec<f64>,
    /// Flat indices `ix * 256 + iy` of the grid points in each class.
    by_class: [Vec<usize>; PEAKS_CLASSES],
}

impl Grid {
    fn new() -> Self {
        let axis: Vec<f64> = linspace(-3.0, 3.0, PEAKS_GRID).collect();
        let f: Vec<f64> = axis.iter().flat_map(|&x| axis.iter().map(move |&y| peaks_f(x, y))).collect();
        let lo = f.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let width = (hi - lo) / PEAKS_CLASSES as f64;
        let mut by_class: [Vec<usize>; PEAKS_CLASSES] = Default::default();
        for (k, &v) in f.iter().enumerate() {
            // min(.., 4): the maximum (and any rounding at the top edge) joins the top bin.
            let c = (((v - lo) / width) as usize).min(PEAKS_CLASSES - 1);
            by_class[c].push(k);
        }
        // Fixed grid, so this only fails if the formula above is broken.
        assert!(by_class.iter().all(|b| !b.is_empty()), "empty peaks class");
        Grid { axis, by_class }
    }

    fn draw(&self, rng: &mut Rng, n: usize) -> Dataset {
        let mut x = Vec::with_capacity(2 * n);
        let mut labels = Vec::with_capacity(n);
        for (c, count) in peaks_class_counts(n).into_iter().enumerate() {
            let pool = &self.by_class[c];
            for _ in 0..count {
                let k = pool[rng.below(pool.len())];
                x.push(self.axis[k / PEAKS_GRID] as f32);
                x.push(self.axis[k % PEAKS_GRID] as f32);
                labels.push(c as u32);
            }
        }
        Dataset { x, labels, d: 2, classes: PEAKS_CLASSES }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Index on the grid axis of a stored coordinate; panics if it is not a grid value.
    fn axis_index(v: f32) -> usize {
        let i = ((f64::from(v) + 3.0) / 6.0 * 255.0).round() as usize;
        let g = (-3.0 + 6.0 * (i as f64 / 255.0)) as f32;
        assert_eq!(v, g, "{v} is not on the 256-point grid over [-3, 3]");
        i
    }

    fn grid_range() -> (f64, f64) {
        let axis: Vec<f64> = (0..256).map(|i| -3.0 + 6.0 * (i as f64 / 255.0)).collect();
        let mut r = (f64::INFINITY, f64::NEG_INFINITY);
        for &x in &axis {
            for &y in &axis {
                let f = peaks_f(x, y);
                r = (r.0.min(f), r.1.max(f));
            }
        }
        r
    }

    #[test]
    fn peaks_f_matches_hand_values() {
        // (0,0): 3 e^{-1} - 0 - e^{-1}/3 = (8/3)/e.
        assert!((peaks_f(0.0, 0.0) - 8.0 / 3.0 / std::f64::consts::E).abs() < 1e-15);
        assert!((peaks_f(0.0, 0.0) - 0.981_011_843_123_846).abs() < 1e-12);
        // (1,0): 0 - 10(0.2 - 1) e^{-1} - e^{-4}/3.
        let want = 8.0 * (-1.0f64).exp() - (-4.0f64).exp() / 3.0;
        assert!((peaks_f(1.0, 0.0) - want).abs() < 1e-14);
        // Far away everything decays.
        assert!(peaks_f(3.0, 3.0).abs() < 1e-3);
    }

    #[test]
    fn peaks_balanced_on_grid_and_in_bins() {
        let s = peaks(5000, 1000, 4);
        let (lo, hi) = grid_range();
        let w = (hi - lo) / 5.0;
        for (set, n) in [(&s.train, 5000), (&s.val, 1000)] {
            set.validate().unwrap();
            assert_eq!((set.len(), set.d, set.classes), (n, 2, 5));
            for c in 0..5u32 {
                assert_eq!(set.labels.iter().filter(|&&l| l == c).count(), n / 5);
            }
            for i in 0..set.len() {
                let p = set.sample(i);
                let (ix, iy) = (axis_index(p[0]), axis_index(p[1]));
                let f = peaks_f(-3.0 + 6.0 * (ix as f64 / 255.0), -3.0 + 6.0 * (iy as f64 / 255.0));
                let c = f64::from(set.labels[i]);
                let (b0, b1) = (lo + c * w, lo + (c + 1.0) * w);
                assert!(f >= b0 - 1e-12 && f <= b1 + 1e-12, "sample {i}: f = {f}, class {c}");
            }
        }
        // Separate draws, not a copy.
        assert_ne!(s.train.x[..2000], s.val.x[..2000]);
    }

    #[test]
    fn peaks_remainder_goes_to_lowest_classes() {
        assert_eq!(peaks_class_counts(13), [3, 3, 3, 2, 2]);
        assert_eq!(peaks_class_counts(5), [1; 5]);
        assert_eq!(peaks_class_counts(0), [0; 5]);
        let s = peaks(13, 4, 0);
        assert_eq!(s.train.labels, vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4]);
        assert_eq!(s.val.labels, vec![0, 1, 2, 3]);
    }

    #[test]
    fn peaks_same_seed_same_data_other_seed_differs() {
        assert_eq!(peaks(100, 20, 9), peaks(100, 20, 9));
        assert_ne!(peaks(100, 20, 9).train.x, peaks(100, 20, 10).train.x);
        assert_eq!(peaks(100, 7, 9).train, peaks(100, 20, 9).train);
    }

    #[test]
    fn peaks_golden_values_seed_1() {
        // Pins the stream (grid, bins, draw order); update only on a deliberate change.
        let s = peaks(5000, 1000, 1);
        assert_eq!(s.train.sample(0), &GOLD_TRAIN0);
        assert_eq!(s.train.sample(4999), &GOLD_TRAIN_LAST);
        assert_eq!(s.val.sample(0), &GOLD_VAL0);
    }

    const GOLD_TRAIN0: [f32; 2] = [0.62352943, -1.8235294];
    const GOLD_TRAIN_LAST: [f32; 2] = [0.2, 1.9411764];
    const GOLD_VAL0: [f32; 2] = [-0.1764706, -1.4235294];
}
