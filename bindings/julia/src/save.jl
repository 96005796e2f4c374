# Saving.

"""
    save_flags(; overwrite=false, durable=true, allow_partial=false) -> UInt32

The `SHARDPOINT_SAVE_*` flags of `Save`'s options. Never `SHARDPOINT_SAVE_FSYNC`, which means
nothing now and would contradict `SHARDPOINT_SAVE_NO_FSYNC`.
"""
function save_flags(; overwrite::Bool=false, durable::Bool=true, allow_partial::Bool=false)
    flags = UInt32(0)
    overwrite && (flags |= L.SHARDPOINT_SAVE_OVERWRITE)
    durable || (flags |= L.SHARDPOINT_SAVE_NO_FSYNC)
    allow_partial && (flags |= L.SHARDPOINT_SAVE_ALLOW_PARTIAL)
    return flags
end

"""
    Save(dir; comm=nothing, overwrite=false, durable=true, allow_partial=false, compression=0,
         compression_level=0, shuffle=false, io_threads=0, alignment=0, checkpoint_id=nothing)
    Save(f, dir; progress=nothing, kwargs...)

A save of a checkpoint into directory `dir`: offer what this rank holds with `add_tensor!` /
`add_bytes!` / `set_metadata!`, then `commit!` (collective over `comm`). Nothing is written before
`commit!`. `compression` is a zlib level (0 stores raw bytes; 1..9 one zlib stream per chunk) or
`:zstd` / `:zlib` / `:deflate`: the first two compress every block alone (format 2; all cores, a
partial load restores only its blocks) at `compression_level` (0: the codec's fast default), with
`shuffle=true` byte-shuffling each block first.

Saves are durable: data files, metadata and the directory are fsynced before `commit!` returns.
`durable=false` skips every fsync: faster, and safe against a crash of the process, but NOT
against a power loss or a kernel crash, after which the new checkpoint (and with `overwrite` the
previous one too) may be lost or unreadable. A tensor that the ranks together leave partly
uncovered makes `commit!` throw `EUNCOVERED` (nothing is written) unless `allow_partial=true`.
The keyword `fsync` is deprecated and has no effect.

The arrays given to `add_tensor!` / `add_bytes!` are read during `commit!`, in place: the `Save`
keeps them referenced until then, and they must not be modified or resized before it returns.

The do-block form runs `f(save)`, commits (`commit!(save; progress)`: see there) and closes.
Otherwise call `close(save)` when done (a finalizer does it if you forget; an uncommitted save
writes nothing).

`commit_async!(save)` commits in the background instead: see there, and `wait`, `isready` and
`cancel!`. `Save(manager, step)` saves a step of a `CheckpointManager`'s run (see there). Closing a save whose asynchronous commit still runs waits for it to end (it is not
canceled).
"""
mutable struct Save
    ptr::Ptr{L.shardpoint_save}
    comm::Union{Nothing,Comm}
    keep::Vector{Any}  # memory the library reads during commit (or copies during commit_async!)
    committed::Bool
    progress::Union{Nothing,ProgressState}  # what the handle's progress `user` pointer points at
    async::Bool                         # an asynchronous commit was started
    staging::Union{Nothing,Staging}     # the area it uses, referenced until the save is closed
    owns_staging::Bool                  # that area was made for this save: closed with it

    function Save(ptr::Ptr{L.shardpoint_save}, comm::Union{Nothing,Comm})
        s = new(ptr, comm, Any[], false, nothing, false, nothing, false)
        return finalizer(free_save, s)
    end
end

function Save(dir::AbstractString; comm::Union{Nothing,Comm}=nothing, overwrite::Bool=false,
              durable::Bool=true, allow_partial::Bool=false,
              fsync::Union{Nothing,Bool}=nothing, compression::Union{Integer,Symbol}=0,
              compression_level::Integer=0, shuffle::Bool=false, io_threads::Integer=0,
              alignment::Integer=0, checkpoint_id::Union{Nothing,AbstractString}=nothing)
    fsync === nothing || Base.depwarn("Save(...; fsync) has no effect: saves are durable by default; " *
                                      "pass durable=false to skip fsync", :Save)
    path = String(dir)
    out = Ref{Ptr{L.shardpoint_save}}(C_NULL)
    with_save_options(; overwrite, durable, allow_partial, compression, compression_level, shuffle,
                      io_threads, alignment, checkpoint_id) do options
        cptr = borrow(comm)  # nothing may throw between here and the check below
        rc = L.shardpoint_save_new(out, path, cptr, options)
        if rc != 0
            err = last_error(rc)
            giveback(comm)
            throw(err)
        end
    end
    return Save(out[], comm)
end

