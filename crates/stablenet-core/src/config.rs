//! Model configuration (MODEL.md section 1) and its validation.
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The time integrator of the dynamic part (MODEL.md section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrator {
    /// Forward Euler, y += h sigma(K y + b).
    Resnet,
    /// Forward Euler with the antisymmetric operator A = (K - K^T - gamma I) / 2.
    Antisym,
    /// Verlet on the coupled (y, z) system.
    Hamiltonian,
    /// Second-order leapfrog, y+ = 2 y - y- + h^2 F(y).
    Leapfrog,
}

impl Integrator {
    pub const ALL: [Integrator; 4] =
        [Integrator::Resnet, Integrator::Antisym, Integrator::Hamiltonian, Integrator::Leapfrog];

    pub fn name(self) -> &'static str {
        match self {
            Integrator::Resnet => "resnet",
            Integrator::Antisym => "antisym",
            Integrator::Hamiltonian => "hamiltonian",
            Integrator::Leapfrog => "leapfrog",
        }
    }

    /// Verlet and leapfrog can be run backwards in time (MODEL.md section 3).
    pub fn is_reversible(self) -> bool {
        matches!(self, Integrator::Hamiltonian | Integrator::Leapfrog)
    }
}

impl fmt::Display for Integrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Integrator {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Integrator::ALL.into_iter().find(|i| i.name() == s).ok_or_else(|| {
            Error::Config(format!("unknown integrator {s:?}; expected one of resnet, antisym, hamiltonian, leapfrog"))
        })
    }
}

/// The activation sigma.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            _ => Err(Error::Config(format!("unknown activation {s:?}; expected tanh or relu"))),
        }
    }
}

/// Everything that fixes the shapes and the mathematics of a network.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// Input dimension d.
    pub d: usize,
    /// Width w of the state.
    pub width: usize,
    /// Number of dynamic steps N.
    pub steps: usize,
    /// Final time T; the step size is h = T / N.
    pub final_time: f64,
    pub integrator: Integrator,
    pub activation: Activation,
    /// Damping of the antisymmetric operator (ignored by the other integrators).
    pub gamma: f64,
    /// Number of classes C.
    pub classes: usize,
}

impl ModelConfig {
    /// Step size h = T / N.
    pub fn h(&self) -> f64 {
        self.final_time / self.steps as f64
    }

    /// Rejects configurations that cannot describe a network.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.d == 0 {
            return bad("input dimension d must be at least 1".into());
        }
        if self.width == 0 {
            return bad("width must be at least 1".into());
        }
        if self.steps == 0 {
            return bad("the number of steps N must be at least 1".into());
        }
        if self.classes < 2 {
            return bad(format!("a classifier needs at least 2 classes, got {}", self.classes));
        }
        if !(self.final_time.is_finite() && self.final_time > 0.0) {
            return bad(format!("final time T must be finite and > 0, got {}", self.final_time));
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return bad(format!("gamma must be finite and >= 0, got {}", self.gamma));
        }
        const MAX: usize = 1 << 24;
        if self.width > 4096 || self.d > MAX || self.steps > MAX || self.classes > MAX {
            return bad(format!(
                "sizes out of range (d {}, width {}, steps {}, classes {}); width is limited to 4096",
                self.d, self.width, self.steps, self.classes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ModelConfig {
        ModelConfig {
            d: 2,
            width: 8,
            steps: 16,
            final_time: 5.0,
            integrator: Integrator::Hamiltonian,
            activation: Activation::Tanh,
            gamma: 0.0,
            classes: 5,
        }
    }

    #[test]
    fn validation_rejects_nonsense_with_a_telling_message() {
        assert!(good().validate().is_ok());
        type Breakage = (fn(&mut ModelConfig), &'static str);
        let cases: [Breakage; 8] = [
            (|c| c.d = 0, "input dimension"),
            (|c| c.width = 0, "width"),
            (|c| c.steps = 0, "steps"),
            (|c| c.classes = 1, "2 classes"),
            (|c| c.final_time = 0.0, "final time"),
            (|c| c.final_time = f64::NAN, "final time"),
            (|c| c.gamma = -0.1, "gamma"),
            (|c| c.width = 5000, "width"),
        ];
        for (break_it, needle) in cases {
            let mut c = good();
            break_it(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for i in Integrator::ALL {
            assert_eq!(i.name().parse::<Integrator>().unwrap(), i);
        }
        assert!("rk4".parse::<Integrator>().unwrap_err().to_string().contains("leapfrog"));
        assert_eq!("relu".parse::<Activation>().unwrap(), Activation::Relu);
        assert!("gelu".parse::<Activation>().is_err());
    }
}
