//! Stability diagnostics (in progress).
