//! Reader for the IDX files of MNIST and Fashion-MNIST (MODEL.md section 8): a big-endian
//! header (magic 0x0000_08NN = unsigned bytes, NN dimensions; then NN u32 sizes) followed by
//! the data. Plain files only (gunzip the downloads first).
use std::path::Path;

use super::Dataset;
use crate::error::{Error, Result};

/// Magic of an image file: unsigned bytes (0x08), 3 dimensions (n, rows, cols).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of a label file: unsigned bytes (0x08), 1 dimension (n).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The images of an IDX file: `pixels` is `n x rows x cols`, row-major, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Parses an in-memory image file; errors are [`Error::Data`].
pub fn parse_idx_images(bytes: &[u8]) -> Result<IdxImages> {
    parse_images(bytes).map_err(|m| Error::Data(format!("IDX images: {m}")))
}

/// Parses an in-memory label file; errors are [`Error::Data`].
pub fn parse_idx_labels(bytes: &[u8]) -> Result<Vec<u8>> {
    parse(bytes, IDX_LABELS_MAGIC, "labels")
        .map(|(_, data)| data.to_vec())
        .map_err(|m| Error::Data(format!("IDX labels: {m}")))
}

/// Reads an image file (e.g. `train-images-idx3-ubyte`); errors name the file.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_images(&bytes).map_err(|m| Error::file(path, format!("IDX images: {m}")))
}

/// Reads a label file (e.g. `train-labels-idx1-ubyte`); errors name the file.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, IDX_LABELS_MAGIC, "labels")
        .map(|(_, data)| data.to_vec())
        .map_err(|m| Error::file(path, format!("IDX labels: {m}")))
}

/// Reads an image file and its label file into a [`Dataset`] with d = rows * cols, pixels
/// scaled to [0, 1] (p / 255). `classes` is 10 for MNIST and Fashion-MNIST.
pub fn load_idx_pair(images: impl AsRef<Path>, labels: impl AsRef<Path>, classes: usize) -> Result<Dataset> {
    let (ipath, lpath) = (images.as_ref(), labels.as_ref());
    let img = read_idx_images(ipath)?;
    let lab = read_idx_labels(lpath)?;
    idx_dataset(&img, &lab, classes).map_err(|e| match e {
        Error::Data(m) => Error::file(lpath, format!("{m} (images file {})", ipath.display())),
        e => e,
    })
}

/// The [`Dataset`] of parsed images and labels (see [`load_idx_pair`]); checks that the counts
/// agree and every label is below `classes`.
pub fn idx_dataset(images: &IdxImages, labels: &[u8], classes: usize) -> Result<Dataset> {
    if labels.len() != images.n {
        return Err(Error::Data(format!("count mismatch: {} labels for {} images", labels.len(), images.n)));
    }
    if let Some(i) = labels.iter().position(|&l| usize::from(l) >= classes) {
        return Err(Error::Data(format!("label value {} of item {i} is >= classes = {classes}", labels[i])));
    }
    Ok(Dataset {
        x: images.pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels: labels.iter().map(|&l| u32::from(l)).collect(),
        d: images.rows * images.cols,
        classes,
    })
}

fn parse_images(bytes: &[u8]) -> std::result::Result<IdxImages, String> {
    let (dims, data) = parse(bytes, IDX_IMAGES_MAGIC, "images")?;
    Ok(IdxImages { n: dims[0], rows: dims[1], cols: dims[2], pixels: data.to_vec() })
}

