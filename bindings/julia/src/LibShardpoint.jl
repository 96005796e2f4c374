# Raw declarations of the C ABI in capi/include/shardpoint.h: one Julia function per C function,
# with the C names, C argument order and C types. No logic lives here; src/Shardpoint.jl builds the
# Julia API on top. check/check.js compares every @ccall below with the header and the built library,
# so keep each @ccall literal (library, name and types written out, no aliases).
module LibShardpoint

import Libdl
import Preferences

# The library's name for the dynamic loader on each platform: on Linux its SONAME (check.js
# compares it with the built library), elsewhere the names CMake gives a library of SOVERSION 0.
const library_linux = "libshardpoint.so.0"
const library_macos = "libshardpoint.0.dylib"
const library_windows = "libshardpoint.dll"

# Shardpoint's UUID (Project.toml; run-tests.sh checks they agree): its preferences are read here.
const package_uuid = Base.UUID("53d34253-c1a3-4d82-9c5f-37da448ec330")

# Every @ccall names the library through this constant: the platform's name above, found by the
# dynamic loader, unless the preference "library" names another file. The preference is read when
# the package is compiled, so a change takes effect at the next `using Shardpoint`:
#     using Preferences, Shardpoint
#     set_preferences!(Shardpoint, "library" => "/opt/shardpoint/lib/libshardpoint.so.0")
const libshardpoint = Preferences.load_preference(package_uuid, "library",
    Sys.isapple() ? library_macos : Sys.iswindows() ? library_windows : library_linux)

# ------------------------------------------------------------------------------------------------
# Constants (values as in the header; check.js compares them)
# ------------------------------------------------------------------------------------------------

const SHARDPOINT_VERSION_MAJOR = 0
const SHARDPOINT_VERSION_MINOR = 1
const SHARDPOINT_VERSION_PATCH = 0
const SHARDPOINT_VERSION_STRING = "0.1.0"
const SHARDPOINT_FORMAT_MAJOR = 1
const SHARDPOINT_FORMAT_MAJOR_MAX = 2

const SHARDPOINT_OK = Cint(0)
const SHARDPOINT_EINVAL = Cint(-1)
const SHARDPOINT_ENOMEM = Cint(-2)
const SHARDPOINT_EIO = Cint(-3)
const SHARDPOINT_ENOTFOUND = Cint(-4)
const SHARDPOINT_EEXISTS = Cint(-5)
const SHARDPOINT_EFORMAT = Cint(-6)
const SHARDPOINT_ECHECKSUM = Cint(-7)
const SHARDPOINT_ETRUNCATED = Cint(-8)
const SHARDPOINT_EVERSION = Cint(-9)
const SHARDPOINT_EDTYPE = Cint(-10)
const SHARDPOINT_ESHAPE = Cint(-11)
const SHARDPOINT_EPATH = Cint(-12)
const SHARDPOINT_ECONFLICT = Cint(-13)
const SHARDPOINT_ERANK = Cint(-14)
const SHARDPOINT_ECOMM = Cint(-15)
const SHARDPOINT_EUNCOVERED = Cint(-16)
const SHARDPOINT_ESTATE = Cint(-17)
const SHARDPOINT_EKIND = Cint(-18)
const SHARDPOINT_ERANGE = Cint(-19)
const SHARDPOINT_ENOSPC = Cint(-20)
const SHARDPOINT_ENOTDURABLE = Cint(-21)
const SHARDPOINT_ECANCELED = Cint(-22)
const SHARDPOINT_EINTERNAL = Cint(-99)

const SHARDPOINT_DTYPE_BOOL = Int32(0)
const SHARDPOINT_DTYPE_U8 = Int32(1)
const SHARDPOINT_DTYPE_I8 = Int32(2)
const SHARDPOINT_DTYPE_I16 = Int32(3)
const SHARDPOINT_DTYPE_I32 = Int32(4)
const SHARDPOINT_DTYPE_I64 = Int32(5)
const SHARDPOINT_DTYPE_U16 = Int32(6)
const SHARDPOINT_DTYPE_U32 = Int32(7)
const SHARDPOINT_DTYPE_U64 = Int32(8)
const SHARDPOINT_DTYPE_F16 = Int32(9)
const SHARDPOINT_DTYPE_BF16 = Int32(10)
const SHARDPOINT_DTYPE_F32 = Int32(11)
const SHARDPOINT_DTYPE_F64 = Int32(12)
const SHARDPOINT_DTYPE_COMPLEX64 = Int32(13)
const SHARDPOINT_DTYPE_COMPLEX128 = Int32(14)
const SHARDPOINT_DTYPE_F8_E4M3FN = Int32(15)
const SHARDPOINT_DTYPE_F8_E5M2 = Int32(16)
const SHARDPOINT_DTYPE_COUNT = 17
const SHARDPOINT_MAX_NDIM = 32

const SHARDPOINT_COMM_CALLBACKS_VERSION = UInt32(1)

