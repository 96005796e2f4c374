//! Raw declarations of the shardpoint C ABI, written by hand from `capi/include/shardpoint.h`.
//!
//! Every item here mirrors the header one to one (names, types, values, field order). The header
//! is the contract: read its comments for ownership, thread rules and error codes. The safe API
//! lives in the `shardpoint` crate.
#![allow(non_camel_case_types)]
#![no_std]

use core::ffi::{c_char, c_int, c_void};

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

pub const SHARDPOINT_VERSION_MAJOR: u32 = 0;
pub const SHARDPOINT_VERSION_MINOR: u32 = 1;
pub const SHARDPOINT_VERSION_PATCH: u32 = 0;
pub const SHARDPOINT_VERSION_NUMBER: u32 =
    SHARDPOINT_VERSION_MAJOR * 10000 + SHARDPOINT_VERSION_MINOR * 100 + SHARDPOINT_VERSION_PATCH;
pub const SHARDPOINT_VERSION_STRING: &str = "0.1.0";
pub const SHARDPOINT_FORMAT_MAJOR: u32 = 1;
pub const SHARDPOINT_FORMAT_MAJOR_MAX: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Errors (enum shardpoint_error)
// ---------------------------------------------------------------------------------------------

pub type shardpoint_error = c_int;
pub const SHARDPOINT_OK: shardpoint_error = 0;
pub const SHARDPOINT_EINVAL: shardpoint_error = -1;
pub const SHARDPOINT_ENOMEM: shardpoint_error = -2;
pub const SHARDPOINT_EIO: shardpoint_error = -3;
pub const SHARDPOINT_ENOTFOUND: shardpoint_error = -4;
pub const SHARDPOINT_EEXISTS: shardpoint_error = -5;
pub const SHARDPOINT_EFORMAT: shardpoint_error = -6;
pub const SHARDPOINT_ECHECKSUM: shardpoint_error = -7;
pub const SHARDPOINT_ETRUNCATED: shardpoint_error = -8;
pub const SHARDPOINT_EVERSION: shardpoint_error = -9;
pub const SHARDPOINT_EDTYPE: shardpoint_error = -10;
pub const SHARDPOINT_ESHAPE: shardpoint_error = -11;
pub const SHARDPOINT_EPATH: shardpoint_error = -12;
pub const SHARDPOINT_ECONFLICT: shardpoint_error = -13;
pub const SHARDPOINT_ERANK: shardpoint_error = -14;
pub const SHARDPOINT_ECOMM: shardpoint_error = -15;
pub const SHARDPOINT_EUNCOVERED: shardpoint_error = -16;
pub const SHARDPOINT_ESTATE: shardpoint_error = -17;
pub const SHARDPOINT_EKIND: shardpoint_error = -18;
pub const SHARDPOINT_ERANGE: shardpoint_error = -19;
pub const SHARDPOINT_ENOSPC: shardpoint_error = -20;
pub const SHARDPOINT_ENOTDURABLE: shardpoint_error = -21;
pub const SHARDPOINT_ECANCELED: shardpoint_error = -22;
pub const SHARDPOINT_EINTERNAL: shardpoint_error = -99;

// ---------------------------------------------------------------------------------------------
// Dtypes (enum shardpoint_dtype)
// ---------------------------------------------------------------------------------------------

pub type shardpoint_dtype = c_int;
pub const SHARDPOINT_DTYPE_BOOL: shardpoint_dtype = 0;
pub const SHARDPOINT_DTYPE_U8: shardpoint_dtype = 1;
pub const SHARDPOINT_DTYPE_I8: shardpoint_dtype = 2;
pub const SHARDPOINT_DTYPE_I16: shardpoint_dtype = 3;
pub const SHARDPOINT_DTYPE_I32: shardpoint_dtype = 4;
pub const SHARDPOINT_DTYPE_I64: shardpoint_dtype = 5;
pub const SHARDPOINT_DTYPE_U16: shardpoint_dtype = 6;
pub const SHARDPOINT_DTYPE_U32: shardpoint_dtype = 7;
pub const SHARDPOINT_DTYPE_U64: shardpoint_dtype = 8;
pub const SHARDPOINT_DTYPE_F16: shardpoint_dtype = 9;
pub const SHARDPOINT_DTYPE_BF16: shardpoint_dtype = 10;
pub const SHARDPOINT_DTYPE_F32: shardpoint_dtype = 11;
pub const SHARDPOINT_DTYPE_F64: shardpoint_dtype = 12;
pub const SHARDPOINT_DTYPE_COMPLEX64: shardpoint_dtype = 13;
pub const SHARDPOINT_DTYPE_COMPLEX128: shardpoint_dtype = 14;
pub const SHARDPOINT_DTYPE_F8_E4M3FN: shardpoint_dtype = 15;
pub const SHARDPOINT_DTYPE_F8_E5M2: shardpoint_dtype = 16;

