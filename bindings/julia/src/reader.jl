# Reading: an open checkpoint, its metadata, and whole-request convenience reads.

"""
    Reader(dir; checksums=true, allow_partial=false, io_threads=0, comm=nothing)
    Reader(f, dir; kwargs...)

Opens the checkpoint in `dir` (reads and validates its metadata, no tensor bytes). `checksums=false`
skips CRC-32 checks of data on reads; `allow_partial=true` lets loads skip requests for missing
entries. With `comm` the open is collective: rank 0 alone reads the metadata and broadcasts it, and
when it cannot, every rank throws rank 0's error. Close it with `close` (or use the do-block form); loads created from it keep it alive
until they are closed.
"""
mutable struct Reader
    ptr::Ptr{L.shardpoint_reader}
    borrowers::Threads.Atomic{Int}  # open loads reading through it
    closing::Threads.Atomic{Bool}
    freed::Threads.Atomic{Bool}
    verify_lock::ReentrantLock      # verifies take turns: the reader has one progress callback

    function Reader(ptr::Ptr{L.shardpoint_reader})
        r = new(ptr, Threads.Atomic{Int}(0), Threads.Atomic{Bool}(false), Threads.Atomic{Bool}(false),
                ReentrantLock())
        return finalizer(close, r)
    end
end

function Reader(dir::AbstractString; checksums::Bool=true, allow_partial::Bool=false, io_threads::Integer=0,
                comm::Union{Nothing,Comm}=nothing)
    options = Ref{L.shardpoint_load_options}()
    check(L.shardpoint_load_options_init(options, L.SHARDPOINT_LOAD_OPTIONS_VERSION))
    flags = options[].flags
    checksums || (flags |= L.SHARDPOINT_LOAD_NO_VERIFY)
    allow_partial && (flags |= L.SHARDPOINT_LOAD_ALLOW_PARTIAL)
    options[] = L.shardpoint_load_options(options[].version, flags, UInt32(io_threads))
    out = Ref{Ptr{L.shardpoint_reader}}(C_NULL)
    cptr = borrow(comm)
    clear_callback_error(comm)
    rc = try
        GC.@preserve comm L.shardpoint_reader_open_shared(out, String(dir), options, cptr)
    finally
        giveback(comm)
    end
    rc == 0 || throw(with_callback_error(last_error(rc), comm))
    return Reader(out[])
end

function Reader(f::Function, dir::AbstractString; kwargs...)
    r = Reader(dir; kwargs...)
    try
        return f(r)
    finally
        close(r)
    end
end

Base.isopen(r::Reader) = !r.closing[]

# Frees the reader now, or when the last load reading through it is closed.
function Base.close(r::Reader)
    r.closing[] = true
    free_if_unused(r)
    return nothing
end

function free_if_unused(r::Reader)
    if r.closing[] && r.borrowers[] == 0 && !Threads.atomic_xchg!(r.freed, true)
        L.shardpoint_reader_free(r.ptr)
    end
    return nothing
end

function borrow(r::Reader)
    p = handle(r)
    Threads.atomic_add!(r.borrowers, 1)
    return p
end

function giveback(r::Reader)
    Threads.atomic_sub!(r.borrowers, 1)
    free_if_unused(r)
    return nothing
end

function handle(r::Reader)
    r.closing[] && throw(ArgumentError("the reader is closed"))
    return r.ptr
end

# ------------------------------------------------------------------------------------------------
# Metadata. Strings and arrays the library returns belong to the reader: they are copied while the
# reader is preserved.
# ------------------------------------------------------------------------------------------------

"""What a checkpoint says about the save that made it."""
struct StorageInfo
    checkpoint_id::String
    save_id::String
    library_version::String
    created_unix_ns::Int64
    world_size::Int
    format_major::Int
    format_minor::Int
    alignment::Int
    file_count::Int
    total_stored_bytes::Int
end

"""One data file of a checkpoint: its name (relative to the checkpoint directory), its size when
the checkpoint was committed, and the rank that wrote it (0-based, as MPI numbers ranks)."""
struct FileInfo
    name::String
    size::Int
    rank::Int
end

"""
One entry of a checkpoint. `kind` is `:tensor` or `:bytes`; `dtype` a canonical name (`:f32`) or
`nothing` for bytes; `shape` the global shape (a Julia array of this size holds the tensor).
"""
struct EntryInfo
    fqn::String
    kind::Symbol
    dtype::Union{Nothing,Symbol}
    shape::Vector{Int}
    chunk_count::Int
    numel::Int
    nbytes::Int
    stored_bytes::Int
    covered_numel::Int
