// Finds or builds libshardpoint.
//
// - Feature `bundled` (the convention of libgit2-sys and zstd-sys): builds the library from the
//   source carried in this crate (native/, the library's own CMake project) with the `cmake`
//   crate and links it statically, so binaries run without any library installed or
//   LD_LIBRARY_PATH. Cap'n Proto, zlib and zstd (and the C++ runtime) are linked from the system,
//   found with pkg-config: Debian's capnproto, libcapnp-dev, zlib1g-dev, libzstd-dev.
// - Otherwise: SHARDPOINT_LIB_DIR when set, else pkg-config (`shardpoint.pc`), and the shared
//   library. The directory found is published to dependents as DEP_SHARDPOINT_LIB_DIR (this crate
//   has `links = "shardpoint"`), so the safe crate can give its tests and examples an rpath.
// - Documentation builds (DOCS_RS, as docs.rs sets it, or SHARDPOINT_SYS_NO_LINK) link nothing.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SHARDPOINT_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    println!("cargo:rerun-if-env-changed=SHARDPOINT_SYS_NO_LINK");

    if env::var_os("DOCS_RS").is_some() || env::var_os("SHARDPOINT_SYS_NO_LINK").is_some() {
        return; // docs and `cargo check` without the library: nothing is linked
    }
    if env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        bundled();
        return;
    }

    if let Some(dir) = env::var_os("SHARDPOINT_LIB_DIR") {
        let dir = PathBuf::from(dir);
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=dylib=shardpoint");
        println!("cargo:lib_dir={}", dir.display());
        return;
    }

    match pkg_config::Config::new().atleast_version("0.1").probe("shardpoint") {
        Ok(lib) => {
            if let Some(dir) = lib.link_paths.first() {
                println!("cargo:lib_dir={}", dir.display());
            }
        }
        Err(e) => fail(&format!(
            "cannot find libshardpoint.\n\
             Enable the `bundled` feature to build it from this crate's source, set SHARDPOINT_LIB_DIR to \
             the directory holding libshardpoint.so, or add PREFIX/lib/pkgconfig to PKG_CONFIG_PATH.\n\
             pkg-config said: {e}"
        )),
    }
}

#[cfg(feature = "bundled")]
fn bundled() {
    let native = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("native");
    if !native.join("CMakeLists.txt").exists() {
        fail(&format!("the bundled source is missing: {}", native.display()));
    }
    println!("cargo:rerun-if-changed={}", native.display());
    let out = cmake::Config::new(&native)
        .profile("Release")
        .define("SHARDPOINT_STATIC_LIBRARY", "ON")
        .define("SHARDPOINT_BUILD_TESTS", "OFF")
        .define("SHARDPOINT_BUILD_BENCH", "OFF")
        .define("SHARDPOINT_BINDING_TESTS", "OFF")
        .define("SHARDPOINT_WITH_MPI", "OFF")
        .build_target("shardpoint_static")
        .build();
    // The library project puts every archive in its build tree's lib/.
    println!("cargo:rustc-link-search=native={}", out.join("build").join("lib").display());
    println!("cargo:rustc-link-lib=static=shardpoint");
    println!("cargo:rustc-link-lib=static=shardpoint_core");
    for dependency in ["capnp", "zlib", "libzstd"] {
        if let Err(e) = pkg_config::Config::new().probe(dependency) {
            fail(&format!("the bundled build links {dependency} from the system; pkg-config said: {e}"));
        }
    }
    println!("cargo:rustc-link-lib=dylib=stdc++");
}

#[cfg(not(feature = "bundled"))]
fn bundled() {
    unreachable!("CARGO_FEATURE_BUNDLED is set only with the feature");
}

// A build script reports a missing dependency by failing, with what to do, not by panicking.
fn fail(message: &str) -> ! {
    eprintln!("shardpoint-sys: {message}");
    println!("cargo:warning=shardpoint-sys: {}", message.lines().next().unwrap_or(message));
    std::process::exit(1);
}