/// Checks the header against `magic` and the length against the sizes; returns the sizes and
/// the data bytes. Messages say what was found and what was expected.
fn parse<'a>(bytes: &'a [u8], magic: u32, what: &str) -> std::result::Result<(Vec<usize>, &'a [u8]), String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err("file is gzip-compressed; gunzip it first".into());
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < 4 {
        return Err(format!("truncated file: expected at least {header} header bytes, found {}", bytes.len()));
    }
    let found = be_u32(&bytes[..4]);
    if found != magic {
        let why = if found >> 8 != magic >> 8 {
            format!("data type 0x{:02x} is not unsigned byte (0x08)", (found >> 8) & 0xff)
        } else {
            format!("wrong number of dimensions: {} instead of {ndim}", found & 0xff)
        };
        return Err(format!("bad magic number 0x{found:08x}, expected 0x{magic:08x} for {what} ({why})"));
    }
    if bytes.len() < header {
        return Err(format!("truncated file: expected {header} header bytes, found {}", bytes.len()));
    }
    let dims: Vec<usize> = bytes[4..header].chunks_exact(4).map(|c| be_u32(c) as usize).collect();
    if dims.contains(&0) {
        return Err(format!("zero-sized dimension in sizes {dims:?}"));
    }
    let body = dims
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| format!("sizes {dims:?} are too large"))?;
    let expected = header as u128 + body as u128;
    let got = bytes.len() as u128;
    if got < expected {
        return Err(format!("truncated file: sizes {dims:?} need {expected} bytes, found {got}"));
    }
    if got > expected {
        return Err(format!(
            "{} trailing bytes after the {expected} bytes that sizes {dims:?} describe",
            got - expected
        ));
    }
    Ok((dims, &bytes[header..]))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    /// Three 2 x 3 images with pixels 0, 1, ... and their labels.
    fn sample_files() -> (Vec<u8>, Vec<u8>) {
        let mut img = header(IDX_IMAGES_MAGIC, &[3, 2, 3]);
        img.extend((0..18u8).map(|p| p * 15));
        let mut lab = header(IDX_LABELS_MAGIC, &[3]);
        lab.extend([7, 0, 9]);
        (img, lab)
    }

    fn err_images(bytes: &[u8]) -> String {
        parse_idx_images(bytes).unwrap_err().to_string()
    }

    #[test]
    fn idx_round_trip_from_bytes() {
        let (img, lab) = sample_files();
        let images = parse_idx_images(&img).unwrap();
        assert_eq!((images.n, images.rows, images.cols), (3, 2, 3));
        assert_eq!(images.pixels, img[16..]);
        let labels = parse_idx_labels(&lab).unwrap();
        assert_eq!(labels, vec![7, 0, 9]);
        let ds = idx_dataset(&images, &labels, 10).unwrap();
        ds.validate().unwrap();
        assert_eq!((ds.len(), ds.d, ds.classes), (3, 6, 10));
        assert_eq!(ds.labels, vec![7, 0, 9]);
        assert_eq!(ds.sample(0)[1], 15.0 / 255.0);
        assert_eq!(ds.sample(2)[5], 1.0); // 17 * 15 = 255
        assert_eq!(ds.x[0], 0.0);
    }

    #[test]
    fn idx_rejects_wrong_magic_saying_found_and_expected() {
        let (img, lab) = sample_files();
        // A labels file given as images: type is right, dimension count is not.
        let m = err_images(&lab);
        assert!(m.contains("0x00000801") && m.contains("0x00000803"), "{m}");
        assert!(m.contains("wrong number of dimensions: 1 instead of 3"), "{m}");
        let m = parse_idx_labels(&img).unwrap_err().to_string();
        assert!(m.contains("bad magic number 0x00000803, expected 0x00000801"), "{m}");
        // Float data (type 0x0d).
        let mut f = img.clone();
        f[2] = 0x0d;
        let m = err_images(&f);
        assert!(m.contains("bad magic") && m.contains("not unsigned byte"), "{m}");
        // Zero dimensions.
        let m = err_images(&header(0x0000_0800, &[]));
        assert!(m.contains("wrong number of dimensions: 0 instead of 3"), "{m}");
        let m = err_images(&[0x1f, 0x8b, 8, 0, 0, 0]);
        assert!(m.contains("gzip"), "{m}");
    }

    #[test]
    fn idx_rejects_zero_sizes_truncation_and_trailing_bytes() {
        let m = err_images(&header(IDX_IMAGES_MAGIC, &[2, 0, 28]));
        assert!(m.contains("zero-sized dimension"), "{m}");
        let (img, lab) = sample_files();
        let m = err_images(&img[..img.len() - 1]);
        assert!(m.contains("truncated") && m.contains("need 34 bytes, found 33"), "{m}");
        let m = err_images(&img[..10]);
        assert!(m.contains("truncated") && m.contains("expected 16 header bytes, found 10"), "{m}");
        let m = err_images(&img[..2]);
        assert!(m.contains("truncated"), "{m}");
        let mut long = lab.clone();
        long.extend([1, 2]);
        let m = parse_idx_labels(&long).unwrap_err().to_string();
        assert!(m.contains("2 trailing bytes"), "{m}");
    }

    #[test]
    fn idx_rejects_bad_labels_and_count_mismatch() {
        let (img, _) = sample_files();
        let images = parse_idx_images(&img).unwrap();
        let m = idx_dataset(&images, &[1, 10, 2], 10).unwrap_err().to_string();
        assert!(m.contains("label value 10 of item 1 is >= classes = 10"), "{m}");
        let m = idx_dataset(&images, &[1, 2], 10).unwrap_err().to_string();
        assert!(m.contains("count mismatch: 2 labels for 3 images"), "{m}");
    }

    #[test]
    fn idx_files_load_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("stablenet-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (img, lab) = sample_files();
        let (ip, lp) = (dir.join("img-idx3"), dir.join("lab-idx1"));
        std::fs::write(&ip, &img).unwrap();
        std::fs::write(&lp, &lab).unwrap();
        let ds = load_idx_pair(&ip, &lp, 10).unwrap();
        assert_eq!(ds, idx_dataset(&parse_idx_images(&img).unwrap(), &[7, 0, 9], 10).unwrap());
        // Wrong files: the message names the file and the problem.
        let m = load_idx_pair(&lp, &lp, 10).unwrap_err().to_string();
        assert!(m.contains("lab-idx1") && m.contains("bad magic"), "{m}");
        let m = load_idx_pair(&ip, &lp, 5).unwrap_err().to_string();
        assert!(m.contains("lab-idx1") && m.contains("img-idx3") && m.contains(">= classes"), "{m}");
        let missing = dir.join("no-such-file");
        let m = read_idx_labels(&missing).unwrap_err().to_string();
        assert!(m.contains("no-such-file"), "{m}");
        let m = load_idx_pair(&missing, &lp, 10).unwrap_err().to_string();
        assert!(m.contains("no-such-file"), "{m}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