end

"""
One saved chunk. `box` is where it sits in the tensor, 1-based unit ranges, one per dimension
(`W[c.box...]` is the chunk of the tensor `W`; `read_tensor!(reader, fqn, dest; at=c.box)` reads
just it; a bytes entry's chunk has the box `()`). Then where its bytes are (`file`, and
`file_offset`, a 0-based byte offset as `seek` takes it) and how they are stored (`transform` is
`:none`, `:deflate`, `:zlib_blocks` or `:zstd_blocks`; `shuffle_width` the element size of a block
transform's byte shuffle, 0 for none). `writer_rank` is 0-based, as MPI numbers ranks.
"""
struct ChunkInfo
    box::Tuple{Vararg{UnitRange{Int}}}
    file::String
    file_offset::Int
    stored_length::Int
    raw_length::Int
    crc32::UInt32
    transform::Symbol
    writer_rank::Int
    shuffle_width::Int
end

cstring(p::Ptr{UInt8}) = p == C_NULL ? "" : unsafe_string(p)

"""
    storage_info(reader) -> StorageInfo
"""
function storage_info(r::Reader)
    info = GC.@preserve r begin
        out = Ref{L.shardpoint_storage_info}()
        check(L.shardpoint_reader_storage_info(handle(r), out))
        i = out[]
        StorageInfo(cstring(i.checkpoint_id), cstring(i.save_id), cstring(i.library_version),
                    i.created_unix_ns, Int(i.world_size), Int(i.format_major), Int(i.format_minor),
                    Int(i.alignment), Int(i.file_count), Int(i.total_stored_bytes))
    end
    return info
end

"""
    files(reader) -> Vector{FileInfo}

The data files of the checkpoint.
"""
function files(r::Reader)
    result = FileInfo[]
    GC.@preserve r begin
        info = Ref{L.shardpoint_storage_info}()
        check(L.shardpoint_reader_storage_info(handle(r), info))
        out = Ref{L.shardpoint_file_info}()
        for i in 1:Int(info[].file_count)
            check(L.shardpoint_reader_file_info(handle(r), c_index(i), out))
            f = out[]
            push!(result, FileInfo(cstring(f.name), Int(f.size), Int(f.rank)))
        end
    end
    return result
end

function entry_count(r::Reader)
    out = Ref{UInt64}(0)
    rc = GC.@preserve r L.shardpoint_reader_entry_count(handle(r), out)
    check(rc)
    return Int(out[])
end

# The library's (0-based) number of entry `fqn`, to pass back to the library as it is.
function entry_index(r::Reader, fqn::AbstractString)
    out = Ref{UInt64}(0)
    name = String(fqn)
    rc = GC.@preserve r L.shardpoint_reader_find(handle(r), name, out)
    check(rc)
    return out[]
end

function raw_entry_info(r::Reader, index::UInt64)
    out = Ref{L.shardpoint_entry_info}()
    rc = GC.@preserve r L.shardpoint_reader_entry_info(handle(r), index, out)
    check(rc)
    return out[]
end

function kind_symbol(kind::Int32)
    kind == L.SHARDPOINT_ENTRY_TENSOR && return :tensor
    kind == L.SHARDPOINT_ENTRY_BYTES && return :bytes
    return Symbol("kind", kind)
end

function transform_symbol(transform::Int32)
    transform == L.SHARDPOINT_TRANSFORM_NONE && return :none
    transform == L.SHARDPOINT_TRANSFORM_DEFLATE && return :deflate
    transform == L.SHARDPOINT_TRANSFORM_ZLIB_BLOCKS && return :zlib_blocks
    transform == L.SHARDPOINT_TRANSFORM_ZSTD_BLOCKS && return :zstd_blocks
    return Symbol("transform", transform)
end

function entry_info(r::Reader, index::UInt64)
    info = GC.@preserve r begin
        e = raw_entry_info(r, index)
        dtype = e.kind == L.SHARDPOINT_ENTRY_TENSOR ? dtype_name(e.dtype) : nothing
        EntryInfo(cstring(e.fqn), kind_symbol(e.kind), dtype, copy_u64s(e.shape, e.ndim),
                  Int(e.chunk_count), Int(e.numel), Int(e.nbytes), Int(e.stored_bytes),
                  Int(e.covered_numel))
    end
    return info