# Runs `f(options)` with `options` a Ref{shardpoint_save_options} holding the options of `Save`'s
# keywords, valid during the call only (its checkpoint_id points into a string preserved
# meanwhile; the library copies what it keeps). Argument errors are thrown before `f` runs.
function with_save_options(f::F; overwrite::Bool=false, durable::Bool=true, allow_partial::Bool=false,
                           compression::Union{Integer,Symbol}=0, compression_level::Integer=0,
                           shuffle::Bool=false, io_threads::Integer=0, alignment::Integer=0,
                           checkpoint_id::Union{Nothing,AbstractString}=nothing) where {F}
    options = Ref{L.shardpoint_save_options}()
    check(L.shardpoint_save_options_init(options, L.SHARDPOINT_SAVE_OPTIONS_VERSION))
    flags = options[].flags | save_flags(; overwrite, durable, allow_partial)
    id = checkpoint_id === nothing ? nothing : String(checkpoint_id)
    codecs = Dict(:deflate => L.SHARDPOINT_CODEC_DEFLATE_STREAM, :zlib => L.SHARDPOINT_CODEC_ZLIB,
                  :zstd => L.SHARDPOINT_CODEC_ZSTD)
    if compression isa Symbol
        haskey(codecs, compression) || throw(ArgumentError("unknown compression :$compression (use :zstd, :zlib, :deflate or a zlib level)"))
        codec, level = codecs[compression], Int32(compression_level)
    else
        codec, level = L.SHARDPOINT_CODEC_DEFAULT, Int32(compression)
    end
    filters = shuffle ? L.SHARDPOINT_FILTER_SHUFFLE : UInt32(0)
    threads = UInt32(io_threads)
    align = UInt64(alignment)
    return GC.@preserve id begin
        # The options struct points into `id`; the library copies it during the call.
        idptr = id === nothing ? Ptr{UInt8}(C_NULL) : pointer(id)
        options[] = L.shardpoint_save_options(options[].version, flags, level, threads, align, idptr, codec, filters)
        f(options)
    end
end

function Save(f::Function, dir::AbstractString; progress=nothing, kwargs...)
    s = Save(dir; kwargs...)
    try
        f(s)
        commit!(s; progress=progress)
    finally
        close(s)
    end
    return nothing
end

Base.isopen(s::Save) = s.ptr != C_NULL

function Base.close(s::Save)
    # An asynchronous commit still running is waited for here, polling and yielding to other
    # tasks, rather than inside shardpoint_save_free, which would block this thread (and every
    # garbage collection of the process) until the commit ends.
    async_started(s) && wait_ended(s)
    free_save(s)
    return nothing
end

# Frees the handle. Also the finalizer, which must not yield: shardpoint_save_free then waits for
# an asynchronous commit itself (it runs no Julia code, see src/async.jl, so the wait ends).
function free_save(s::Save)
    p = s.ptr
    if p != C_NULL
        s.ptr = C_NULL
        L.shardpoint_save_free(p)
        empty!(s.keep)
        s.progress = nothing  # the handle that could call it is gone
        st = s.staging
        if st !== nothing
            st.user === s && (st.user = nothing)
            s.owns_staging && free_staging(st)  # the commit has ended: the area is free
            s.staging = nothing
        end
        giveback(s.comm)
    end
    return nothing
end

function handle(s::Save)
    s.ptr == C_NULL && throw(ArgumentError("the save is closed"))
    return s.ptr
end

"""
    add_tensor!(save, fqn, A; at=axes(A), global_shape=size(A), dtype=nothing) -> save

Offers `A` as the chunk `W[at...]` of the tensor `W` named `fqn`, of global shape `global_shape`.
`at` is 1-based unit ranges, one per dimension, each of `A`'s size in its dimension:
`add_tensor!(s, "w", A; at=(4:7, 1:6), global_shape=(10, 6))` offers rows 4 to 7 (`ArgumentError`
for another form, `ESHAPE` for a box outside `global_shape`). `A` may be any strided array (views,
steps, PermutedDimsArray); a `Number` is saved as a 0-dimensional tensor. The dtype follows from
`eltype(A)`; for bf16 and f8 pass raw bits (`UInt16` / `UInt8` arrays) and `dtype=:bf16`,
`:f8_e4m3fn` or `:f8_e5m2`.
"""
function add_tensor!(s::Save, fqn::AbstractString, A::AbstractArray{T};
                     at=nothing, global_shape=nothing, dtype=nothing) where {T}
    code, nd, shape, sizes, strides_ = chunk_arguments(A, global_shape, dtype)
    offs = c_offsets(at, size(A), shape, fqn)
    name = String(fqn)
    rc = GC.@preserve s A begin
        L.shardpoint_save_add_tensor(handle(s), name, code, UInt32(nd), shape, offs, sizes,
                                     first_pointer(A), strides_)
    end
    check(rc)
    push!(s.keep, A)
    return s
end

