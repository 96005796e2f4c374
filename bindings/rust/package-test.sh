#!/usr/bin/env bash
# The Rust crates as a new user gets them, with no libshardpoint installed anywhere visible:
#
#  1. `cargo package --workspace`: both crates package (the sys crate carries the C++ source) and
#     the packaged sources build (cargo verifies them against each other);
#  2. a documentation build with DOCS_RS=1 links nothing and succeeds without the library;
#  3. a fresh `cargo new` project outside the repository that depends on `shardpoint` by path
#     with the `bundled` feature builds and runs a round trip, with no PKG_CONFIG_PATH to
#     shardpoint, no SHARDPOINT_LIB_DIR and no LD_LIBRARY_PATH; its binary needs no libshardpoint
#     at run time (ldd).
#
#   bindings/rust/package-test.sh        (work in $SHARDPOINT_RUST_PACKAGE_DIR, default a temporary directory)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${SHARDPOINT_RUST_PACKAGE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/shardpoint-rust-package.XXXXXX")}
mkdir -p "$WORK"
unset SHARDPOINT_LIB_DIR SHARDPOINT_SYS_NO_LINK LD_LIBRARY_PATH PKG_CONFIG_PATH
export CARGO_TARGET_DIR="$WORK/target"

echo "--- cargo package --workspace"
# The verification builds `shardpoint` against shardpoint-sys from a registry cargo makes in the
# target directory, and cargo extracts a crate of that registry into $CARGO_HOME/registry/src
# once per registry path and version, never again: in a reused work directory it would build
# against the shardpoint-sys of an earlier run. So the packaging gets a target directory named
# after the sources it packages (native/ followed into the library's source).
key=$(cd "$HERE" && find -L shardpoint-sys shardpoint Cargo.toml Cargo.lock -type f -print0 | sort -z \
    | xargs -0 sha256sum | sha256sum | cut -c1-16)
packaging=$WORK/package-$key
find "$WORK" -mindepth 1 -maxdepth 1 -name 'package-*' ! -name "package-$key" -type d -exec rm -rf {} +
(cd "$HERE" && cargo package --workspace --allow-dirty --all-features --target-dir "$packaging" \
    >"$WORK/package.log" 2>&1) || { tail -n 40 "$WORK/package.log"; exit 1; }
crate=$(ls "$packaging"/package/shardpoint-sys-*.crate)
tar -tzf "$crate" >"$WORK/sys.list"
grep -q '/native/cpp/src/checkpoint.cpp$' "$WORK/sys.list" || { echo "shardpoint-sys lacks the C++ source"; exit 1; }
grep -q '/native/capi/include/shardpoint.h$' "$WORK/sys.list" || { echo "shardpoint-sys lacks the C ABI header"; exit 1; }
echo "packaged: $(cd "$packaging/package" && ls ./*.crate | tr '\n' ' ')"

echo "--- docs build with DOCS_RS=1 (no library)"
(cd "$HERE" && DOCS_RS=1 cargo doc --no-deps -p shardpoint-sys -p shardpoint >"$WORK/doc.log" 2>&1) \
    || { tail -n 40 "$WORK/doc.log"; exit 1; }

echo "--- a new project: shardpoint by path, feature bundled"
app=$WORK/app
rm -rf "$app"
(cd "$WORK" && cargo new --quiet app)
# README's dependency line, exactly, with its checkout path made absolute.
dependency=$(python3 - "$HERE/../../README.md" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
block = re.search(r"^```toml\n(.*?)^```", text[text.index("### Rust"):], re.S | re.M).group(1)
print(next(line for line in block.splitlines() if line.startswith("shardpoint =")))
PY
)
[ "$dependency" = 'shardpoint = { path = "bindings/rust/shardpoint", features = ["bundled"] }' ] \
    || { echo "README's Rust dependency changed: $dependency"; exit 1; }
echo "${dependency/\"bindings\/rust\/shardpoint\"/\"$HERE/shardpoint\"}" >>"$app/Cargo.toml"
grep -q "path = \"$HERE/shardpoint\"" "$app/Cargo.toml" || { echo "could not point README's line at the checkout"; exit 1; }
cat >"$app/src/main.rs" <<'EOF'
use shardpoint::{Load, Reader, Save, SaveOptions};

fn main() -> shardpoint::Result<()> {
    let dir = std::env::args().nth(1).expect("usage: app DIR");
    let w: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
    let mut save = Save::new(&dir, None, &SaveOptions::new())?;
    save.add_tensor("w", &[4, 6], &[0, 0], &[4, 6], &w)?;
    save.commit()?;

    let reader = Reader::open(&dir)?;
    let mut middle = vec![0f32; 6];
    let mut load = Load::new(&reader, None)?;
    load.add_tensor("w", &[1, 0], &[1, 6], &mut middle)?;
    load.execute()?;
    assert_eq!(middle, w[6..12]);
    println!("round trip ok with libshardpoint {}", shardpoint::version());
    Ok(())
}
EOF
(cd "$app" && cargo build --quiet --release >"$WORK/app.log" 2>&1) || { tail -n 40 "$WORK/app.log"; exit 1; }
bin=$WORK/target/release/app
if ldd "$bin" | grep -q libshardpoint; then
    echo "the binary still needs libshardpoint at run time:"; ldd "$bin"; exit 1
fi
# A reused work directory (ctest's) holds the previous run's checkpoint, which the app would refuse
# to overwrite.
rm -rf "$WORK/ckpt"
env -i "$bin" "$WORK/ckpt"
echo "package-test.sh: all passed"
