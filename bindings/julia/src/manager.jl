# The checkpoint manager: the steps of a training run under one root directory, ROOT/step-N, and
# their retention. Every rule lives in the library (shardpoint_manager_* in shardpoint.h); this
# file only translates it.
#
# A step number is a label of the run (step 0 is the directory step-0), not a position: it is
# passed to the library and returned from it as it is, never converted. Steps are `Int` here.

"""
    CheckpointManager(root; comm=nothing, keep_last=0, keep_every=0, keep_best=0,
                      best_metric=nothing, best_mode=:min, create=true)
    CheckpointManager(f, root; kwargs...)

The steps of a training run under directory `root`: one ordinary checkpoint directory per step,
`ROOT/step-N` (`step_path(m, N)`). Save a step with `Save(m, N)` (any save, asynchronous ones
included), then apply retention with `apply_retention!(m)`; the do-block form
`Save(m, N) do s ... end` does both.

Retention keeps a committed step when any enabled rule keeps it: the newest `keep_last`
committed steps, those whose number is a multiple of `keep_every`, and the `keep_best` best steps
by the user metadata value `best_metric` (a key given to `set_metadata!`, holding a decimal number
such as `"0.183"`; `best_mode` `:min` for a loss, `:max` for an accuracy; on equal values the newer
step is better). A rule with 0 is off. The newest committed step is always kept, a step a save is
writing is never deleted, and with every rule off (the defaults) no committed step is deleted.
`keep_best` needs `best_metric` and the reverse (`EINVAL` otherwise).

`create=true` makes the root (and its parents) when it is missing; with `create=false` a missing
root throws `ENOTFOUND`. With `comm`, every rank opens its own manager: saves made from it are
collective over `comm`, and retention deletes on rank 0 only (on the other ranks it returns at
once), so SPMD code calls it everywhere. The manager borrows `comm` until it is closed.

Deletion is crash-safe: a step is renamed to a hidden name, then removed; a process killed in
between leaves garbage that the next retention or `collect_garbage(m)` removes. A `Reader` open
on a deleted step keeps reading it.

Close it with `close` (a finalizer does it if you forget), or use the do-block form, which runs
`f(m)`, closes and returns what `f` returned. Saves made from it stay valid after it is closed.
"""
mutable struct CheckpointManager
    ptr::Ptr{L.shardpoint_manager}
    comm::Union{Nothing,Comm}
    root::String
    lock::ReentrantLock  # one call at a time: the strings the library returns live until the next

    function CheckpointManager(ptr::Ptr{L.shardpoint_manager}, comm::Union{Nothing,Comm}, root::String)
        m = new(ptr, comm, root, ReentrantLock())
        return finalizer(free_manager, m)
    end
end

# The library's number of a step.
function c_step(step::Integer)
    0 <= step <= typemax(UInt64) || throw(ArgumentError("step $step: steps are numbered from 0 to 2^64 - 1"))
    return UInt64(step)
end

# A retention count (keep_last, keep_every, keep_best) for the library.
function c_count(n::Integer, what::AbstractString)
    n >= 0 || throw(ArgumentError("$what must not be negative: $n"))
    return UInt64(n)
end

