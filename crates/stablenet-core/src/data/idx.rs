//! Reader for the IDX files of MNIST and Fashion-MNIST (MODEL.md section 8): a big-endian
//! header (magic 0x0000_08NN = unsigned bytes, NN dimensions; then NN u32 sizes) followed by
//! the data. Gzip-compressed files (the `.gz` downloads) are read transparently.
//!
//! [`load_image_set`] finds the four standard files of MNIST or Fashion-MNIST in a directory
//! (what `cargo xtask data` stores, or files a user already has).
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Dataset, Split};
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

/// Parses an in-memory image file, plain or gzip-compressed; errors are [`Error::Data`].
pub fn parse_idx_images(bytes: &[u8]) -> Result<IdxImages> {
    gunzip_if_gzip(bytes).and_then(|plain| parse_images(&plain)).map_err(|m| Error::Data(format!("IDX images: {m}")))
}

/// Parses an in-memory label file, plain or gzip-compressed; errors are [`Error::Data`].
pub fn parse_idx_labels(bytes: &[u8]) -> Result<Vec<u8>> {
    gunzip_if_gzip(bytes).and_then(|plain| parse_labels(&plain)).map_err(|m| Error::Data(format!("IDX labels: {m}")))
}

/// The uncompressed content of an IDX file, whether it is stored plain or gzip-compressed
/// (detected by the gzip magic 1f 8b, not by the name); errors name the file.
pub fn read_idx_bytes(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    gunzip(&bytes).map_err(|m| Error::file(path, m))
}

/// Reads an image file (e.g. `train-images-idx3-ubyte` or `train-images-idx3-ubyte.gz`);
/// errors name the file.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    let bytes = read_idx_bytes(path)?;
    parse_images(&bytes).map_err(|m| Error::file(path, format!("IDX images: {m}")))
}

/// Reads a label file (e.g. `train-labels-idx1-ubyte`, plain or gzip); errors name the file.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = read_idx_bytes(path)?;
    parse_labels(&bytes).map_err(|m| Error::file(path, format!("IDX labels: {m}")))
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

fn parse_labels(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    parse(bytes, IDX_LABELS_MAGIC, "labels").map(|(_, data)| data.to_vec())
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses a gzip stream; several members (as `cat a.gz b.gz` makes) are all read.
fn gunzip(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(2));
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("file is gzip-compressed but does not decompress: {e}"))?;
    Ok(out)
}

/// `bytes` decompressed when they start with the gzip magic 1f 8b, else `bytes` as they are.
fn gunzip_if_gzip(bytes: &[u8]) -> std::result::Result<Cow<'_, [u8]>, String> {
    if is_gzip(bytes) { gunzip(bytes).map(Cow::Owned) } else { Ok(Cow::Borrowed(bytes)) }
}

/// The two collections of 28 x 28 grey images in 10 classes that share the IDX file layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageSet {
    Mnist,
    FashionMnist,
}

impl ImageSet {
    pub const ALL: [ImageSet; 2] = [ImageSet::Mnist, ImageSet::FashionMnist];

    /// `mnist` or `fashion-mnist`: the name on the command line and the folder under the data
    /// directory where `cargo xtask data` stores the files.
    pub fn name(self) -> &'static str {
        match self {
            ImageSet::Mnist => "mnist",
            ImageSet::FashionMnist => "fashion-mnist",
        }
    }

    /// The human-readable name, for messages.
    pub fn title(self) -> &'static str {
        match self {
            ImageSet::Mnist => "MNIST",
            ImageSet::FashionMnist => "Fashion-MNIST",
        }
    }

    pub fn classes(self) -> usize {
        10
    }

    /// The meaning of each label.
    pub fn class_names(self) -> [&'static str; 10] {
        match self {
            ImageSet::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            ImageSet::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }
}

impl std::fmt::Display for ImageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ImageSet {
    type Err = Error;
    /// `mnist`, or `fashion-mnist` (also `fashion`, `fashion_mnist`), any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Ok(ImageSet::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashion" => Ok(ImageSet::FashionMnist),
            _ => Err(Error::Config(format!("unknown image set `{s}`: expected mnist or fashion-mnist"))),
        }
    }
}

/// The 60000 training or the 10000 test images of an [`ImageSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageSplit {
    Train,
    Test,
}

impl ImageSplit {
    /// The standard file names, without `.gz`: (images, labels).
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            ImageSplit::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            ImageSplit::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }

    fn title(self) -> &'static str {
        match self {
            ImageSplit::Train => "training",
            ImageSplit::Test => "test",
        }
    }
}

