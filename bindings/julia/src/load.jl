# Loading: several requests planned and read together, collective over a communicator.

"""
    Load(reader; comm=nothing)
    Load(f, reader; comm=nothing, progress=nothing)

A set of read requests executed together: add them with `add_tensor!` / `add_bytes!`, then
`execute!` (collective when `comm` is given). The destinations are written during `execute!`, in
place: the `Load` keeps them referenced until then, and they must not be resized before it returns.
The do-block form runs `f(load)`, executes (`execute!(load; progress)`: see there) and closes.
Otherwise `close(load)` when done.
"""
mutable struct Load
    ptr::Ptr{L.shardpoint_load}
    reader::Reader
    comm::Union{Nothing,Comm}
    keep::Vector{Any}  # destinations the library writes during execute
    executed::Bool
    progress::Union{Nothing,ProgressState}  # what the handle's progress `user` pointer points at

    function Load(ptr::Ptr{L.shardpoint_load}, reader::Reader, comm::Union{Nothing,Comm})
        ld = new(ptr, reader, comm, Any[], false, nothing)
        return finalizer(close, ld)
    end
end

function Load(r::Reader; comm::Union{Nothing,Comm}=nothing)
    out = Ref{Ptr{L.shardpoint_load}}(C_NULL)
    rptr = borrow(r)
    cptr = try
        borrow(comm)
    catch
        giveback(r)
        rethrow()
    end
    rc = GC.@preserve r comm L.shardpoint_load_new(out, rptr, cptr)
    if rc != 0
        err = last_error(rc)
        giveback(comm)
        giveback(r)
        throw(err)
    end
    return Load(out[], r, comm)
end

function Load(f::Function, r::Reader; progress=nothing, kwargs...)
    ld = Load(r; kwargs...)
    try
        f(ld)
        execute!(ld; progress=progress)
    finally
        close(ld)
    end
    return nothing
end

Base.isopen(ld::Load) = ld.ptr != C_NULL

# Frees the load first, then gives back the reader and the communicator it borrowed (the header
# requires loads to be freed before their reader).
function Base.close(ld::Load)
    p = ld.ptr
    if p != C_NULL
        ld.ptr = C_NULL
        L.shardpoint_load_free(p)
        empty!(ld.keep)
        ld.progress = nothing  # the handle that could call it is gone
        giveback(ld.comm)
        giveback(ld.reader)
    end
    return nothing
end

function handle(ld::Load)
    ld.ptr == C_NULL && throw(ArgumentError("the load is closed"))
    return ld.ptr
end

"""
    add_tensor!(load, fqn, dest; at=nothing, dtype=nothing) -> load

Requests tensor `fqn` into the strided array `dest` (written during `execute!`): without `at` the
whole tensor, whose shape `dest` must have exactly (`ESHAPE` otherwise); with `at`, 1-based unit
ranges (one per dimension, as `(3:4, 1:8)`), the box `W[at...]` of the saved tensor `W`, each range
of `dest`'s size in its dimension. The dtype must match the stored one. See `read_tensor!`.
"""
function add_tensor!(ld::Load, fqn::AbstractString, dest::AbstractArray{T};
                     at=nothing, dtype=nothing) where {T}
    code = element_dtype(T, dtype)
    nd = ndims(dest)
    strides_ = element_strides(dest)
    handle(ld)  # a closed load fails here, before the reader is asked
    offs = read_offsets(ld.reader, fqn, dest, at)
    sizes = UInt64[d for d in size(dest)]
    name = String(fqn)
    rc = GC.@preserve ld dest begin
        L.shardpoint_load_add_tensor(handle(ld), name, code, UInt32(nd), offs, sizes,
                                     first_pointer(dest), strides_)
    end
    check(rc)
    push!(ld.keep, dest)
    return ld
end

"""
    add_bytes!(load, fqn, dest) -> load

Requests blob `fqn` into the contiguous byte vector `dest` (at least the blob's length,
see `entry(reader, fqn).nbytes`).
"""
function add_bytes!(ld::Load, fqn::AbstractString, dest::AbstractVector{UInt8})
    require_strided(dest)
    stride(dest, 1) == 1 || throw(ArgumentError("the destination must be contiguous"))
    name = String(fqn)
    rc = GC.@preserve ld dest begin
        L.shardpoint_load_add_bytes(handle(ld), name, first_pointer(dest), UInt64(length(dest)))
    end
    check(rc)
    push!(ld.keep, dest)
    return ld
end

"""
    skipped_count(load) -> Int

Requests skipped because the reader allows partial loads and their entry is missing.
"""
function skipped_count(ld::Load)
    out = Ref{UInt64}(0)
    rc = GC.@preserve ld L.shardpoint_load_skipped_count(handle(ld), out)
    check(rc)
    return Int(out[])
end

"""
    execute!(load; progress=nothing) -> load

Reads every requested byte into the destinations (collective when the load has a communicator).
On failure the destinations may hold partial data.

`progress`, a function `progress(phase, done, total)`, is told how this rank's read goes: `phase`
is `:read`, `done` of `total` bytes are read (raw bytes for compressed data), once with
`done == 0` at the start, then at most every 50 ms, then once with `done == total`; `done` never
decreases. It is called on the task that called `execute!`. Returning `false` cancels the load:
`execute!` throws `ShardpointError` `ECANCELED` (`is_canceled(err)`; with a communicator the other
ranks throw `ERANK`) and the destinations may hold partial data. Any other return value, `nothing`
included, goes on. An exception thrown by `progress` cancels the load the same way and is rethrown
by `execute!` once the library has stopped.
"""
function execute!(ld::Load; progress=nothing)
    clear_callback_error(ld.comm)
    keep = ld.keep
    state = progress_state(progress)
    rc = GC.@preserve ld keep state begin
        install_progress!(ld, state) do callback, user
            L.shardpoint_load_set_progress(handle(ld), callback, user)
        end
        L.shardpoint_load_execute(handle(ld))
    end
    if rc != 0
        err = last_error(rc)
        empty!(keep)
        throw_progress_error(state)
        throw(with_callback_error(err, ld.comm))
    end
    empty!(keep)
    ld.executed = true
    throw_progress_error(state)  # only if the library finished regardless: report it
    return ld
end