function CheckpointManager(root::AbstractString; comm::Union{Nothing,Comm}=nothing, keep_last::Integer=0,
                           keep_every::Integer=0, keep_best::Integer=0,
                           best_metric::Union{Nothing,AbstractString}=nothing, best_mode::Symbol=:min,
                           create::Bool=true)
    best_mode in (:min, :max) || throw(ArgumentError("best_mode must be :min or :max, not :$best_mode"))
    options = Ref{L.shardpoint_manager_options}()
    check(L.shardpoint_manager_options_init(options, L.SHARDPOINT_MANAGER_OPTIONS_VERSION))
    flags = options[].flags | (create ? L.SHARDPOINT_MANAGER_CREATE : UInt32(0))
    last_ = c_count(keep_last, "keep_last")
    every = c_count(keep_every, "keep_every")
    best = c_count(keep_best, "keep_best")
    mode = best_mode === :max ? L.SHARDPOINT_METRIC_MAX : L.SHARDPOINT_METRIC_MIN
    metric = best_metric === nothing ? nothing : String(best_metric)
    path = String(root)
    out = Ref{Ptr{L.shardpoint_manager}}(C_NULL)
    cptr = borrow(comm)  # nothing may throw between here and the check below
    rc = GC.@preserve metric begin
        # The options point into `metric`; the library copies it during the call.
        metricptr = metric === nothing ? Ptr{UInt8}(C_NULL) : pointer(metric)
        options[] = L.shardpoint_manager_options(options[].version, flags, last_, every, best, metricptr,
                                                 mode, options[].reserved)
        L.shardpoint_manager_open(out, path, cptr, options)
    end
    if rc != 0
        err = last_error(rc)
        giveback(comm)
        throw(err)
    end
    return CheckpointManager(out[], comm, path)
end

function CheckpointManager(f::Function, root::AbstractString; kwargs...)
    m = CheckpointManager(root; kwargs...)
    try
        return f(m)
    finally
        close(m)
    end
end

Base.isopen(m::CheckpointManager) = m.ptr != C_NULL

function Base.close(m::CheckpointManager)
    lock(m.lock) do
        free_manager(m)
    end
    return nothing
end

# Frees the handle and gives the communicator back. Also the finalizer (which takes no lock:
# nothing else can be using a manager that is being finalized).
function free_manager(m::CheckpointManager)
    p = m.ptr
    if p != C_NULL
        m.ptr = C_NULL
        L.shardpoint_manager_free(p)
        giveback(m.comm)
    end
    return nothing
end

# Runs `f(p)` with the open manager's handle `p`, one call at a time, and returns what it returns.
# `f` checks the return codes itself (`check`), right after its C calls, before the lock is
# released: the library's last error is read before anything else runs.
function with_manager(f::F, m::CheckpointManager) where {F}
    lock(m.lock) do
        m.ptr == C_NULL && throw(ArgumentError("the checkpoint manager is closed"))
        GC.@preserve m f(m.ptr)
    end
end

function Base.show(io::IO, m::CheckpointManager)
    print(io, "CheckpointManager(", repr(m.root), isopen(m) ? "" : ", closed", ")")
end

"""
    step_path(m, step) -> String

The directory of step `step`, `ROOT/step-N`, whether it exists or not.
"""
function step_path(m::CheckpointManager, step::Integer)
    n = c_step(step)
    out = Ref{Ptr{UInt8}}(C_NULL)
    return with_manager(m) do p
        check(L.shardpoint_manager_step_path(p, n, out))
        cstring(out[])  # the manager's string, valid until the next step_path: copied now
    end
end

"""
    Save(m::CheckpointManager, step; overwrite=false, durable=true, allow_partial=false,
         compression=0, compression_level=0, shuffle=false, io_threads=0, alignment=0,
         checkpoint_id=nothing) -> Save
    Save(f, m::CheckpointManager, step; progress=nothing, retention=true, kwargs...) -> Vector{Int}

A save of step `step` of the manager's run: exactly `Save(step_path(m, step); comm, kwargs...)`
with the manager's communicator, an ordinary `Save` to commit (`commit!`, or `commit_async!` then
`wait`) and close as any other, with the same options. A committed step is refused at the commit
(`EEXISTS`) unless `overwrite=true`. Apply retention once the commit succeeded:
`apply_retention!(m)`.

The do-block form runs `f(save)`, commits (`commit!(save; progress)`), closes, and then, unless
`retention=false`, applies retention; it returns the steps retention deleted (none on ranks other
than 0 of the communicator).
"""
function Save(m::CheckpointManager, step::Integer; overwrite::Bool=false, durable::Bool=true,
              allow_partial::Bool=false, compression::Union{Integer,Symbol}=0, compression_level::Integer=0,
              shuffle::Bool=false, io_threads::Integer=0, alignment::Integer=0,
              checkpoint_id::Union{Nothing,AbstractString}=nothing)
    n = c_step(step)
    comm = m.comm
    out = Ref{Ptr{L.shardpoint_save}}(C_NULL)
    with_save_options(; overwrite, durable, allow_partial, compression, compression_level, shuffle,
                      io_threads, alignment, checkpoint_id) do options
        with_manager(m) do p
            # The save uses the manager's communicator and borrows it, as every save does: the
            # communicator stays until the save is closed, even when the manager is closed first.
            borrow(comm)  # nothing may throw between here and the check below
            rc = L.shardpoint_manager_save_new(out, p, n, options)
            if rc != 0
                err = last_error(rc)
                giveback(comm)
                throw(err)
            end
        end
    end
    return Save(out[], comm)
