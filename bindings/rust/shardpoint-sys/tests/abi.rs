//! Checks the hand-written declarations against the real header: a small C program prints the
//! size and field offsets of every struct and the value of every constant, and the Rust side
//! must print the same lines. Functions over opaque handles only (the asynchronous saves) have
//! their prototypes checked instead (`C_PROTOTYPES`).

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use shardpoint_sys::*;

fn header_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHARDPOINT_INCLUDE_DIR") {
        return PathBuf::from(dir);
    }
    // The repository's copy is the source of truth (bindings/rust/shardpoint-sys -> capi/include).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../capi/include");
    assert!(
        dir.join("shardpoint.h").exists(),
        "shardpoint.h not found at {}; set SHARDPOINT_INCLUDE_DIR",
        dir.display()
    );
    dir
}

/// (C expression, Rust value) pairs; each becomes one "name=value" line on both sides.
fn expectations() -> Vec<(String, i128)> {
    let mut v: Vec<(String, i128)> = Vec::new();
    macro_rules! size {
        ($t:ident) => {
            v.push((format!("sizeof({})", stringify!($t)), size_of::<$t>() as i128));
        };
    }
    macro_rules! field {
        ($t:ident, $($f:ident),+) => {
            $( v.push((format!("offsetof({}, {})", stringify!($t), stringify!($f)), offset_of!($t, $f) as i128)); )+
        };
    }
    macro_rules! konst {
        ($($c:ident),+) => {
            $( v.push((stringify!($c).to_string(), $c as i128)); )+
        };
    }
    size!(shardpoint_comm_callbacks);
    field!(shardpoint_comm_callbacks, version, rank, size, user, gather, broadcast, destroy);
    size!(shardpoint_save_options);
    field!(shardpoint_save_options, version, flags, compression_level, io_threads, alignment, checkpoint_id, codec, filters);
    size!(shardpoint_load_options);
    field!(shardpoint_load_options, version, flags, io_threads);
    size!(shardpoint_storage_info);
    field!(
        shardpoint_storage_info,
        checkpoint_id,
        save_id,
        library_version,
        created_unix_ns,
        world_size,
        format_major,
        format_minor,
        alignment,
        file_count,
        total_stored_bytes
    );
    size!(shardpoint_entry_info);
    field!(
        shardpoint_entry_info,
        fqn,
        kind,
        dtype,
        ndim,
        reserved,
        shape,
        chunk_count,
        numel,
        nbytes,
        stored_bytes,
        covered_numel
    );
    size!(shardpoint_chunk_info);
    field!(
        shardpoint_chunk_info,
        offsets,
        sizes,
        file,
        file_offset,
        stored_length,
        raw_length,
        crc32,
        transform,
        writer_rank,
        shuffle_width
    );
    konst!(
        SHARDPOINT_VERSION_MAJOR,
        SHARDPOINT_VERSION_MINOR,
        SHARDPOINT_VERSION_PATCH,
        SHARDPOINT_VERSION_NUMBER,
        SHARDPOINT_FORMAT_MAJOR,
        SHARDPOINT_FORMAT_MAJOR_MAX,
        SHARDPOINT_OK,
        SHARDPOINT_EINVAL,
        SHARDPOINT_ENOMEM,
        SHARDPOINT_EIO,
        SHARDPOINT_ENOTFOUND,
        SHARDPOINT_EEXISTS,
        SHARDPOINT_EFORMAT,
        SHARDPOINT_ECHECKSUM,
        SHARDPOINT_ETRUNCATED,
        SHARDPOINT_EVERSION,
        SHARDPOINT_EDTYPE,
        SHARDPOINT_ESHAPE,
        SHARDPOINT_EPATH,
        SHARDPOINT_ECONFLICT,
        SHARDPOINT_ERANK,
        SHARDPOINT_ECOMM,
        SHARDPOINT_EUNCOVERED,
        SHARDPOINT_ESTATE,
        SHARDPOINT_EKIND,
        SHARDPOINT_ERANGE,
        SHARDPOINT_ENOSPC,
        SHARDPOINT_ENOTDURABLE,
        SHARDPOINT_ECANCELED,
        SHARDPOINT_EINTERNAL,
        SHARDPOINT_DTYPE_BOOL,
        SHARDPOINT_DTYPE_U8,
        SHARDPOINT_DTYPE_I8,
        SHARDPOINT_DTYPE_I16,
        SHARDPOINT_DTYPE_I32,
        SHARDPOINT_DTYPE_I64,
        SHARDPOINT_DTYPE_U16,
        SHARDPOINT_DTYPE_U32,
        SHARDPOINT_DTYPE_U64,
        SHARDPOINT_DTYPE_F16,
        SHARDPOINT_DTYPE_BF16,
        SHARDPOINT_DTYPE_F32,
        SHARDPOINT_DTYPE_F64,
        SHARDPOINT_DTYPE_COMPLEX64,
        SHARDPOINT_DTYPE_COMPLEX128,
        SHARDPOINT_DTYPE_F8_E4M3FN,
        SHARDPOINT_DTYPE_F8_E5M2,
        SHARDPOINT_DTYPE_COUNT,
        SHARDPOINT_MAX_NDIM,
        SHARDPOINT_COMM_CALLBACKS_VERSION,
        SHARDPOINT_SAVE_OVERWRITE,
        SHARDPOINT_SAVE_FSYNC,
        SHARDPOINT_SAVE_NO_FSYNC,
        SHARDPOINT_SAVE_ALLOW_PARTIAL,
        SHARDPOINT_SAVE_OPTIONS_VERSION,
        SHARDPOINT_CODEC_DEFAULT,
        SHARDPOINT_CODEC_DEFLATE_STREAM,
        SHARDPOINT_CODEC_ZLIB,
        SHARDPOINT_CODEC_ZSTD,
        SHARDPOINT_FILTER_SHUFFLE,
        SHARDPOINT_PROGRESS_WRITE,
        SHARDPOINT_PROGRESS_READ,
        SHARDPOINT_PROGRESS_VERIFY,
        SHARDPOINT_LOAD_NO_VERIFY,
        SHARDPOINT_LOAD_ALLOW_PARTIAL,
        SHARDPOINT_LOAD_OPTIONS_VERSION,
        SHARDPOINT_ENTRY_TENSOR,
        SHARDPOINT_ENTRY_BYTES,
        SHARDPOINT_TRANSFORM_NONE,
        SHARDPOINT_TRANSFORM_DEFLATE,
        SHARDPOINT_TRANSFORM_ZLIB_BLOCKS,
        SHARDPOINT_TRANSFORM_ZSTD_BLOCKS
    );
    v
}