end

"""
    entries(reader) -> Vector{EntryInfo}

Every entry of the checkpoint, sorted by name (byte order).
"""
entries(r::Reader) = [entry_info(r, c_index(i)) for i in 1:entry_count(r)]

"""
    entry(reader, fqn) -> EntryInfo
    entry(reader, i) -> EntryInfo

Entry `fqn`, or the `i`-th entry (1-based: the entry `entries(reader)[i]` describes).
"""
entry(r::Reader, fqn::AbstractString) = entry_info(r, entry_index(r, fqn))
entry(r::Reader, i::Integer) = entry_info(r, c_index(i))

"""
    chunks(reader, fqn) -> Vector{ChunkInfo}

The saved chunks of entry `fqn`, chunk 1 first (a bytes entry has one chunk with no dimensions).
"""
function chunks(r::Reader, fqn::AbstractString)
    result = ChunkInfo[]
    GC.@preserve r begin
        index = entry_index(r, fqn)
        e = raw_entry_info(r, index)
        ndim = e.kind == L.SHARDPOINT_ENTRY_TENSOR ? Int(e.ndim) : 0
        for c in 1:Int(e.chunk_count)
            out = Ref{L.shardpoint_chunk_info}()
            check(L.shardpoint_reader_chunk_info(handle(r), index, c_index(c), out))
            ci = out[]
            push!(result, ChunkInfo(julia_ranges(ci.offsets, ci.sizes, ndim), cstring(ci.file),
                                    Int(ci.file_offset), Int(ci.stored_length), Int(ci.raw_length),
                                    ci.crc32, transform_symbol(ci.transform), Int(ci.writer_rank),
                                    Int(ci.shuffle_width)))
        end
    end
    return result
end

"""
    user_metadata(reader) -> Dict{String,String}
    user_metadata(reader, key) -> String

The user key/value pairs recorded by the save (`set_metadata!`; `ENOTFOUND` for a missing key).
Not called `metadata`, which DataAPI and the packages built on it export.
"""
function user_metadata(r::Reader)
    result = Dict{String,String}()
    GC.@preserve r begin
        n = Ref{UInt64}(0)
        check(L.shardpoint_reader_metadata_count(handle(r), n))
        key = Ref{Ptr{UInt8}}(C_NULL)
        value = Ref{Ptr{UInt8}}(C_NULL)
        for i in 1:Int(n[])
            check(L.shardpoint_reader_metadata_at(handle(r), c_index(i), key, value))
            result[cstring(key[])] = cstring(value[])
        end
    end
    return result
end

function user_metadata(r::Reader, key::AbstractString)
    k = String(key)
    value = Ref{Ptr{UInt8}}(C_NULL)
    result = GC.@preserve r begin
        check(L.shardpoint_reader_metadata_get(handle(r), k, value))
        cstring(value[])
    end
    return result
end

# Runs `call(p)`, a verify through the reader's handle `p`, with the progress state (nothing: no
# reports) as the reader's progress callback, and resets the callback to NULL when it returns, so
# that the reader keeps no pointer to the state. The reader has one callback for all its verifies,
# and each verify takes it when it starts: verifies of one reader take turns (its verify lock), so
# none reports to another's function. The reader is borrowed meanwhile (a close frees it after).
# `call` reads the last error itself, right after its C call.
function with_reader_progress(call::F, r::Reader, state::Union{Nothing,ProgressState}) where {F}
    p = borrow(r)
    try
        return lock(r.verify_lock) do
            GC.@preserve state begin
                if state === nothing
                    call(p)
                else
                    check(L.shardpoint_reader_set_progress(p, progress_pointer(), pointer_from_objref(state)))
                    try
                        call(p)
                    finally
                        # Fails only for a NULL reader; succeeding, it leaves the last error alone.
                        L.shardpoint_reader_set_progress(p, C_NULL, C_NULL)
                    end
                end
            end
        end
    finally
        giveback(r)
    end
end

