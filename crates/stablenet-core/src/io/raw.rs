//! The safetensors layer: reading and checking a file's header, decoding and encoding f32.
use crate::error::{Error, Result};
use safetensors::tensor::{Metadata, TensorInfo, TensorView};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub(super) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// A parsed file: the checked header and the data section it indexes.
pub(super) struct RawFile<'a> {
    path: &'a Path,
    header: Metadata,
    data: &'a [u8],
}

impl<'a> RawFile<'a> {
    pub fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<Self> {
        // read_metadata checks that the offsets tile the data section exactly, so every
        // tensor's byte length matches its shape and dtype from here on.
        let (n, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| Error::file(path, describe(&e, bytes.len())))?;
        Ok(RawFile { path, header, data: &bytes[8 + n..] })
    }

    /// Tensor names, sorted so that results do not depend on hash order.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.header.tensors().into_keys().collect();
        names.sort();
        names
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.info(name)
    }

    pub fn bytes(&self, name: &str) -> Result<&'a [u8]> {
        let info = self.need(name)?;
        let (s, e) = info.data_offsets;
        Ok(&self.data[s..e])
    }

    pub fn need(&self, name: &str) -> Result<&TensorInfo> {
        self.info(name).ok_or_else(|| Error::file(self.path, format!("tensor {name} is missing")))
    }

    /// The values of an F32 tensor; any other dtype is an error naming it.
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        let dtype = self.need(name)?.dtype;
        if dtype != Dtype::F32 {
            return Err(Error::file(self.path, format!("tensor {name} has dtype {dtype}; only F32 is accepted")));
        }
        Ok(decode_f32(self.bytes(name)?))
    }

    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// Little-endian f32 from bytes at any alignment (the data section need not be 4-aligned).
pub(super) fn decode_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Turns the library's terse parse errors into a diagnosis a user can act on.
fn describe(e: &SafeTensorError, len: usize) -> String {
    use SafeTensorError::*;
    let what = match e {
        HeaderTooSmall => format!("only {len} bytes, shorter than a safetensors header"),
        HeaderTooLarge | InvalidHeaderLength => {
            "the header length field does not fit the file: truncated, or not a safetensors file".to_string()
        }
        InvalidHeader(_) | InvalidHeaderDeserialization(_) | JsonError(_) => {
            format!("the header is not valid safetensors JSON ({e})")
        }
        MetadataIncompleteBuffer => {
            format!("the tensor data does not match the file size ({len} bytes): truncated or trailing bytes")
        }
        _ => format!("inconsistent safetensors header ({e})"),
    };
    format!("not a readable safetensors file: {what}")
}

/// An f32 tensor to encode, borrowed from its owner.
pub(super) struct F32Ref<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// Serialises f32 tensors and a string map into safetensors bytes with a canonical header.
pub(super) fn encode(path: &Path, tensors: &[F32Ref<'_>], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let fail = |m: String| Err(Error::file(path, format!("cannot save: {m}")));
    let mut seen = std::collections::BTreeSet::new();
    let mut encoded = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.name.is_empty() || t.name == "__metadata__" {
            return fail(format!("invalid tensor name {:?}", t.name));
        }
        if !seen.insert(t.name) {
            return fail(format!("tensor name {} appears twice", t.name));
        }
        let len = t.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if len != Some(t.data.len()) {
            return fail(format!("tensor {} has shape {:?} but holds {} values", t.name, t.shape, t.data.len()));
        }
        let bytes: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        encoded.push((t.name, t.shape.to_vec(), bytes));
    }
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| Ok((*name, TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, SafeTensorError>>()
        .and_then(|views| {
            let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
            safetensors::serialize(views, (!meta.is_empty()).then_some(meta))
        });
    match views {
        Ok(buf) => Ok(canonical_header(buf)),
        Err(e) => fail(e.to_string()),
    }
}

/// Rewrites the header with sorted keys: safetensors emits the metadata map in hash order,
/// which would make two saves of the same model differ byte for byte.
fn canonical_header(buf: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&buf[8..8 + n]).expect("safetensors wrote valid JSON");
    if let Some(meta) = header.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(meta.take()).expect("metadata is a string map");
        *meta = serde_json::to_value(sorted).expect("a string map serialises");
    }
    let mut text = serde_json::to_vec(&header).expect("a JSON map serialises");
    // Keep the data section 8-aligned, as the safetensors writer does.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + buf.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&buf[8 + n..]);
    out
}
