// Gives this crate's tests and examples (e.g. the golden program) an rpath to the library that
// shardpoint-sys linked, so they run without LD_LIBRARY_PATH. The library crate itself gets none:
// applications choose how to find libshardpoint.so.0.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_SHARDPOINT_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_SHARDPOINT_LIB_DIR") {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
        println!("cargo:rustc-link-arg-examples=-Wl,-rpath,{dir}");
    }
}