"""
    verify(reader; progress=nothing)

Reads every stored extent and checks its CRC-32 (even when the reader skips checks on loads).
Throws `ShardpointError` (`ECHECKSUM`, `ETRUNCATED`, ...) naming the entry and file.

`progress`, a function `progress(phase, done, total)`, is told how the verify goes: `phase` is
`:verify`, `done` of `total` stored bytes are checked, once with `done == 0` at the start, then at
most every 50 ms, then once with `done == total`; `done` never decreases. It is called on the task
that called `verify`. Returning `false` cancels: `verify` throws `ShardpointError` `ECANCELED`
(`is_canceled(err)`). Any other return value, `nothing` included, goes on. An exception thrown by
`progress` cancels the same way and is rethrown once the library has stopped. The function is
the reader's only for this call; verifies of one reader run one at a time.
"""
function verify(r::Reader; progress=nothing)
    state = progress_state(progress)
    err = with_reader_progress(r, state) do p
        rc = L.shardpoint_reader_verify(p)
        rc == 0 ? nothing : last_error(rc)
    end
    throw_progress_error(state)
    err === nothing || throw(err)
    return nothing
end

"""One bad extent found by `verify_each`: the entry and its chunk (1-based:
`chunks(reader, fqn)[chunk]`), the data file and the first bad byte range in it (`file_offset`
0-based, as `seek` takes it), the error code (`ECHECKSUM`, `ETRUNCATED`, ...) and what is wrong."""
struct VerifyProblem
    fqn::String
    chunk::Int
    file::String
    file_offset::Int
    length::Int
    code::Int
    message::String
end

# The shardpoint_verify_callback: copies the problem (its strings live for the call only) into the
# vector `user` points at. Nothing may be thrown through C: a failure stops the verification.
function verify_callback(user::Ptr{Cvoid}, problem::Ptr{L.shardpoint_verify_problem})::Cint
    try
        p = unsafe_load(problem)
        found = unsafe_pointer_to_objref(user)::Vector{VerifyProblem}
        push!(found, VerifyProblem(cstring(p.fqn), julia_index(p.chunk), cstring(p.file), Int(p.file_offset),
                                   Int(p.length), Int(p.code), cstring(p.message)))
        return Cint(0)
    catch
        return Cint(1)
    end
end

"""
    verify_each(reader; progress=nothing) -> Vector{VerifyProblem}

Reads every stored extent like `verify`, but checks them all and returns one `VerifyProblem` per
bad extent, in metadata order (empty when everything checks). Other failures throw. `progress`
is as for `verify`: returning `false` throws `ECANCELED` (and no problems are returned), an
exception it throws is rethrown.
"""
function verify_each(r::Reader; progress=nothing)
    found = VerifyProblem[]
    count = Ref{UInt64}(0)
    callback = @cfunction(verify_callback, Cint, (Ptr{Cvoid}, Ptr{L.shardpoint_verify_problem}))
    state = progress_state(progress)
    err = GC.@preserve found begin
        with_reader_progress(r, state) do p
            rc = L.shardpoint_reader_verify_each(p, callback, pointer_from_objref(found), count)
            # Bad extents found: their codes are the result. Anything else (a cancel included) throws.
            ok = rc == 0 || (count[] > 0 && rc != ECANCELED)
            ok ? nothing : last_error(rc)
        end
    end
    throw_progress_error(state)
    err === nothing || throw(err)
    return found
end

"""
    block_size(reader) -> Int

The number of bytes each block CRC-32 of the checkpoint covers.
"""
function block_size(r::Reader)
    out = Ref{UInt32}(0)
    rc = GC.@preserve r L.shardpoint_reader_block_size(handle(r), out)
    check(rc)
    return Int(out[])
end

# ------------------------------------------------------------------------------------------------
# Convenience reads (one request each, not collective)
# ------------------------------------------------------------------------------------------------

"""
    read_tensor!(reader, fqn, dest; at=nothing, dtype=nothing) -> dest

Reads tensor `fqn` into `dest`, any strided array (views with steps write in place). Without `at`
it is the whole tensor, and `size(dest)` must be its shape exactly (`ESHAPE` otherwise, naming
both shapes: a buffer of another shape is never filled in part). With `at`, 1-based unit ranges
(one per dimension, as `(3:4, 1:8)`), it is the box `W[at...]` of the saved tensor `W`: each range
must have `dest`'s size in its dimension (`ArgumentError` otherwise, also for steps and indices
below 1) and lie inside the tensor (`ESHAPE`). A part of a tensor is read only when asked for.
The dtype must match the stored one (`EDTYPE` otherwise): it follows from `eltype(dest)`, or pass
`dtype` for raw bits (bf16, f8).
"""
function read_tensor!(r::Reader, fqn::AbstractString, dest::AbstractArray{T};
                      at=nothing, dtype=nothing) where {T}
    code = element_dtype(T, dtype)
    nd = ndims(dest)
    strides_ = element_strides(dest)
    offs = read_offsets(r, fqn, dest, at)
    sizes = UInt64[d for d in size(dest)]
    name = String(fqn)
    rc = GC.@preserve r dest begin
        L.shardpoint_reader_read_tensor(handle(r), name, code, UInt32(nd), offs, sizes,
                                        first_pointer(dest), strides_)
    end
    check(rc)
    return dest