/// Prototypes of functions whose handle types are opaque (nothing to lay out): the C probe
/// declares each again, which fails to compile ("conflicting types") unless it is the header's
/// prototype, and `rust_prototypes` coerces each Rust declaration to the same type.
const C_PROTOTYPES: &[&str] = &[
    "int shardpoint_staging_new(shardpoint_staging **out, uint64_t capacity);",
    "int shardpoint_staging_capacity(const shardpoint_staging *staging, uint64_t *out_capacity);",
    "void shardpoint_staging_free(shardpoint_staging *staging);",
    "int shardpoint_save_staging_size(const shardpoint_save *save, uint64_t *out_bytes);",
    "int shardpoint_save_commit_async(shardpoint_save *save, shardpoint_staging *staging);",
    "int shardpoint_save_wait(shardpoint_save *save);",
    "int shardpoint_save_poll(shardpoint_save *save, int32_t *out_finished);",
    "int shardpoint_save_cancel(shardpoint_save *save);",
];

/// The Rust declarations of `C_PROTOTYPES`, in order, cast to the function types those say: a
/// declaration of another type does not compile (E0605). Returns how many there are.
#[allow(clippy::type_complexity)]
fn rust_prototypes() -> usize {
    use std::ffi::c_int;
    let f: [*const (); 8] = [
        (shardpoint_staging_new as unsafe extern "C" fn(*mut *mut shardpoint_staging, u64) -> c_int) as *const (),
        (shardpoint_staging_capacity as unsafe extern "C" fn(*const shardpoint_staging, *mut u64) -> c_int)
            as *const (),
        (shardpoint_staging_free as unsafe extern "C" fn(*mut shardpoint_staging)) as *const (),
        (shardpoint_save_staging_size as unsafe extern "C" fn(*const shardpoint_save, *mut u64) -> c_int) as *const (),
        (shardpoint_save_commit_async as unsafe extern "C" fn(*mut shardpoint_save, *mut shardpoint_staging) -> c_int)
            as *const (),
        (shardpoint_save_wait as unsafe extern "C" fn(*mut shardpoint_save) -> c_int) as *const (),
        (shardpoint_save_poll as unsafe extern "C" fn(*mut shardpoint_save, *mut i32) -> c_int) as *const (),
        (shardpoint_save_cancel as unsafe extern "C" fn(*mut shardpoint_save) -> c_int) as *const (),
    ];
    f.len()
}

