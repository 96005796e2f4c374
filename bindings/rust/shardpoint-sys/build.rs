// Finds libshardpoint: SHARDPOINT_LIB_DIR wins when set, else pkg-config (`shardpoint.pc`).
//
// The directory found is also published to dependents as DEP_SHARDPOINT_LIB_DIR (this crate has
// `links = "shardpoint"`), so the safe crate can give its tests and examples an rpath.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SHARDPOINT_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // docs.rs-style builds and `cargo check` on a machine without the library still need to get
    // through this script; they never link.
    if env::var_os("SHARDPOINT_SYS_NO_LINK").is_some() {
        println!("cargo:rerun-if-env-changed=SHARDPOINT_SYS_NO_LINK");
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
        Err(e) => {
            panic!(
                "shardpoint-sys: cannot find libshardpoint.\n\
                 Set SHARDPOINT_LIB_DIR to the directory holding libshardpoint.so, or add \
                 PREFIX/lib/pkgconfig to PKG_CONFIG_PATH.\npkg-config said: {e}"
            );
        }
    }
}