end

function Save(f::Function, m::CheckpointManager, step::Integer; progress=nothing, retention::Bool=true,
              kwargs...)
    s = Save(m, step; kwargs...)
    try
        f(s)
        commit!(s; progress=progress)
    finally
        close(s)
    end
    return retention ? apply_retention!(m) : Int[]
end

"""
    latest_step(m) -> Union{Int,Nothing}

The highest committed step, or `nothing` when there is none.
"""
function latest_step(m::CheckpointManager)
    out = Ref{UInt64}(0)
    return with_manager(m) do p
        rc = L.shardpoint_manager_latest_step(p, out)
        rc == ENOTFOUND && return nothing  # no committed step
        check(rc)
        Int(out[])
    end
end

"""
One step directory of a manager's root, as `steps(m)` lists it. `state` is `:committed` (its
metadata is committed and valid and every data file it names is present), `:partial` (no
metadata: a save in progress, or the debris of a killed one) or `:damaged` (the metadata fails
validation, or a data file is missing or short); only committed steps count as saved. `busy`: a
save held the step's lock when it was listed (it is being written). `bytes` is the total size of
the files in its directory, `disk_bytes` the space they take on disk, `file_count` their number.
`time_unix_ns` is when a committed step's metadata was committed, else the directory's
modification time, in nanoseconds since the Unix epoch (`Dates.unix2datetime(t / 1e9)`).
`metric` is a committed step's value of the manager's `best_metric` (a string, as saved), or
`nothing`; `message` says what is wrong with a partial or damaged step (`""` when committed).
"""
struct StepInfo
    step::Int
    state::Symbol
    busy::Bool
    path::String
    bytes::Int
    disk_bytes::Int
    file_count::Int
    time_unix_ns::Int64
    metric::Union{Nothing,String}
    message::String
end

function step_state_symbol(state::Int32)
    state == L.SHARDPOINT_STEP_COMMITTED && return :committed
    state == L.SHARDPOINT_STEP_PARTIAL && return :partial
    state == L.SHARDPOINT_STEP_DAMAGED && return :damaged
    return Symbol("state", state)
end

"""
    steps(m) -> Vector{StepInfo}

Every step directory of the root now, by ascending step number: committed, partial and damaged
ones (see `StepInfo`). Reads every step's metadata, not its tensor bytes (no checksums are
verified).
"""
function steps(m::CheckpointManager)
    result = StepInfo[]
    with_manager(m) do p
        listed = Ref{UInt64}(0)
        check(L.shardpoint_manager_list(p, listed))
        out = Ref{L.shardpoint_step_info}()
        for i in 1:Int(listed[])
            # The strings belong to the manager's listing, valid until the next: copied now.
            check(L.shardpoint_manager_step_info(p, c_index(i), out))
            s = out[]
            metric = s.metric == C_NULL ? nothing : unsafe_string(s.metric)
            push!(result, StepInfo(Int(s.step), step_state_symbol(s.state), s.busy != 0, cstring(s.path),
                                   Int(s.bytes), Int(s.disk_bytes), Int(s.file_count), s.time_unix_ns,
                                   metric, cstring(s.message)))
        end
    end
    return result
end