/// The data directory `cargo xtask data` fills by default (relative to the repository root).
pub const DEFAULT_DATA_DIR: &str = "data";

/// The four standard file names of an image set, without `.gz`, in the order train images,
/// train labels, test images, test labels.
pub const IDX_FILE_NAMES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// The directories searched for `set` under `dir`, in order: `dir/<set name>` (the layout
/// `cargo xtask data` writes, e.g. `data/mnist`), then `dir` itself (a folder of IDX files a
/// user already has).
pub fn image_set_dirs(dir: &Path, set: ImageSet) -> [PathBuf; 2] {
    [dir.join(set.name()), dir.to_path_buf()]
}

/// The image and label files of `split` of `set` under `dir`: the first directory of
/// [`image_set_dirs`] that holds the images file (`name` or `name.gz`) must hold the labels
/// file too. When a file is missing the error names the places searched and says how to fetch
/// the data (`cargo xtask data`, or `--data-dir` pointing at existing files).
pub fn find_image_files(dir: &Path, set: ImageSet, split: ImageSplit) -> Result<(PathBuf, PathBuf)> {
    let (images, labels) = split.file_names();
    let in_dir = |d: &Path, name: &str| [d.join(name), d.join(format!("{name}.gz"))].into_iter().find(|p| p.is_file());
    let dirs = image_set_dirs(dir, set);
    let missing = |name: &str, places: String| {
        Error::file(
            dir,
            format!(
                "{} {} data not found: no {name} (or {name}.gz) in {places}. Fetch it with `cargo xtask data` \
                 (stores MNIST and Fashion-MNIST under data/mnist and data/fashion-mnist), or pass \
                 --data-dir DIR pointing at a directory that holds the IDX files you already have (gzip or not)",
                set.title(),
                split.title(),
            ),
        )
    };
    for d in &dirs {
        if let Some(ipath) = in_dir(d, images) {
            let lpath = in_dir(d, labels).ok_or_else(|| missing(labels, d.display().to_string()))?;
            return Ok((ipath, lpath));
        }
    }
    Err(missing(images, format!("{} or {}", dirs[0].display(), dirs[1].display())))
}

/// Loads the training or test split of MNIST or Fashion-MNIST from `dir` (see
/// [`find_image_files`] for where the files are looked for; each may be gzip-compressed):
/// d = rows x cols = 784, 10 classes, pixels scaled to [0, 1].
pub fn load_image_set(dir: &Path, set: ImageSet, split: ImageSplit) -> Result<Dataset> {
    let (images, labels) = find_image_files(dir, set, split)?;
    load_idx_pair(images, labels, set.classes())
}

/// The training and test splits of `set` (see [`load_image_set`]); `val` is the test set.
pub fn load_image_split(dir: &Path, set: ImageSet) -> Result<Split> {
    Ok(Split { train: load_image_set(dir, set, ImageSplit::Train)?, val: load_image_set(dir, set, ImageSplit::Test)? })
}