pub const SHARDPOINT_DTYPE_COUNT: u32 = 17;
pub const SHARDPOINT_MAX_NDIM: u32 = 32;

// ---------------------------------------------------------------------------------------------
// Opaque handles
// ---------------------------------------------------------------------------------------------

/// Opaque `shardpoint_comm`.
#[repr(C)]
pub struct shardpoint_comm {
    _private: [u8; 0],
    // Not Send/Sync/Unpin: the header's thread rules are enforced by the safe crate.
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

/// Opaque `shardpoint_save`.
#[repr(C)]
pub struct shardpoint_save {
    _private: [u8; 0],
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

/// Opaque `shardpoint_staging`: the host memory of asynchronous saves.
#[repr(C)]
pub struct shardpoint_staging {
    _private: [u8; 0],
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

/// Opaque `shardpoint_reader`.
#[repr(C)]
pub struct shardpoint_reader {
    _private: [u8; 0],
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

/// Opaque `shardpoint_load`.
#[repr(C)]
pub struct shardpoint_load {
    _private: [u8; 0],
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

// ---------------------------------------------------------------------------------------------
// Communicator callbacks
// ---------------------------------------------------------------------------------------------

pub const SHARDPOINT_COMM_CALLBACKS_VERSION: u32 = 1;

pub type shardpoint_gather_fn =
    unsafe extern "C" fn(user: *mut c_void, send: *const c_void, len: u64, recv: *mut c_void) -> c_int;
pub type shardpoint_broadcast_fn = unsafe extern "C" fn(user: *mut c_void, buf: *mut c_void, len: u64) -> c_int;
pub type shardpoint_destroy_fn = unsafe extern "C" fn(user: *mut c_void);

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_comm_callbacks {
    pub version: u32,
    pub rank: i32,
    pub size: i32,
    pub user: *mut c_void,
    pub gather: Option<shardpoint_gather_fn>,
    pub broadcast: Option<shardpoint_broadcast_fn>,
    pub destroy: Option<shardpoint_destroy_fn>,
}

/// The value of `SHARDPOINT_COMM_CALLBACKS_INIT`.
pub const SHARDPOINT_COMM_CALLBACKS_INIT: shardpoint_comm_callbacks = shardpoint_comm_callbacks {
    version: SHARDPOINT_COMM_CALLBACKS_VERSION,
    rank: 0,
    size: 1,
    user: core::ptr::null_mut(),
    gather: None,
    broadcast: None,
    destroy: None,
};

// ---------------------------------------------------------------------------------------------
// Save options
// ---------------------------------------------------------------------------------------------

pub const SHARDPOINT_SAVE_OVERWRITE: u32 = 0x1;
/// Accepted for compatibility; saves are durable by default.
pub const SHARDPOINT_SAVE_FSYNC: u32 = 0x2;
/// Skip every fsync (not safe against a power loss or a kernel crash).
pub const SHARDPOINT_SAVE_NO_FSYNC: u32 = 0x4;
/// Accept tensors whose saved chunks leave part of the global shape uncovered.
pub const SHARDPOINT_SAVE_ALLOW_PARTIAL: u32 = 0x8;
pub const SHARDPOINT_SAVE_OPTIONS_VERSION: u32 = 2;
pub const SHARDPOINT_CODEC_DEFAULT: u32 = 0;
pub const SHARDPOINT_CODEC_DEFLATE_STREAM: u32 = 1;
pub const SHARDPOINT_CODEC_ZLIB: u32 = 2;
pub const SHARDPOINT_CODEC_ZSTD: u32 = 3;
pub const SHARDPOINT_FILTER_SHUFFLE: u32 = 0x1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_save_options {
    pub version: u32,
    pub flags: u32,
    pub compression_level: i32,
    pub io_threads: u32,
    pub alignment: u64,
    pub checkpoint_id: *const c_char,
    pub codec: u32,
    pub filters: u32,
}

/// One chunk of `shardpoint_save_add_tensors` (NULL offsets: zeros; NULL sizes: the global shape).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_tensor_chunk {
    pub fqn: *const c_char,
    pub dtype: i32,
    pub ndim: u32,
    pub global_shape: *const u64,
    pub chunk_offsets: *const u64,
    pub chunk_sizes: *const u64,
    pub data: *const c_void,
    pub strides: *const i64,
}

/// One request of `shardpoint_load_add_tensors` (NULL sizes: the whole saved tensor).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_tensor_request {
    pub fqn: *const c_char,
    pub dtype: i32,
    pub ndim: u32,
    pub box_offsets: *const u64,
    pub box_sizes: *const u64,
    pub dst: *mut c_void,
    pub strides: *const i64,
}

/// The value of `SHARDPOINT_SAVE_OPTIONS_INIT`.
pub const SHARDPOINT_SAVE_OPTIONS_INIT: shardpoint_save_options = shardpoint_save_options {
    version: SHARDPOINT_SAVE_OPTIONS_VERSION,
    flags: 0,
    compression_level: 0,
    io_threads: 0,
    alignment: 0,
    checkpoint_id: core::ptr::null(),
    codec: 0,
    filters: 0,
};

// ---------------------------------------------------------------------------------------------
// Progress and cancellation
// ---------------------------------------------------------------------------------------------

pub type shardpoint_progress_phase = c_int;
pub const SHARDPOINT_PROGRESS_WRITE: shardpoint_progress_phase = 1;
pub const SHARDPOINT_PROGRESS_READ: shardpoint_progress_phase = 2;
pub const SHARDPOINT_PROGRESS_VERIFY: shardpoint_progress_phase = 3;

/// `done` of `total` bytes of `phase` are through; called on the thread of the operation. Return
/// 0 to go on, anything else to cancel (the operation then fails with `SHARDPOINT_ECANCELED`).
pub type shardpoint_progress_callback =
    unsafe extern "C" fn(user: *mut c_void, phase: i32, done: u64, total: u64) -> c_int;

// ---------------------------------------------------------------------------------------------
// Load options
// ---------------------------------------------------------------------------------------------

pub const SHARDPOINT_LOAD_NO_VERIFY: u32 = 0x1;
pub const SHARDPOINT_LOAD_ALLOW_PARTIAL: u32 = 0x2;
pub const SHARDPOINT_LOAD_OPTIONS_VERSION: u32 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_load_options {
    pub version: u32,
    pub flags: u32,
    pub io_threads: u32,
}

/// The value of `SHARDPOINT_LOAD_OPTIONS_INIT`.
pub const SHARDPOINT_LOAD_OPTIONS_INIT: shardpoint_load_options =
    shardpoint_load_options { version: SHARDPOINT_LOAD_OPTIONS_VERSION, flags: 0, io_threads: 0 };

// ---------------------------------------------------------------------------------------------
// Reader info structs
// ---------------------------------------------------------------------------------------------

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_storage_info {
    pub checkpoint_id: *const c_char,
    pub save_id: *const c_char,
    pub library_version: *const c_char,
    pub created_unix_ns: i64,
    pub world_size: i32,
    pub format_major: u32,
    pub format_minor: u32,
    pub alignment: u32,
    pub file_count: u64,
    pub total_stored_bytes: u64,
}

pub const SHARDPOINT_ENTRY_TENSOR: i32 = 0;
pub const SHARDPOINT_ENTRY_BYTES: i32 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_entry_info {
    pub fqn: *const c_char,
    pub kind: i32,
    pub dtype: i32,
    pub ndim: u32,
    pub reserved: u32,
    pub shape: *const u64,
    pub chunk_count: u64,
    pub numel: u64,
    pub nbytes: u64,
    pub stored_bytes: u64,
    pub covered_numel: u64,
}

pub const SHARDPOINT_TRANSFORM_NONE: i32 = 0;
pub const SHARDPOINT_TRANSFORM_DEFLATE: i32 = 1;
pub const SHARDPOINT_TRANSFORM_ZLIB_BLOCKS: i32 = 2;
pub const SHARDPOINT_TRANSFORM_ZSTD_BLOCKS: i32 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardpoint_chunk_info {
    pub offsets: *const u64,
    pub sizes: *const u64,
    pub file: *const c_char,
    pub file_offset: u64,
    pub stored_length: u64,
    pub raw_length: u64,
    pub crc32: u32,
    pub transform: i32,
    pub writer_rank: i32,
    pub shuffle_width: u32,
}

// ---------------------------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------------------------

extern "C" {
    // Versions
    pub fn shardpoint_version_number() -> u32;
    pub fn shardpoint_version_string() -> *const c_char;

    // Errors
    pub fn shardpoint_last_error() -> *const c_char;
    pub fn shardpoint_last_error_code() -> c_int;
    pub fn shardpoint_error_name(code: c_int) -> *const c_char;

    // Dtypes
    pub fn shardpoint_dtype_size(dtype: i32) -> u32;
    pub fn shardpoint_dtype_name(dtype: i32) -> *const c_char;
    pub fn shardpoint_dtype_from_name(name: *const c_char, out_dtype: *mut i32) -> c_int;

    // Communicators
    pub fn shardpoint_comm_new_single(out: *mut *mut shardpoint_comm) -> c_int;
    pub fn shardpoint_comm_callbacks_init(callbacks: *mut shardpoint_comm_callbacks, version: u32) -> c_int;
    pub fn shardpoint_comm_new_callbacks(
        out: *mut *mut shardpoint_comm,
        callbacks: *const shardpoint_comm_callbacks,
    ) -> c_int;
    pub fn shardpoint_comm_rank(comm: *const shardpoint_comm, out_rank: *mut i32) -> c_int;
    pub fn shardpoint_comm_size(comm: *const shardpoint_comm, out_size: *mut i32) -> c_int;
    pub fn shardpoint_comm_free(comm: *mut shardpoint_comm);

    // Saving
    pub fn shardpoint_save_options_init(options: *mut shardpoint_save_options, version: u32) -> c_int;
    pub fn shardpoint_save_new(
        out: *mut *mut shardpoint_save,
        dir: *const c_char,
        comm: *mut shardpoint_comm,
        options: *const shardpoint_save_options,
    ) -> c_int;
    pub fn shardpoint_save_add_tensor(
        save: *mut shardpoint_save,
        fqn: *const c_char,
        dtype: i32,
        ndim: u32,
        global_shape: *const u64,
        chunk_offsets: *const u64,
        chunk_sizes: *const u64,
        data: *const c_void,
        strides: *const i64,
    ) -> c_int;
    pub fn shardpoint_save_add_tensors(
        save: *mut shardpoint_save,
        chunks: *const shardpoint_tensor_chunk,
        count: u64,
        chunk_struct_size: usize,
    ) -> c_int;
    pub fn shardpoint_load_add_tensors(
        load: *mut shardpoint_load,
        requests: *const shardpoint_tensor_request,
        count: u64,
        request_struct_size: usize,
    ) -> c_int;
    pub fn shardpoint_save_add_bytes(
        save: *mut shardpoint_save,
        fqn: *const c_char,
        data: *const c_void,
        len: u64,
    ) -> c_int;
    pub fn shardpoint_save_set_metadata(save: *mut shardpoint_save, key: *const c_char, value: *const c_char) -> c_int;
    pub fn shardpoint_save_commit(save: *mut shardpoint_save) -> c_int;
    pub fn shardpoint_save_free(save: *mut shardpoint_save);

    // Asynchronous saves
    pub fn shardpoint_staging_new(out: *mut *mut shardpoint_staging, capacity: u64) -> c_int;
    pub fn shardpoint_staging_capacity(staging: *const shardpoint_staging, out_capacity: *mut u64) -> c_int;
    pub fn shardpoint_staging_free(staging: *mut shardpoint_staging);
    pub fn shardpoint_save_staging_size(save: *const shardpoint_save, out_bytes: *mut u64) -> c_int;
    pub fn shardpoint_save_commit_async(save: *mut shardpoint_save, staging: *mut shardpoint_staging) -> c_int;
    pub fn shardpoint_save_wait(save: *mut shardpoint_save) -> c_int;
    pub fn shardpoint_save_poll(save: *mut shardpoint_save, out_finished: *mut i32) -> c_int;
    pub fn shardpoint_save_cancel(save: *mut shardpoint_save) -> c_int;

    // Progress and cancellation (`callback` None: no reports)
    pub fn shardpoint_save_set_progress(
        save: *mut shardpoint_save,
        callback: Option<shardpoint_progress_callback>,
        user: *mut c_void,
    ) -> c_int;

    // Reading metadata
    pub fn shardpoint_load_options_init(options: *mut shardpoint_load_options, version: u32) -> c_int;
    pub fn shardpoint_reader_open(
        out: *mut *mut shardpoint_reader,
        dir: *const c_char,
        options: *const shardpoint_load_options,
    ) -> c_int;
    pub fn shardpoint_reader_open_shared(
        out: *mut *mut shardpoint_reader,
        dir: *const c_char,
        options: *const shardpoint_load_options,
        comm: *mut shardpoint_comm,
    ) -> c_int;
    pub fn shardpoint_reader_free(reader: *mut shardpoint_reader);
    pub fn shardpoint_reader_storage_info(reader: *const shardpoint_reader, out: *mut shardpoint_storage_info)
        -> c_int;
    pub fn shardpoint_reader_entry_count(reader: *const shardpoint_reader, out_count: *mut u64) -> c_int;
    pub fn shardpoint_reader_entry_info(
        reader: *const shardpoint_reader,
        index: u64,
        out: *mut shardpoint_entry_info,
    ) -> c_int;
    pub fn shardpoint_reader_find(reader: *const shardpoint_reader, fqn: *const c_char, out_index: *mut u64) -> c_int;
    pub fn shardpoint_reader_chunk_info(
        reader: *const shardpoint_reader,
        index: u64,
        chunk: u64,
        out: *mut shardpoint_chunk_info,
    ) -> c_int;
    pub fn shardpoint_reader_metadata_count(reader: *const shardpoint_reader, out_count: *mut u64) -> c_int;
    pub fn shardpoint_reader_metadata_at(
        reader: *const shardpoint_reader,
        index: u64,
        out_key: *mut *const c_char,
        out_value: *mut *const c_char,
    ) -> c_int;
    pub fn shardpoint_reader_metadata_get(
        reader: *const shardpoint_reader,
        key: *const c_char,
        out_value: *mut *const c_char,
    ) -> c_int;
    pub fn shardpoint_reader_set_progress(
        reader: *mut shardpoint_reader,
        callback: Option<shardpoint_progress_callback>,
        user: *mut c_void,
    ) -> c_int;
    pub fn shardpoint_reader_verify(reader: *mut shardpoint_reader) -> c_int;

    // Loading
    pub fn shardpoint_load_new(
        out: *mut *mut shardpoint_load,
        reader: *mut shardpoint_reader,
        comm: *mut shardpoint_comm,
    ) -> c_int;
    pub fn shardpoint_load_add_tensor(
        load: *mut shardpoint_load,
        fqn: *const c_char,
        dtype: i32,
        ndim: u32,
        box_offsets: *const u64,
        box_sizes: *const u64,
        dst: *mut c_void,
        strides: *const i64,
    ) -> c_int;
    pub fn shardpoint_load_add_bytes(
        load: *mut shardpoint_load,
        fqn: *const c_char,
        dst: *mut c_void,
        capacity: u64,
    ) -> c_int;
    pub fn shardpoint_load_skipped_count(load: *const shardpoint_load, out_count: *mut u64) -> c_int;
    pub fn shardpoint_load_execute(load: *mut shardpoint_load) -> c_int;
    pub fn shardpoint_load_set_progress(
        load: *mut shardpoint_load,
        callback: Option<shardpoint_progress_callback>,
        user: *mut c_void,
    ) -> c_int;
    pub fn shardpoint_load_free(load: *mut shardpoint_load);
    pub fn shardpoint_reader_read_tensor(
        reader: *mut shardpoint_reader,
        fqn: *const c_char,
        dtype: i32,
        ndim: u32,
        box_offsets: *const u64,
        box_sizes: *const u64,
        dst: *mut c_void,
        strides: *const i64,
    ) -> c_int;
    pub fn shardpoint_reader_read_bytes(
        reader: *mut shardpoint_reader,
        fqn: *const c_char,
        dst: *mut c_void,
        capacity: u64,
        out_len: *mut u64,
    ) -> c_int;
}
