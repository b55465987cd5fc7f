//! Data sets of MODEL.md section 8.
