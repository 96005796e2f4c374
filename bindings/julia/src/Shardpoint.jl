"""
    Shardpoint

Julia binding of shardpoint, the storage layer of distributed checkpointing (C ABI in
`capi/include/shardpoint.h`). The library is the file named by the preference "library"
(Preferences.jl: `set_preferences!(Shardpoint, "library" => path)`), else the platform's name for it
(`libshardpoint.so.0`, `libshardpoint.0.dylib`, `libshardpoint.dll`) on the loader's search path.

Array rule: a Julia array of size `(d1, ..., dn)` is the checkpoint tensor of shape `(d1, ..., dn)`,
with the same element at the same index. Julia's column-major memory is described to the library
with element strides, so nothing is transposed or copied.

Positions are 1-based, as Julia indexes arrays, in every call that takes or returns one. A box of a
tensor is a tuple of unit ranges, one per dimension: `read_tensor!(reader, "w", dest; at=(3:4, 1:8))`
reads `W[3:4, 1:8]` of the saved tensor `W` into `dest` (of size `(2, 8)`),
`add_tensor!(save, "w", A; at=(3:4, 1:8), global_shape=(10, 8))` saves `A` as that box, and
`ChunkInfo.box` reports where a saved chunk sits in the same form. Entries, chunks, files and
metadata pairs are numbered from 1 (`entry(reader, 1)`, `VerifyProblem.chunk`).

Two numbers are not positions in a tensor and stay 0-based: ranks (`rank(comm)`, `run_local`,
`FileInfo.rank`, `ChunkInfo.writer_rank`) are numbered from 0, as in MPI and MPI.jl's
`MPI.Comm_rank`; byte offsets in data files (`file_offset`) count from 0, as `seek` takes them.
The numbers a progress function receives (`commit!(save; progress=f)`) are byte counts, not
positions: `done` of `total` bytes, from 0 to `total`.

Step numbers of a `CheckpointManager` (`Save(manager, 100)` saves `ROOT/step-100`) are labels of
a training run, not positions: they are passed and returned as they are, from 0.

Asynchronous saves (`commit_async!(save, staging)`, then `wait(save)`) copy the data into a
reusable `Staging` area and commit in the background; they are for a single process and take no
progress function (see `commit_async!`).
"""
module Shardpoint

include("LibShardpoint.jl")
const L = LibShardpoint

include("errors.jl")
include("dtypes.jl")
include("arrays.jl")
include("positions.jl")
include("progress.jl")
include("comm.jl")
include("staging.jl")
include("save.jl")
include("async.jl")
include("reader.jl")
include("load.jl")
include("gc.jl")
include("manager.jl")
include("convert.jl")

export ShardpointError
export Comm, rank, nranks, gather!, bcast!, LocalGroup, LocalRank, run_local
export Save, add_tensor!, add_tensors!, add_bytes!, set_metadata!, commit!, save_flags, committed, is_no_space
export is_canceled
export Staging, capacity, staging_size, commit_async!, cancel!  # and Base.wait, Base.isready of a Save
export Reader, EntryInfo, ChunkInfo, StorageInfo, FileInfo
export entries, entry, chunks, files, user_metadata, storage_info, verify, verify_each, VerifyProblem, block_size
export collect_garbage
export read_tensor, read_tensor!, read_bytes, read_bytes!
export Load, execute!, skipped_count
export CheckpointManager, StepInfo, step_path, latest_step, steps, apply_retention!, delete_step!
export delete_checkpoint
export convert_to_safetensors, convert_from_safetensors

"""
    version() -> VersionNumber

The version of the loaded shardpoint library.
"""
version() = VersionNumber(unsafe_string(L.shardpoint_version_string()))

end # module Shardpoint