const SHARDPOINT_SAVE_OVERWRITE = UInt32(0x1)
const SHARDPOINT_SAVE_FSYNC = UInt32(0x2)  # accepted, means nothing: saves are durable by default
const SHARDPOINT_SAVE_NO_FSYNC = UInt32(0x4)
const SHARDPOINT_SAVE_ALLOW_PARTIAL = UInt32(0x8)
const SHARDPOINT_SAVE_OPTIONS_VERSION = UInt32(2)
const SHARDPOINT_CODEC_DEFAULT = UInt32(0)
const SHARDPOINT_CODEC_DEFLATE_STREAM = UInt32(1)
const SHARDPOINT_CODEC_ZLIB = UInt32(2)
const SHARDPOINT_CODEC_ZSTD = UInt32(3)
const SHARDPOINT_FILTER_SHUFFLE = UInt32(0x1)

const SHARDPOINT_LOAD_NO_VERIFY = UInt32(0x1)
const SHARDPOINT_LOAD_ALLOW_PARTIAL = UInt32(0x2)
const SHARDPOINT_LOAD_OPTIONS_VERSION = UInt32(1)

const SHARDPOINT_GC_DRY_RUN = UInt32(0x1)

# shardpoint_progress_phase: the `phase` a shardpoint_progress_callback receives (an int32_t).
const SHARDPOINT_PROGRESS_WRITE = Int32(1)
const SHARDPOINT_PROGRESS_READ = Int32(2)
const SHARDPOINT_PROGRESS_VERIFY = Int32(3)
const SHARDPOINT_PROGRESS_CONVERT = Int32(4)

const SHARDPOINT_ENTRY_TENSOR = Int32(0)
const SHARDPOINT_ENTRY_BYTES = Int32(1)

const SHARDPOINT_TRANSFORM_NONE = Int32(0)
const SHARDPOINT_TRANSFORM_DEFLATE = Int32(1)
const SHARDPOINT_TRANSFORM_ZLIB_BLOCKS = Int32(2)
const SHARDPOINT_TRANSFORM_ZSTD_BLOCKS = Int32(3)

const SHARDPOINT_MANAGER_CREATE = UInt32(0x1)
const SHARDPOINT_METRIC_MIN = Int32(0)
const SHARDPOINT_METRIC_MAX = Int32(1)
const SHARDPOINT_MANAGER_OPTIONS_VERSION = UInt32(1)
const SHARDPOINT_STEP_COMMITTED = Int32(0)
const SHARDPOINT_STEP_PARTIAL = Int32(1)
const SHARDPOINT_STEP_DAMAGED = Int32(2)
const SHARDPOINT_RETENTION_DRY_RUN = UInt32(0x1)

const SHARDPOINT_CONVERT_OVERWRITE = UInt32(0x1)
const SHARDPOINT_CONVERT_SKIP_BYTES = UInt32(0x2)
const SHARDPOINT_CONVERT_NO_FSYNC = UInt32(0x4)
const SHARDPOINT_CONVERT_OPTIONS_VERSION = UInt32(1)

# ------------------------------------------------------------------------------------------------
# Types: opaque handles (only ever behind a Ptr) and structs with the C layout
# ------------------------------------------------------------------------------------------------

mutable struct shardpoint_comm end
mutable struct shardpoint_save end
mutable struct shardpoint_staging end
mutable struct shardpoint_reader end
mutable struct shardpoint_load end
mutable struct shardpoint_writer end
mutable struct shardpoint_manager end

struct shardpoint_comm_callbacks
    version::UInt32
    rank::Int32
    size::Int32
    user::Ptr{Cvoid}
    gather::Ptr{Cvoid}     # int (*)(void *user, const void *send, uint64_t len, void *recv)
    broadcast::Ptr{Cvoid}  # int (*)(void *user, void *buf, uint64_t len)
    destroy::Ptr{Cvoid}    # void (*)(void *user), may be NULL
end

struct shardpoint_save_options
    version::UInt32
    flags::UInt32
    compression_level::Int32
    io_threads::UInt32
    alignment::UInt64
    checkpoint_id::Ptr{UInt8}
    codec::UInt32
    filters::UInt32
end

struct shardpoint_tensor_chunk
    fqn::Ptr{UInt8}
    dtype::Int32
    ndim::UInt32
    global_shape::Ptr{UInt64}
    chunk_offsets::Ptr{UInt64}
    chunk_sizes::Ptr{UInt64}
    data::Ptr{Cvoid}
    strides::Ptr{Int64}
end

struct shardpoint_tensor_request
    fqn::Ptr{UInt8}
    dtype::Int32
    ndim::UInt32
    box_offsets::Ptr{UInt64}
    box_sizes::Ptr{UInt64}
    dst::Ptr{Cvoid}
    strides::Ptr{Int64}
end

struct shardpoint_load_options
    version::UInt32
    flags::UInt32
    io_threads::UInt32
end

