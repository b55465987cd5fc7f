//! Helpers shared by the CLI's integration tests.
use std::path::Path;

/// A checkpoint's metadata value `key` (the safetensors header's `__metadata__`).
pub fn meta(ckpt: &Path, key: &str) -> String {
    let b = std::fs::read(ckpt).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    header["__metadata__"][key].as_str().unwrap_or_else(|| panic!("no {key} in {}", ckpt.display())).to_string()
}
