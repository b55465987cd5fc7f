//! The swiss roll of MODEL.md section 8: two interleaved spirals, deterministic.
use super::synthetic::linspace;
use super::{Dataset, Split};

/// Two classes in d = 2 on m = 2 `n_arm` + 1 angles phi = linspace(0, 4 pi, m); class 0 at
/// r = linspace(0, 1, m), class 1 at r = linspace(0.2, 1.2, m), x = (r cos phi, r sin phi).
/// The 2m points are stacked class 0 then class 1 and alternate between the sets: positions
/// 1st, 3rd, ... (0-based even indices) train, the others validation (MODEL.md section 8).
/// Default `n_arm` = 256 gives 513 / 513. Training set order: that stacking order.
pub fn swiss_roll(n_arm: usize) -> Split {
    let m = 2 * n_arm + 1;
    let phis: Vec<f64> = linspace(0.0, 4.0 * std::f64::consts::PI, m).collect();
    let arms = [(0u32, 0.0, 1.0), (1u32, 0.2, 1.2)];
    let points = arms.iter().flat_map(|&(class, r0, r1)| {
        phis.iter()
            .zip(linspace(r0, r1, m))
            .map(move |(&phi, r)| (class, [(r * phi.cos()) as f32, (r * phi.sin()) as f32]))
    });
    let mut sets = [empty(m), empty(m)];
    for (k, (class, p)) in points.enumerate() {
        let set = &mut sets[k % 2];
        set.x.extend_from_slice(&p);
        set.labels.push(class);
    }
    let [train, val] = sets;
    Split { train, val }
}

fn empty(cap: usize) -> Dataset {
    Dataset { x: Vec::with_capacity(2 * cap), labels: Vec::with_capacity(cap), d: 2, classes: 2 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    #[test]
    fn swiss_roll_default_sizes_and_first_point() {
        let s = swiss_roll(256);
        assert_eq!((s.train.len(), s.val.len()), (513, 513));
        s.train.validate().unwrap();
        s.val.validate().unwrap();
        assert_eq!(s.train.sample(0), &[0.0, 0.0]);
        assert_eq!(s.train.labels[0], 0);
        // m = 513 is odd: class 0 contributes 257 train points, class 1 the other 256.
        assert_eq!(s.train.labels.iter().filter(|&&l| l == 0).count(), 257);
        assert_eq!(s.val.labels.iter().filter(|&&l| l == 0).count(), 256);
        assert_eq!(swiss_roll(256), s, "deterministic");
    }

    #[test]
    fn swiss_roll_points_match_formula() {
        let n_arm = 256;
        let m = 2 * n_arm + 1;
        let s = swiss_roll(n_arm);
        // Stacked index k: class k / m, angle/radius index j = k % m; k even -> train[k/2].
        for k in [0, 2, 100, 511, 512, 513, 514, 700, 1025] {
            let (class, j) = (k / m, k % m);
            let t = j as f64 / (m - 1) as f64;
            let phi = 4.0 * PI * t;
            let r = if class == 0 { t } else { 0.2 + t };
            let set = if k % 2 == 0 { &s.train } else { &s.val };
            let p = set.sample(k / 2);
            assert_eq!(set.labels[k / 2], class as u32, "k = {k}");
            assert!((f64::from(p[0]) - r * phi.cos()).abs() < 1e-6, "k = {k}: {p:?}");
            assert!((f64::from(p[1]) - r * phi.sin()).abs() < 1e-6, "k = {k}: {p:?}");
        }
        // Last point of class 1: phi = 4 pi, r = 1.2.
        let last = s.val.sample(512);
        assert!((last[0] - 1.2).abs() < 1e-6 && last[1].abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn swiss_roll_small_arm_counts() {
        let s = swiss_roll(0);
        assert_eq!(s.train.labels, vec![0]);
        assert_eq!(s.val.labels, vec![1]);
        assert_eq!(s.val.sample(0), &[0.2, 0.0]);
        let s = swiss_roll(3);
        assert_eq!((s.train.len(), s.val.len()), (7, 7));
    }
}