struct shardpoint_storage_info
    checkpoint_id::Ptr{UInt8}
    save_id::Ptr{UInt8}
    library_version::Ptr{UInt8}
    created_unix_ns::Int64
    world_size::Int32
    format_major::UInt32
    format_minor::UInt32
    alignment::UInt32
    file_count::UInt64
    total_stored_bytes::UInt64
end

struct shardpoint_file_info
    name::Ptr{UInt8}
    size::UInt64
    rank::Int32
    reserved::UInt32
end

struct shardpoint_entry_info
    fqn::Ptr{UInt8}
    kind::Int32
    dtype::Int32
    ndim::UInt32
    reserved::UInt32
    shape::Ptr{UInt64}
    chunk_count::UInt64
    numel::UInt64
    nbytes::UInt64
    stored_bytes::UInt64
    covered_numel::UInt64
end

struct shardpoint_chunk_info
    offsets::Ptr{UInt64}
    sizes::Ptr{UInt64}
    file::Ptr{UInt8}
    file_offset::UInt64
    stored_length::UInt64
    raw_length::UInt64
    crc32::UInt32
    transform::Int32
    writer_rank::Int32
    shuffle_width::UInt32
end

struct shardpoint_manager_options
    version::UInt32
    flags::UInt32
    keep_last::UInt64
    keep_every::UInt64
    keep_best::UInt64
    best_metric::Ptr{UInt8}  # copied by shardpoint_manager_open
    best_mode::Int32
    reserved::UInt32
end

struct shardpoint_step_info
    step::UInt64
    state::Int32
    busy::Int32
    path::Ptr{UInt8}      # strings owned by the manager, valid until its next list
    bytes::UInt64
    disk_bytes::UInt64
    file_count::UInt64
    time_unix_ns::Int64
    metric::Ptr{UInt8}    # NULL: no value
    message::Ptr{UInt8}
end

struct shardpoint_convert_options
    version::UInt32
    flags::UInt32
    max_shard_size::UInt64
    buffer_size::UInt64
    save_options::Ptr{shardpoint_save_options}  # read during the call; C_NULL: defaults
    progress::Ptr{Cvoid}       # a shardpoint_progress_callback from @cfunction, or C_NULL
    progress_user::Ptr{Cvoid}
    io_threads::UInt32
    reserved::UInt32
end

struct shardpoint_verify_problem
    fqn::Ptr{UInt8}
    chunk::UInt64
    file::Ptr{UInt8}
    file_offset::UInt64
    length::UInt64
    code::Int32
    reserved::UInt32
    message::Ptr{UInt8}
end

# ------------------------------------------------------------------------------------------------
# Versions and errors
# ------------------------------------------------------------------------------------------------

shardpoint_version_number() =
    @ccall libshardpoint.shardpoint_version_number()::UInt32

shardpoint_version_string() =
    @ccall libshardpoint.shardpoint_version_string()::Ptr{UInt8}

shardpoint_last_error() =
    @ccall libshardpoint.shardpoint_last_error()::Ptr{UInt8}

shardpoint_last_error_code() =
    @ccall libshardpoint.shardpoint_last_error_code()::Cint

shardpoint_error_name(code) =
    @ccall libshardpoint.shardpoint_error_name(code::Cint)::Ptr{UInt8}

# ------------------------------------------------------------------------------------------------
# Dtypes
# ------------------------------------------------------------------------------------------------

shardpoint_dtype_size(dtype) =
    @ccall libshardpoint.shardpoint_dtype_size(dtype::Int32)::UInt32

shardpoint_dtype_name(dtype) =
    @ccall libshardpoint.shardpoint_dtype_name(dtype::Int32)::Ptr{UInt8}

shardpoint_dtype_from_name(name, out_dtype) =
    @ccall libshardpoint.shardpoint_dtype_from_name(name::Cstring, out_dtype::Ptr{Int32})::Cint

# ------------------------------------------------------------------------------------------------
# Communicators
# ------------------------------------------------------------------------------------------------

shardpoint_comm_new_single(out) =
    @ccall libshardpoint.shardpoint_comm_new_single(out::Ptr{Ptr{shardpoint_comm}})::Cint

shardpoint_comm_callbacks_init(callbacks, version) =
    @ccall libshardpoint.shardpoint_comm_callbacks_init(
        callbacks::Ptr{shardpoint_comm_callbacks}, version::UInt32)::Cint

shardpoint_comm_new_callbacks(out, callbacks) =
    @ccall libshardpoint.shardpoint_comm_new_callbacks(
        out::Ptr{Ptr{shardpoint_comm}}, callbacks::Ptr{shardpoint_comm_callbacks})::Cint

shardpoint_comm_rank(comm, out_rank) =
    @ccall libshardpoint.shardpoint_comm_rank(comm::Ptr{shardpoint_comm}, out_rank::Ptr{Int32})::Cint

shardpoint_comm_size(comm, out_size) =
    @ccall libshardpoint.shardpoint_comm_size(comm::Ptr{shardpoint_comm}, out_size::Ptr{Int32})::Cint

shardpoint_comm_free(comm) =
    @ccall libshardpoint.shardpoint_comm_free(comm::Ptr{shardpoint_comm})::Cvoid

# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------

shardpoint_save_options_init(options, version) =
    @ccall libshardpoint.shardpoint_save_options_init(
        options::Ptr{shardpoint_save_options}, version::UInt32)::Cint

shardpoint_save_new(out, dir, comm, options) =
    @ccall libshardpoint.shardpoint_save_new(
        out::Ptr{Ptr{shardpoint_save}}, dir::Cstring, comm::Ptr{shardpoint_comm},
        options::Ptr{shardpoint_save_options})::Cint

shardpoint_save_add_tensor(save, fqn, dtype, ndim, global_shape, chunk_offsets, chunk_sizes, data, strides) =
    @ccall libshardpoint.shardpoint_save_add_tensor(
        save::Ptr{shardpoint_save}, fqn::Cstring, dtype::Int32, ndim::UInt32,
        global_shape::Ptr{UInt64}, chunk_offsets::Ptr{UInt64}, chunk_sizes::Ptr{UInt64},
        data::Ptr{Cvoid}, strides::Ptr{Int64})::Cint

shardpoint_save_add_tensors(save, chunks, count, chunk_struct_size) =
    @ccall libshardpoint.shardpoint_save_add_tensors(
        save::Ptr{shardpoint_save}, chunks::Ptr{shardpoint_tensor_chunk}, count::UInt64,
        chunk_struct_size::Csize_t)::Cint

shardpoint_save_add_bytes(save, fqn, data, len) =
    @ccall libshardpoint.shardpoint_save_add_bytes(
        save::Ptr{shardpoint_save}, fqn::Cstring, data::Ptr{Cvoid}, len::UInt64)::Cint

shardpoint_save_set_metadata(save, key, value) =
    @ccall libshardpoint.shardpoint_save_set_metadata(
        save::Ptr{shardpoint_save}, key::Cstring, value::Cstring)::Cint

shardpoint_save_commit(save) =
    @ccall libshardpoint.shardpoint_save_commit(save::Ptr{shardpoint_save})::Cint

shardpoint_save_free(save) =
    @ccall libshardpoint.shardpoint_save_free(save::Ptr{shardpoint_save})::Cvoid

# ------------------------------------------------------------------------------------------------
# Asynchronous saves
# ------------------------------------------------------------------------------------------------

shardpoint_staging_new(out, capacity) =
    @ccall libshardpoint.shardpoint_staging_new(out::Ptr{Ptr{shardpoint_staging}}, capacity::UInt64)::Cint

shardpoint_staging_capacity(staging, out_capacity) =
    @ccall libshardpoint.shardpoint_staging_capacity(
        staging::Ptr{shardpoint_staging}, out_capacity::Ptr{UInt64})::Cint

shardpoint_staging_free(staging) =
    @ccall libshardpoint.shardpoint_staging_free(staging::Ptr{shardpoint_staging})::Cvoid

shardpoint_save_staging_size(save, out_bytes) =
    @ccall libshardpoint.shardpoint_save_staging_size(save::Ptr{shardpoint_save}, out_bytes::Ptr{UInt64})::Cint

shardpoint_save_commit_async(save, staging) =
    @ccall libshardpoint.shardpoint_save_commit_async(
        save::Ptr{shardpoint_save}, staging::Ptr{shardpoint_staging})::Cint

shardpoint_save_wait(save) =
    @ccall libshardpoint.shardpoint_save_wait(save::Ptr{shardpoint_save})::Cint

shardpoint_save_poll(save, out_finished) =
    @ccall libshardpoint.shardpoint_save_poll(save::Ptr{shardpoint_save}, out_finished::Ptr{Int32})::Cint

shardpoint_save_cancel(save) =
    @ccall libshardpoint.shardpoint_save_cancel(save::Ptr{shardpoint_save})::Cint

# ------------------------------------------------------------------------------------------------
# Progress and cancellation. Every `callback` below is a shardpoint_progress_callback,
# int (*)(void *user, int32_t phase, uint64_t done, uint64_t total), from @cfunction; C_NULL: none.
# ------------------------------------------------------------------------------------------------

shardpoint_save_set_progress(save, callback, user) =
    @ccall libshardpoint.shardpoint_save_set_progress(
        save::Ptr{shardpoint_save}, callback::Ptr{Cvoid}, user::Ptr{Cvoid})::Cint

# ------------------------------------------------------------------------------------------------
# Reading metadata
# ------------------------------------------------------------------------------------------------

shardpoint_load_options_init(options, version) =
    @ccall libshardpoint.shardpoint_load_options_init(
        options::Ptr{shardpoint_load_options}, version::UInt32)::Cint

shardpoint_reader_open(out, dir, options) =
    @ccall libshardpoint.shardpoint_reader_open(
        out::Ptr{Ptr{shardpoint_reader}}, dir::Cstring, options::Ptr{shardpoint_load_options})::Cint