# add_tensor!'s arguments in the C ABI's terms, but for the position: dtype code, ndim, global
# shape, sizes, element strides.
function chunk_arguments(A::AbstractArray{T}, global_shape, dtype) where {T}
    code = element_dtype(T, dtype)
    nd = ndims(A)
    shape = u64_vector(global_shape === nothing ? size(A) : global_shape, nd, "global_shape")
    return code, nd, shape, UInt64[d for d in size(A)], element_strides(A)
end

"""
    add_tensors!(save, pairs) -> save

Offers many whole tensors at once (`fqn => array` pairs, e.g. a `Dict`), in one call of the C
ABI: all or nothing, so when one is refused none is kept and the error names its position.
Each array is offered as by `add_tensor!(save, fqn, array)`.
"""
function add_tensors!(s::Save, pairs)
    names = String[]
    arrays = AbstractArray[]
    arguments = []
    for (fqn, A) in pairs
        A isa Number && (A = fill(A))
        push!(names, String(fqn))
        push!(arrays, A)
        push!(arguments, chunk_arguments(A, nothing, nothing))
    end
    rc = GC.@preserve s names arrays arguments begin
        # Whole tensors: NULL chunk offsets are the origin (the header's shorthand).
        chunks = L.shardpoint_tensor_chunk[
            L.shardpoint_tensor_chunk(pointer(names[i]), a[1], UInt32(a[2]), pointer(a[3]),
                                      Ptr{UInt64}(C_NULL), pointer(a[4]), first_pointer(arrays[i]),
                                      pointer(a[5]))
            for (i, a) in enumerate(arguments)]
        GC.@preserve chunks L.shardpoint_save_add_tensors(handle(s), chunks, UInt64(length(chunks)),
                                                          Csize_t(sizeof(L.shardpoint_tensor_chunk)))
    end
    check(rc)
    append!(s.keep, arrays)
    return s
end

add_tensor!(s::Save, fqn::AbstractString, x::Number; dtype=nothing) =
    add_tensor!(s, fqn, fill(x); dtype=dtype)

"""
    add_bytes!(save, fqn, data) -> save

Offers an opaque blob: a contiguous `AbstractVector{UInt8}` (read in place during `commit!`) or a
string (copied).
"""
function add_bytes!(s::Save, fqn::AbstractString, data::AbstractVector{UInt8})
    require_strided(data)
    stride(data, 1) == 1 || throw(ArgumentError("blob data must be contiguous"))
    name = String(fqn)
    rc = GC.@preserve s data begin
        L.shardpoint_save_add_bytes(handle(s), name, first_pointer(data), UInt64(length(data)))
    end
    check(rc)
    push!(s.keep, data)
    return s
end

add_bytes!(s::Save, fqn::AbstractString, data::AbstractString) =
    add_bytes!(s, fqn, Vector{UInt8}(codeunits(String(data))))

"""
    set_metadata!(save, key, value) -> save

Records a user key/value pair (both strings) in the checkpoint's metadata.
"""
function set_metadata!(s::Save, key::AbstractString, value::AbstractString)
    k = String(key)
    v = String(value)
    rc = GC.@preserve s L.shardpoint_save_set_metadata(handle(s), k, v)
    check(rc)
    return s
end

"""
    commit!(save; progress=nothing) -> save

Collective. Plans, writes every rank's data and commits the metadata atomically; on failure
nothing is committed and a checkpoint that was at the path before is intact.

`progress`, a function `progress(phase, done, total)`, is told how this rank's write goes:
`phase` is `:write`, `done` of `total` bytes (the raw bytes of this rank's chunks) are written,
once with `done == 0` at the start, then at most every 50 ms, then once with `done == total`
(after the data file's fsync); `done` never decreases. It is called on the task that called
`commit!`. Returning `false` cancels the save: `commit!` throws `ShardpointError` `ECANCELED`
(`is_canceled(err)`; with a communicator the other ranks throw `ERANK`), nothing is committed
and the checkpoint that was at the path before is untouched. Any other return value, `nothing`
included, goes on: `progress=(phase, done, total) -> println(done, "/", total)` only reports. An
exception thrown by `progress` cancels the save the same way and is rethrown by `commit!` once
the library has stopped. (`commit_async!` takes no progress function.)
"""
function commit!(s::Save; progress=nothing)
    clear_callback_error(s.comm)
    keep = s.keep
    state = progress_state(progress)
    rc = GC.@preserve s keep state begin
        install_progress!(s, state) do callback, user
            L.shardpoint_save_set_progress(handle(s), callback, user)
        end
        L.shardpoint_save_commit(handle(s))
    end
    if rc != 0
        err = last_error(rc)
        empty!(keep)
        throw_progress_error(state)
        throw(with_callback_error(err, s.comm))
    end
    empty!(keep)  # the library is done with the borrowed memory
    s.committed = true
    throw_progress_error(state)  # only if the library finished regardless: committed, but report it
    return s
end