#[test]
fn layout_and_constants_match_the_header() {
    let expected = expectations();
    let tmp = std::env::temp_dir().join(format!("shardpoint-sys-abi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let src = tmp.join("abi.c");
    let exe = tmp.join("abi");

    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"shardpoint.h\"\n");
    assert_eq!(C_PROTOTYPES.len(), rust_prototypes(), "one Rust prototype per C prototype");
    for p in C_PROTOTYPES {
        c.push_str(p);
        c.push('\n');
    }
    c.push_str("int main(void) {\n");
    for (expr, _) in &expected {
        c.push_str(&format!("    printf(\"%s=%lld\\n\", \"{expr}\", (long long)({expr}));\n"));
    }
    // The _INIT macros must agree with the Rust constants of the same name.
    c.push_str(
        "    { shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;\n\
         printf(\"cb_init=%u %d %d %d\\n\", cb.version, cb.rank, cb.size, cb.user == NULL && cb.gather == NULL && cb.broadcast == NULL && cb.destroy == NULL); }\n\
         { shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;\n\
         printf(\"save_init=%u %u %d %u %llu %d %u %u\\n\", o.version, o.flags, o.compression_level, o.io_threads, (unsigned long long)o.alignment, o.checkpoint_id == NULL, o.codec, o.filters); }\n\
         { shardpoint_load_options o = SHARDPOINT_LOAD_OPTIONS_INIT;\n\
         printf(\"load_init=%u %u %u\\n\", o.version, o.flags, o.io_threads); }\n\
         printf(\"version_string=%s\\n\", SHARDPOINT_VERSION_STRING);\n",
    );
    c.push_str("    return 0;\n}\n");
    std::fs::write(&src, c).unwrap();

    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .arg("-std=c99")
        .arg("-I")
        .arg(header_dir())
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling the ABI probe failed");
    let out = Command::new(&exe).output().expect("run the ABI probe");
    assert!(out.status.success());
    let got = String::from_utf8(out.stdout).unwrap();

    let mut want = String::new();
    for (expr, value) in &expected {
        want.push_str(&format!("{expr}={value}\n"));
    }
    let cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    let cb_null = cb.user.is_null() && cb.gather.is_none() && cb.broadcast.is_none() && cb.destroy.is_none();
    want.push_str(&format!("cb_init={} {} {} {}\n", cb.version, cb.rank, cb.size, cb_null as i32));
    let o = SHARDPOINT_SAVE_OPTIONS_INIT;
    want.push_str(&format!(
        "save_init={} {} {} {} {} {} {} {}\n",
        o.version,
        o.flags,
        o.compression_level,
        o.io_threads,
        o.alignment,
        o.checkpoint_id.is_null() as i32,
        o.codec,
        o.filters
    ));
    let l = SHARDPOINT_LOAD_OPTIONS_INIT;
    want.push_str(&format!("load_init={} {} {}\n", l.version, l.flags, l.io_threads));
    want.push_str(&format!("version_string={SHARDPOINT_VERSION_STRING}\n"));

    let _ = std::fs::remove_dir_all(&tmp);
    for (g, w) in got.lines().zip(want.lines()) {
        assert_eq!(g, w, "C (left) and Rust (right) disagree");
    }
    assert_eq!(got.lines().count(), want.lines().count());
}
