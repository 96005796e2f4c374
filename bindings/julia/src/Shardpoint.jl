"""
    Shardpoint

Julia binding of shardpoint, the storage layer of distributed checkpointing (C ABI in
`capi/include/shardpoint.h`). The library is the file named by the preference "library"
(Preferences.jl: `set_preferences!(Shardpoint, "library" => path)`), else the platform's name for it
(`libshardpoint.so.0`, `libshardpoint.0.dylib`, `libshardpoint.dll`) on the loader's search path.

Array rule: a Julia array of size `(d1, ..., dn)` is the checkpoint tensor of shape `(d1, ..., dn)`,
and `A[i1, ..., in]` is its element `[i1-1, ..., in-1]`. Julia's column-major memory is described to
the library with element strides, so nothing is transposed or copied. Offsets (`offsets=`) are
0-based element offsets, as stored in the checkpoint; index ranges are ordinary 1-based ranges.
"""
module Shardpoint

include("LibShardpoint.jl")
const L = LibShardpoint

include("errors.jl")
include("dtypes.jl")
include("arrays.jl")
include("comm.jl")
include("save.jl")
include("reader.jl")
include("load.jl")
include("gc.jl")

export ShardpointError
export Comm, rank, nranks, gather!, bcast!, LocalGroup, LocalRank, run_local
export Save, add_tensor!, add_tensors!, add_bytes!, set_metadata!, commit!, save_flags, committed, is_no_space
export Reader, EntryInfo, ChunkInfo, StorageInfo, FileInfo
export entries, entry, chunks, files, user_metadata, storage_info, verify, verify_each, VerifyProblem, block_size
export collect_garbage
export read_tensor, read_tensor!, read_bytes, read_bytes!
export Load, execute!, skipped_count

"""
    version() -> VersionNumber

The version of the loaded shardpoint library.
"""
version() = VersionNumber(unsafe_string(L.shardpoint_version_string()))

end # module Shardpoint