"""
    delete_step!(m, step) -> m

Deletes step `step` crash-safely, whatever its state (damaged steps too) and whatever retention
would keep, on the calling rank. Throws `ENOTFOUND` when there is no such step and `ESTATE` when a
save is writing it (nothing is touched then).
"""
function delete_step!(m::CheckpointManager, step::Integer)
    n = c_step(step)
    with_manager(p -> check(L.shardpoint_manager_delete_step(p, n)), m)
    return m
end

# The shardpoint_retention_callback: records the step in the vector `user` points at and lets
# retention delete it. Nothing may be thrown through C: a failure stops retention (it and the
# steps after it are kept).
function retention_callback(user::Ptr{Cvoid}, step::UInt64, bytes::UInt64)::Cint
    try
        deleted = unsafe_pointer_to_objref(user)::Vector{Int}
        push!(deleted, Int(step))
        return Cint(0)
    catch
        return Cint(1)
    end
end

"""
    apply_retention!(m; dry_run=false) -> Vector{Int}

Deletes the committed steps that the manager's options do not keep (never the newest committed
one, never a damaged step, never a step a save holds: the next retention gets it), the partial
steps below the newest committed step that hold nothing but a killed save's debris, and the
leftovers of killed deletions. Returns the steps deleted, in the order deleted; with
`dry_run=true` the steps that would be, deleting nothing. Call it after the commit succeeded
(after `wait` for an asynchronous save).

On rank 0 of the manager's communicator (always without one); on the other ranks it does nothing
and returns no steps. Not collective. Steps deleted before a failure stay deleted.
"""
function apply_retention!(m::CheckpointManager; dry_run::Bool=false)
    deleted = Int[]
    flags = dry_run ? L.SHARDPOINT_RETENTION_DRY_RUN : UInt32(0)
    callback = @cfunction(retention_callback, Cint, (Ptr{Cvoid}, UInt64, UInt64))
    GC.@preserve deleted begin
        with_manager(m) do p
            check(L.shardpoint_manager_apply_retention(p, flags, callback, pointer_from_objref(deleted), C_NULL))
        end
    end
    return deleted
end

"""
    collect_garbage(m::CheckpointManager; dry_run=false) -> (files, bytes)

`collect_garbage` for a whole root: removes the leftovers of killed deletions (reported as
`".deleting-step-N-<hex>/"` with their total size), the debris of killed saves inside every step
that no save holds (`"step-N/data-<hex>-r00000.bin"`; steps a save holds are skipped, not waited
for), and the partial steps below the newest committed step that held nothing but such debris
(`"step-N/"`). Damaged steps are left as they are (see `delete_step!`). Returns the removed names,
relative to the root, as `name => size` pairs, and their total size; with `dry_run=true` only
reports them. On the calling rank.
"""
function collect_garbage(m::CheckpointManager; dry_run::Bool=false)
    files = Pair{String,Int}[]
    nfiles = Ref{UInt64}(0)
    nbytes = Ref{UInt64}(0)
    flags = dry_run ? L.SHARDPOINT_GC_DRY_RUN : UInt32(0)
    callback = @cfunction(gc_file_callback, Cint, (Ptr{Cvoid}, Ptr{UInt8}, UInt64))
    GC.@preserve files begin
        with_manager(m) do p
            check(L.shardpoint_manager_gc(p, flags, callback, pointer_from_objref(files), nfiles, nbytes))
        end
    end
    return (files=files, bytes=Int(nbytes[]))
end

"""
    delete_checkpoint(dir)

Deletes the checkpoint directory `dir` (one that holds a `shardpoint.meta` file, valid or not) as
crash-safely as a step of a manager: renamed to a hidden `.deleting-<name>-<hex>` beside it, then
removed (a leftover of a killed deletion is removed by `collect_garbage` of a manager on the
parent directory). Everything in the directory goes. Throws `ENOTFOUND` when there is no such
directory or no metadata file in it, `ESTATE` when a save is writing it.
"""
function delete_checkpoint(dir::AbstractString)
    check(L.shardpoint_checkpoint_delete(String(dir)))
    return nothing
end