/// Checks the header against `magic` and the length against the sizes; returns the sizes and
/// the data bytes. Messages say what was found and what was expected.
fn parse<'a>(bytes: &'a [u8], magic: u32, what: &str) -> std::result::Result<(Vec<usize>, &'a [u8]), String> {
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
        // A gzip header with nothing after it: read as gzip, and the message says so.
        let m = err_images(&[0x1f, 0x8b, 8, 0, 0, 0]);
        assert!(m.contains("gzip-compressed but does not decompress"), "{m}");
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

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stablenet-idx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn idx_gzip_round_trip_in_memory_and_on_disk() {
        let (img, lab) = sample_files();
        let (gimg, glab) = (gz(&img), gz(&lab));
        assert_eq!(&gimg[..2], &[0x1f, 0x8b]);
        assert_eq!(parse_idx_images(&gimg).unwrap(), parse_idx_images(&img).unwrap());
        assert_eq!(parse_idx_labels(&glab).unwrap(), vec![7, 0, 9]);
        // Two concatenated members read as one stream (as `cat a.gz b.gz` makes).
        let mut two = gz(&lab[..5]);
        two.extend(gz(&lab[5..]));
        assert_eq!(parse_idx_labels(&two).unwrap(), vec![7, 0, 9]);

        let dir = temp_dir("gz");
        // Compression is detected by content, not by name: plain images, gzip labels named
        // without .gz, and the reverse, all load to the same data set.
        let (ip, lp, gip, glp) = (dir.join("i"), dir.join("l"), dir.join("i.gz"), dir.join("l-no-suffix"));
        std::fs::write(&ip, &img).unwrap();
        std::fs::write(&lp, &lab).unwrap();
        std::fs::write(&gip, &gimg).unwrap();
        std::fs::write(&glp, &glab).unwrap();
        let plain = load_idx_pair(&ip, &lp, 10).unwrap();
        assert_eq!(load_idx_pair(&gip, &glp, 10).unwrap(), plain);
        assert_eq!(load_idx_pair(&ip, &glp, 10).unwrap(), plain);
        assert_eq!(read_idx_bytes(&gip).unwrap(), img);
        assert_eq!(read_idx_bytes(&ip).unwrap(), img);
        // A truncated gzip file: the error names the file and says it is gzip.
        let bad = dir.join("bad.gz");
        std::fs::write(&bad, &gimg[..gimg.len() / 2]).unwrap();
        let m = read_idx_images(&bad).unwrap_err().to_string();
        assert!(m.contains("bad.gz") && m.contains("gzip-compressed but does not decompress"), "{m}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn image_set_loads_from_the_standard_names_gzip_or_not() {
        let (img, lab) = sample_files();
        let dir = temp_dir("set");
        // The layout `cargo xtask data` writes: dir/mnist/<name>, here the training pair gzipped.
        let sub = dir.join("mnist");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("train-images-idx3-ubyte.gz"), gz(&img)).unwrap();
        std::fs::write(sub.join("train-labels-idx1-ubyte.gz"), gz(&lab)).unwrap();
        std::fs::write(sub.join("t10k-images-idx3-ubyte"), &img).unwrap();
        std::fs::write(sub.join("t10k-labels-idx1-ubyte"), &lab).unwrap();
        let train = load_image_set(&dir, ImageSet::Mnist, ImageSplit::Train).unwrap();
        assert_eq!((train.len(), train.d, train.classes), (3, 6, 10));
        assert_eq!(train.labels, vec![7, 0, 9]);
        let split = load_image_split(&dir, ImageSet::Mnist).unwrap();
        assert_eq!((split.train, split.val), (train.clone(), train.clone()));
        // A directory that holds the files itself (--data-dir pointing at existing files).
        assert_eq!(load_image_set(&sub, ImageSet::FashionMnist, ImageSplit::Test).unwrap(), train);
        let (i, l) = find_image_files(&sub, ImageSet::Mnist, ImageSplit::Train).unwrap();
        assert_eq!((i, l), (sub.join("train-images-idx3-ubyte.gz"), sub.join("train-labels-idx1-ubyte.gz")));
        // A plain file wins over its .gz twin.
        std::fs::write(sub.join("t10k-images-idx3-ubyte.gz"), b"not used").unwrap();
        let (i, _) = find_image_files(&dir, ImageSet::Mnist, ImageSplit::Test).unwrap();
        assert_eq!(i, sub.join("t10k-images-idx3-ubyte"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_image_files_say_how_to_fetch_them() {
        let dir = temp_dir("missing");
        let m = load_image_set(&dir, ImageSet::FashionMnist, ImageSplit::Train).unwrap_err().to_string();
        assert!(m.contains("Fashion-MNIST training data not found"), "{m}");
        assert!(m.contains("train-images-idx3-ubyte (or train-images-idx3-ubyte.gz)"), "{m}");
        assert!(m.contains(&dir.join("fashion-mnist").display().to_string()), "{m}");
        assert!(m.contains("cargo xtask data") && m.contains("--data-dir"), "{m}");
        // Images without their labels: the message names the labels file and the directory.
        let (img, _) = sample_files();
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), &img).unwrap();
        let m = load_image_set(&dir, ImageSet::Mnist, ImageSplit::Test).unwrap_err().to_string();
        assert!(m.contains("MNIST test data not found: no t10k-labels-idx1-ubyte"), "{m}");
        assert!(m.contains("cargo xtask data"), "{m}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn image_set_names_parse() {
        for set in ImageSet::ALL {
            assert_eq!(set.name().parse::<ImageSet>().unwrap(), set);
            assert_eq!(set.classes(), set.class_names().len());
        }
        assert_eq!("fashion".parse::<ImageSet>().unwrap(), ImageSet::FashionMnist);
        assert_eq!("MNIST".parse::<ImageSet>().unwrap(), ImageSet::Mnist);
        let m = "cifar".parse::<ImageSet>().unwrap_err().to_string();
        assert!(m.contains("cifar") && m.contains("mnist or fashion-mnist"), "{m}");
    }
}