shardpoint_reader_open_shared(out, dir, options, comm) =
    @ccall libshardpoint.shardpoint_reader_open_shared(
        out::Ptr{Ptr{shardpoint_reader}}, dir::Cstring, options::Ptr{shardpoint_load_options},
        comm::Ptr{shardpoint_comm})::Cint

shardpoint_reader_free(reader) =
    @ccall libshardpoint.shardpoint_reader_free(reader::Ptr{shardpoint_reader})::Cvoid

shardpoint_reader_storage_info(reader, out) =
    @ccall libshardpoint.shardpoint_reader_storage_info(
        reader::Ptr{shardpoint_reader}, out::Ptr{shardpoint_storage_info})::Cint

shardpoint_reader_file_info(reader, index, out) =
    @ccall libshardpoint.shardpoint_reader_file_info(
        reader::Ptr{shardpoint_reader}, index::UInt64, out::Ptr{shardpoint_file_info})::Cint

shardpoint_reader_entry_count(reader, out_count) =
    @ccall libshardpoint.shardpoint_reader_entry_count(
        reader::Ptr{shardpoint_reader}, out_count::Ptr{UInt64})::Cint

shardpoint_reader_entry_info(reader, index, out) =
    @ccall libshardpoint.shardpoint_reader_entry_info(
        reader::Ptr{shardpoint_reader}, index::UInt64, out::Ptr{shardpoint_entry_info})::Cint

shardpoint_reader_find(reader, fqn, out_index) =
    @ccall libshardpoint.shardpoint_reader_find(
        reader::Ptr{shardpoint_reader}, fqn::Cstring, out_index::Ptr{UInt64})::Cint

shardpoint_reader_chunk_info(reader, index, chunk, out) =
    @ccall libshardpoint.shardpoint_reader_chunk_info(
        reader::Ptr{shardpoint_reader}, index::UInt64, chunk::UInt64, out::Ptr{shardpoint_chunk_info})::Cint

shardpoint_reader_entry_names(reader, out_names, out_len) =
    @ccall libshardpoint.shardpoint_reader_entry_names(
        reader::Ptr{shardpoint_reader}, out_names::Ptr{Ptr{UInt8}}, out_len::Ptr{UInt64})::Cint

shardpoint_reader_chunk_boxes(reader, index, first, count, offsets, sizes) =
    @ccall libshardpoint.shardpoint_reader_chunk_boxes(
        reader::Ptr{shardpoint_reader}, index::UInt64, first::UInt64, count::UInt64,
        offsets::Ptr{UInt64}, sizes::Ptr{UInt64})::Cint

shardpoint_reader_metadata_count(reader, out_count) =
    @ccall libshardpoint.shardpoint_reader_metadata_count(
        reader::Ptr{shardpoint_reader}, out_count::Ptr{UInt64})::Cint

shardpoint_reader_metadata_at(reader, index, out_key, out_value) =
    @ccall libshardpoint.shardpoint_reader_metadata_at(
        reader::Ptr{shardpoint_reader}, index::UInt64, out_key::Ptr{Ptr{UInt8}},
        out_value::Ptr{Ptr{UInt8}})::Cint

shardpoint_reader_metadata_get(reader, key, out_value) =
    @ccall libshardpoint.shardpoint_reader_metadata_get(
        reader::Ptr{shardpoint_reader}, key::Cstring, out_value::Ptr{Ptr{UInt8}})::Cint

# callback: a shardpoint_progress_callback (see shardpoint_save_set_progress), or C_NULL.
shardpoint_reader_set_progress(reader, callback, user) =
    @ccall libshardpoint.shardpoint_reader_set_progress(
        reader::Ptr{shardpoint_reader}, callback::Ptr{Cvoid}, user::Ptr{Cvoid})::Cint

shardpoint_reader_verify(reader) =
    @ccall libshardpoint.shardpoint_reader_verify(reader::Ptr{shardpoint_reader})::Cint

# callback: int (*)(void *user, const shardpoint_verify_problem *problem), from @cfunction.
shardpoint_reader_verify_each(reader, callback, user, out_problems) =
    @ccall libshardpoint.shardpoint_reader_verify_each(
        reader::Ptr{shardpoint_reader}, callback::Ptr{Cvoid}, user::Ptr{Cvoid}, out_problems::Ptr{UInt64})::Cint

shardpoint_reader_block_size(reader, out_block_size) =
    @ccall libshardpoint.shardpoint_reader_block_size(
        reader::Ptr{shardpoint_reader}, out_block_size::Ptr{UInt32})::Cint

# ------------------------------------------------------------------------------------------------
# Garbage collection
# ------------------------------------------------------------------------------------------------

# callback: int (*)(void *user, const char *name, uint64_t size), from @cfunction.
shardpoint_gc(dir, flags, callback, user, out_files, out_bytes) =
    @ccall libshardpoint.shardpoint_gc(
        dir::Cstring, flags::UInt32, callback::Ptr{Cvoid}, user::Ptr{Cvoid}, out_files::Ptr{UInt64},
        out_bytes::Ptr{UInt64})::Cint

# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------