end

# The global shape of tensor `fqn`, or nothing for a missing or bytes entry (those are left to the
# library: ENOTFOUND, a skip under allow_partial, EKIND).
function tensor_shape(r::Reader, fqn::AbstractString)
    out = Ref{UInt64}(0)
    name = String(fqn)
    rc = GC.@preserve r L.shardpoint_reader_find(handle(r), name, out)
    rc == 0 || return nothing
    e = entry_info(r, out[])
    return e.kind === :tensor ? Tuple(e.shape) : nothing
end

# The library's offsets of a read of the box `at` of tensor `fqn` into `dest`. `at === nothing`
# asks for the whole tensor, whose shape `dest` must have.
function read_offsets(r::Reader, fqn::AbstractString, dest::AbstractArray, at)
    shape = tensor_shape(r, fqn)
    if at === nothing && shape !== nothing && shape != size(dest)
        throw(binding_error(ESHAPE, "destination has shape $(size(dest)) but \"$fqn\" is $shape"))
    end
    return c_offsets(at, size(dest), shape, fqn)
end

# The box `inds` (unit ranges, integers or `:`, one per dimension) of a tensor of `shape` as the
# ranges `at` takes: an integer i is i:i (its dimension is kept), `:` the whole dimension.
function box_ranges(shape::Vector{Int}, inds::Tuple)
    length(inds) == length(shape) ||
        throw(ArgumentError("$(length(inds)) indices for a tensor with $(length(shape)) dimensions"))
    return ntuple(d -> index_range(inds[d], shape[d]), length(inds))
end

index_range(::Colon, n::Int) = 1:n
index_range(i::Integer, ::Int) = Int(i):Int(i)
index_range(r::AbstractRange{<:Integer}, ::Int) = r  # c_offsets checks its step and bounds
index_range(ix, ::Int) = throw(ArgumentError("index $(repr(ix)): use a unit range, an integer or :"))

"""
    read_tensor(reader, fqn, inds...; element_type=nothing) -> Array

Reads tensor `fqn` (or the box given by 1-based `inds`: unit ranges, integers or `:`, one per
dimension; integers keep their dimension) into a new array. The element type follows from the
stored dtype (`UInt16` / `UInt8` raw bits for bf16 / f8) unless `element_type` names another type
of the same size.
"""
function read_tensor(r::Reader, fqn::AbstractString, inds...; element_type=nothing)
    e = entry(r, fqn)
    e.kind === :tensor || throw(binding_error(EKIND, "entry \"$fqn\" is not a tensor"))
    code = dtype_code(e.dtype)
    T = element_type === nothing ? julia_type(code) : element_type
    if isempty(inds)
        return read_tensor!(r, fqn, Array{T}(undef, e.shape...); dtype=code)
    end
    at = box_ranges(e.shape, inds)
    dest = Array{T}(undef, map(length, at)...)
    return read_tensor!(r, fqn, dest; at=at, dtype=code)
end

"""
    read_bytes!(reader, fqn, buf) -> Int

Reads blob `fqn` into the contiguous byte vector `buf` (`ERANGE` if too small); returns its length.
"""
function read_bytes!(r::Reader, fqn::AbstractString, buf::AbstractVector{UInt8})
    require_strided(buf)
    stride(buf, 1) == 1 || throw(ArgumentError("the buffer must be contiguous"))
    out_len = Ref{UInt64}(0)
    name = String(fqn)
    rc = GC.@preserve r buf begin
        L.shardpoint_reader_read_bytes(handle(r), name, first_pointer(buf), UInt64(length(buf)), out_len)
    end
    check(rc)
    return Int(out_len[])
end

"""
    read_bytes(reader, fqn) -> Vector{UInt8}

Reads blob `fqn` into a new vector.
"""
function read_bytes(r::Reader, fqn::AbstractString)
    e = entry(r, fqn)
    # At least one byte, so even an empty blob gets a real (non-NULL) buffer.
    buf = Vector{UInt8}(undef, max(e.nbytes, 1))
    n = read_bytes!(r, fqn, buf)
    return resize!(buf, n)
end
