#!/usr/bin/env bash
# Fills .device/ (git-ignored through .git/info/exclude) with what benches/device/run.sh needs
# on a GPU machine that has no Rust and no network: the two binaries (profile `device`: LTO,
# no symbols) and MNIST and Fashion-MNIST (from data/, `cargo xtask data`), all as xz so that
# they stay under an upload limit of 64 MiB with the checkout, and Debian's Vulkan loader with the GL dispatch libraries (NVIDIA's ICD lives in libGLX_nvidia).
set -eu
cd "$(dirname "$0")/../.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo /.device/ >> .git/info/exclude
cargo build --profile device -p xtask -p stablenet-cli
mkdir -p .device/bin /tmp/amd64/partial
for b in xtask stablenet; do xz -9 -c "target/device/$b" > ".device/bin/$b.xz"; done
# Which commit the binaries are (run.sh prints it): a pack older than HEAD is packed again.
git describe --always --dirty > .device/bin/COMMIT
# The data sets only feed the image runs; ONLY=bench needs none (a fresh checkout has no data/
# until `cargo xtask data`).
shopt -s nullglob
data=(data/mnist/* data/fashion-mnist/*)
[ ${#data[@]} -gt 0 ] || echo "pack: no data/ (cargo xtask data fetches it): the image runs will lack it" >&2
for f in "${data[@]}"; do
    [ -f ".device/$f.xz" ] || { mkdir -p ".device/$(dirname "$f")"; xz -9e -c "$f" > ".device/$f.xz"; }
done
debs=(.device/libvulkan1_*.deb)
if [ ${#debs[@]} -eq 0 ]; then
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update -qq
    (cd .device && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .device