shardpoint_load_new(out, reader, comm) =
    @ccall libshardpoint.shardpoint_load_new(
        out::Ptr{Ptr{shardpoint_load}}, reader::Ptr{shardpoint_reader}, comm::Ptr{shardpoint_comm})::Cint

shardpoint_load_add_tensor(load, fqn, dtype, ndim, box_offsets, box_sizes, dst, strides) =
    @ccall libshardpoint.shardpoint_load_add_tensor(
        load::Ptr{shardpoint_load}, fqn::Cstring, dtype::Int32, ndim::UInt32,
        box_offsets::Ptr{UInt64}, box_sizes::Ptr{UInt64}, dst::Ptr{Cvoid}, strides::Ptr{Int64})::Cint

shardpoint_load_add_tensors(load, requests, count, request_struct_size) =
    @ccall libshardpoint.shardpoint_load_add_tensors(
        load::Ptr{shardpoint_load}, requests::Ptr{shardpoint_tensor_request}, count::UInt64,
        request_struct_size::Csize_t)::Cint

shardpoint_load_add_bytes(load, fqn, dst, capacity) =
    @ccall libshardpoint.shardpoint_load_add_bytes(
        load::Ptr{shardpoint_load}, fqn::Cstring, dst::Ptr{Cvoid}, capacity::UInt64)::Cint

shardpoint_load_skipped_count(load, out_count) =
    @ccall libshardpoint.shardpoint_load_skipped_count(load::Ptr{shardpoint_load}, out_count::Ptr{UInt64})::Cint

shardpoint_load_execute(load) =
    @ccall libshardpoint.shardpoint_load_execute(load::Ptr{shardpoint_load})::Cint

# callback: a shardpoint_progress_callback (see shardpoint_save_set_progress), or C_NULL.
shardpoint_load_set_progress(load, callback, user) =
    @ccall libshardpoint.shardpoint_load_set_progress(
        load::Ptr{shardpoint_load}, callback::Ptr{Cvoid}, user::Ptr{Cvoid})::Cint

shardpoint_load_free(load) =
    @ccall libshardpoint.shardpoint_load_free(load::Ptr{shardpoint_load})::Cvoid

shardpoint_reader_read_tensor(reader, fqn, dtype, ndim, box_offsets, box_sizes, dst, strides) =
    @ccall libshardpoint.shardpoint_reader_read_tensor(
        reader::Ptr{shardpoint_reader}, fqn::Cstring, dtype::Int32, ndim::UInt32,
        box_offsets::Ptr{UInt64}, box_sizes::Ptr{UInt64}, dst::Ptr{Cvoid}, strides::Ptr{Int64})::Cint

shardpoint_reader_read_bytes(reader, fqn, dst, capacity, out_len) =
    @ccall libshardpoint.shardpoint_reader_read_bytes(
        reader::Ptr{shardpoint_reader}, fqn::Cstring, dst::Ptr{Cvoid}, capacity::UInt64,
        out_len::Ptr{UInt64})::Cint

# ------------------------------------------------------------------------------------------------
# Checkpoint manager
# ------------------------------------------------------------------------------------------------

shardpoint_manager_options_init(options, version) =
    @ccall libshardpoint.shardpoint_manager_options_init(
        options::Ptr{shardpoint_manager_options}, version::UInt32)::Cint

shardpoint_manager_open(out, root, comm, options) =
    @ccall libshardpoint.shardpoint_manager_open(
        out::Ptr{Ptr{shardpoint_manager}}, root::Cstring, comm::Ptr{shardpoint_comm},
        options::Ptr{shardpoint_manager_options})::Cint

shardpoint_manager_free(manager) =
    @ccall libshardpoint.shardpoint_manager_free(manager::Ptr{shardpoint_manager})::Cvoid

# *out_path is owned by the manager, valid until the next step_path call or shardpoint_manager_free.
shardpoint_manager_step_path(manager, step, out_path) =
    @ccall libshardpoint.shardpoint_manager_step_path(
        manager::Ptr{shardpoint_manager}, step::UInt64, out_path::Ptr{Ptr{UInt8}})::Cint

shardpoint_manager_save_new(out, manager, step, options) =
    @ccall libshardpoint.shardpoint_manager_save_new(
        out::Ptr{Ptr{shardpoint_save}}, manager::Ptr{shardpoint_manager}, step::UInt64,
        options::Ptr{shardpoint_save_options})::Cint

shardpoint_manager_latest_step(manager, out_step) =
    @ccall libshardpoint.shardpoint_manager_latest_step(
        manager::Ptr{shardpoint_manager}, out_step::Ptr{UInt64})::Cint

shardpoint_manager_list(manager, out_count) =
    @ccall libshardpoint.shardpoint_manager_list(manager::Ptr{shardpoint_manager}, out_count::Ptr{UInt64})::Cint

shardpoint_manager_step_info(manager, index, out) =
    @ccall libshardpoint.shardpoint_manager_step_info(
        manager::Ptr{shardpoint_manager}, index::UInt64, out::Ptr{shardpoint_step_info})::Cint

shardpoint_manager_delete_step(manager, step) =
    @ccall libshardpoint.shardpoint_manager_delete_step(manager::Ptr{shardpoint_manager}, step::UInt64)::Cint

# callback: int (*)(void *user, uint64_t step, uint64_t bytes) (shardpoint_retention_callback),
# from @cfunction, or C_NULL.
shardpoint_manager_apply_retention(manager, flags, callback, user, out_deleted) =
    @ccall libshardpoint.shardpoint_manager_apply_retention(
        manager::Ptr{shardpoint_manager}, flags::UInt32, callback::Ptr{Cvoid}, user::Ptr{Cvoid},
        out_deleted::Ptr{UInt64})::Cint

# callback: a shardpoint_gc_callback (see shardpoint_gc), or C_NULL.
shardpoint_manager_gc(manager, flags, callback, user, out_files, out_bytes) =
    @ccall libshardpoint.shardpoint_manager_gc(
        manager::Ptr{shardpoint_manager}, flags::UInt32, callback::Ptr{Cvoid}, user::Ptr{Cvoid},
        out_files::Ptr{UInt64}, out_bytes::Ptr{UInt64})::Cint

shardpoint_checkpoint_delete(dir) =
    @ccall libshardpoint.shardpoint_checkpoint_delete(dir::Cstring)::Cint

# ------------------------------------------------------------------------------------------------
# Conversion to and from safetensors
# ------------------------------------------------------------------------------------------------

shardpoint_convert_options_init(options, version) =
    @ccall libshardpoint.shardpoint_convert_options_init(
        options::Ptr{shardpoint_convert_options}, version::UInt32)::Cint

shardpoint_convert_to_safetensors(ckpt_dir, out_path, options) =
    @ccall libshardpoint.shardpoint_convert_to_safetensors(
        ckpt_dir::Cstring, out_path::Cstring, options::Ptr{shardpoint_convert_options})::Cint

shardpoint_convert_from_safetensors(in_path, ckpt_dir, options) =
    @ccall libshardpoint.shardpoint_convert_from_safetensors(
        in_path::Cstring, ckpt_dir::Cstring, options::Ptr{shardpoint_convert_options})::Cint

shardpoint_parse_size(text, out_bytes) =
    @ccall libshardpoint.shardpoint_parse_size(text::Cstring, out_bytes::Ptr{UInt64})::Cint

# ------------------------------------------------------------------------------------------------
# The storage layer: StorageWriter phases (plans and write results are opaque byte strings owned
# by the writer, moved between ranks by the host's own collectives)
# ------------------------------------------------------------------------------------------------

shardpoint_writer_new(out, dir, options) =
    @ccall libshardpoint.shardpoint_writer_new(
        out::Ptr{Ptr{shardpoint_writer}}, dir::Cstring, options::Ptr{shardpoint_save_options})::Cint

shardpoint_writer_free(writer) =
    @ccall libshardpoint.shardpoint_writer_free(writer::Ptr{shardpoint_writer})::Cvoid

shardpoint_writer_set_up(writer, rank, world_size) =
    @ccall libshardpoint.shardpoint_writer_set_up(writer::Ptr{shardpoint_writer}, rank::Int32, world_size::Int32)::Cint

shardpoint_writer_add_tensor(writer, fqn, dtype, ndim, global_shape, chunk_offsets, chunk_sizes, data, strides) =
    @ccall libshardpoint.shardpoint_writer_add_tensor(
        writer::Ptr{shardpoint_writer}, fqn::Cstring, dtype::Int32, ndim::UInt32, global_shape::Ptr{UInt64},
        chunk_offsets::Ptr{UInt64}, chunk_sizes::Ptr{UInt64}, data::Ptr{Cvoid}, strides::Ptr{Int64})::Cint

shardpoint_writer_add_bytes(writer, fqn, data, len) =
    @ccall libshardpoint.shardpoint_writer_add_bytes(
        writer::Ptr{shardpoint_writer}, fqn::Cstring, data::Ptr{Cvoid}, len::UInt64)::Cint

shardpoint_writer_set_metadata(writer, key, value) =
    @ccall libshardpoint.shardpoint_writer_set_metadata(writer::Ptr{shardpoint_writer}, key::Cstring, value::Cstring)::Cint

shardpoint_writer_local_plan(writer, out_plan, out_len) =
    @ccall libshardpoint.shardpoint_writer_local_plan(
        writer::Ptr{shardpoint_writer}, out_plan::Ptr{Ptr{Cvoid}}, out_len::Ptr{UInt64})::Cint

shardpoint_writer_global_plan(writer, count, plans, lens) =
    @ccall libshardpoint.shardpoint_writer_global_plan(
        writer::Ptr{shardpoint_writer}, count::UInt32, plans::Ptr{Ptr{Cvoid}}, lens::Ptr{UInt64})::Cint

shardpoint_writer_final_plan(writer, rank, out_plan, out_len) =
    @ccall libshardpoint.shardpoint_writer_final_plan(
        writer::Ptr{shardpoint_writer}, rank::UInt32, out_plan::Ptr{Ptr{Cvoid}}, out_len::Ptr{UInt64})::Cint

shardpoint_writer_write(writer, final_plan, len, out_results, out_len) =
    @ccall libshardpoint.shardpoint_writer_write(
        writer::Ptr{shardpoint_writer}, final_plan::Ptr{Cvoid}, len::UInt64, out_results::Ptr{Ptr{Cvoid}},
        out_len::Ptr{UInt64})::Cint

shardpoint_writer_write_bound(writer, final_plan, len) =
    @ccall libshardpoint.shardpoint_writer_write_bound(
        writer::Ptr{shardpoint_writer}, final_plan::Ptr{Cvoid}, len::UInt64)::Cint

shardpoint_writer_finish(writer, count, results, lens) =
    @ccall libshardpoint.shardpoint_writer_finish(
        writer::Ptr{shardpoint_writer}, count::UInt32, results::Ptr{Ptr{Cvoid}}, lens::Ptr{UInt64})::Cint

shardpoint_writer_abort(writer) =
    @ccall libshardpoint.shardpoint_writer_abort(writer::Ptr{shardpoint_writer})::Cint

# callback: a shardpoint_progress_callback (see shardpoint_save_set_progress), or C_NULL. Set
# before the first write; reports shardpoint_writer_write_bound and shardpoint_writer_write.
shardpoint_writer_set_progress(writer, callback, user) =
    @ccall libshardpoint.shardpoint_writer_set_progress(
        writer::Ptr{shardpoint_writer}, callback::Ptr{Cvoid}, user::Ptr{Cvoid})::Cint

shardpoint_writer_committed(writer, out_committed) =
    @ccall libshardpoint.shardpoint_writer_committed(writer::Ptr{shardpoint_writer}, out_committed::Ptr{Int32})::Cint

shardpoint_writer_set_framework_metadata(writer, key, value) =
    @ccall libshardpoint.shardpoint_writer_set_framework_metadata(
        writer::Ptr{shardpoint_writer}, key::Cstring, value::Cstring)::Cint

shardpoint_writer_plan_tensor(writer, fqn, dtype, ndim, global_shape, chunk_offsets, chunk_sizes) =
    @ccall libshardpoint.shardpoint_writer_plan_tensor(
        writer::Ptr{shardpoint_writer}, fqn::Cstring, dtype::Int32, ndim::UInt32, global_shape::Ptr{UInt64},
        chunk_offsets::Ptr{UInt64}, chunk_sizes::Ptr{UInt64})::Cint

shardpoint_writer_plan_bytes(writer, fqn) =
    @ccall libshardpoint.shardpoint_writer_plan_bytes(writer::Ptr{shardpoint_writer}, fqn::Cstring)::Cint

shardpoint_writer_assigned(writer, final_plan, len, out_items, out_count) =
    @ccall libshardpoint.shardpoint_writer_assigned(
        writer::Ptr{shardpoint_writer}, final_plan::Ptr{Cvoid}, len::UInt64, out_items::Ptr{Ptr{UInt32}},
        out_count::Ptr{UInt64})::Cint

shardpoint_writer_bind_tensor(writer, item, data, strides) =
    @ccall libshardpoint.shardpoint_writer_bind_tensor(
        writer::Ptr{shardpoint_writer}, item::UInt64, data::Ptr{Cvoid}, strides::Ptr{Int64})::Cint

shardpoint_writer_bind_bytes(writer, item, data, len) =
    @ccall libshardpoint.shardpoint_writer_bind_bytes(
        writer::Ptr{shardpoint_writer}, item::UInt64, data::Ptr{Cvoid}, len::UInt64)::Cint

# ------------------------------------------------------------------------------------------------
# The storage layer: StorageReader (host-planned reads)
# ------------------------------------------------------------------------------------------------

shardpoint_reader_framework_metadata_get(reader, key, out_value) =
    @ccall libshardpoint.shardpoint_reader_framework_metadata_get(
        reader::Ptr{shardpoint_reader}, key::Cstring, out_value::Ptr{Ptr{UInt8}})::Cint

shardpoint_reader_find_chunk(reader, index, ndim, offsets, out_chunk) =
    @ccall libshardpoint.shardpoint_reader_find_chunk(
        reader::Ptr{shardpoint_reader}, index::UInt64, ndim::UInt32, offsets::Ptr{UInt64},
        out_chunk::Ptr{UInt64})::Cint

shardpoint_load_add_chunk(load, fqn, dtype, chunk, ndim, storage_offsets, lengths, dst, strides) =
    @ccall libshardpoint.shardpoint_load_add_chunk(
        load::Ptr{shardpoint_load}, fqn::Cstring, dtype::Int32, chunk::UInt64, ndim::UInt32,
        storage_offsets::Ptr{UInt64}, lengths::Ptr{UInt64}, dst::Ptr{Cvoid}, strides::Ptr{Int64})::Cint

end # module LibShardpoint
