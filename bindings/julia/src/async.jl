# Asynchronous saves: `commit_async!` copies this rank's data into a staging area and returns; the
# library plans, writes and commits on a background thread of its own; `wait` gives the outcome.
#
# No Julia code runs on that thread, and two guards make sure of it. During an asynchronous commit
# the library calls the save's progress callback and its communicator's collectives from its
# background thread, a thread Julia did not start. Julia 1.9 can adopt such a thread when it
# enters a @cfunction, but the binding's callbacks are not written for it:
#
#   - Deadlock. A thread running Julia code takes part in every garbage collection, and a
#     collection waits until every Julia thread reaches a safepoint. A Julia thread blocked in a C
#     call that waits for the background thread never reaches one: shardpoint_save_free in a
#     finalizer, shardpoint_staging_free, a commit_async on an area that is still in use. Once Julia
#     code on the background thread starts a collection, that code waits for the blocked thread,
#     the blocked thread waits for the background thread, and the background thread waits for the
#     collection.
#   - The callbacks assume they run on the task that called the operation. progress_callback and
#     the communicator's gather_callback / broadcast_callback write their captured exception into
#     unsynchronized state that the calling task reads. A `LocalGroup`'s ranks (`run_local`) are
#     tasks that take turns on one thread inside the collectives. A progress function is documented
#     to run on the calling task.
#
# So `commit_async!` refuses a `progress` function, and refuses a save whose communicator is
# implemented in Julia (`Comm(impl, rank, size)`), with an ArgumentError, before the library is
# called. What remains runs entirely in C: a single process (`comm=nothing`, or `Comm()`, the
# library's own communicator). Use `commit!` for the others; `cancel!` stops an asynchronous commit
# without a progress function.
#
# Waiting never blocks the thread in C for long. `wait`, `close(save)` and `close(staging)`
# poll (shardpoint_save_poll) with `sleep`, so other tasks run meanwhile and garbage collections on
# other threads do not stall. Only then do they make the blocking call, which by then returns at
# once. Finalizers cannot yield. They make the blocking call directly, which is safe because the
# background thread runs no Julia code.

# Why an asynchronous commit cannot take this save or this progress function (an ArgumentError
# before anything reaches the library), else nothing.
function refuse_async(s::Save, progress)
    progress === nothing || throw(ArgumentError(
        "commit_async! takes no progress function: the library would call it on its background " *
        "thread, where Julia code must not run. Use commit!(save; progress=f) for progress reports; " *
        "cancel!(save) stops an asynchronous commit"))
    c = s.comm
    if c isa Comm && c.state !== nothing
        throw(ArgumentError(
            "commit_async! cannot use a communicator implemented in Julia (Comm(impl, rank, size)): " *
            "the library would run its collectives on its background thread, where Julia code must " *
            "not run. Use commit!, or save asynchronously from a single process (comm=nothing or Comm())"))
    end
    return nothing
end

"""
    staging_size(save) -> Int

The bytes of staging this rank's data takes in `commit_async!`: what was added so far, each item
64-byte aligned. Make a `Staging` of at least this size (with some room if later saves grow).
"""
function staging_size(s::Save)
    out = Ref{UInt64}(0)
    rc = GC.@preserve s L.shardpoint_save_staging_size(handle(s), out)
    check(rc)
    return Int(out[])
end

"""
    commit_async!(save, staging=nothing) -> save

Commits `save` in the background. It copies this rank's data (the arrays given to `add_tensor!` /
`add_bytes!`) into `staging`, and returns once the copy is done. From then on the arrays are free:
change them (train the next step) while the library plans, writes and commits the checkpoint on a
thread of its own. `wait(save)` gives the outcome, as `commit!` would: it returns the save or
throws the `ShardpointError`. `isready(save)` tells whether it has ended, and `cancel!(save)` stops
it. Collective as `commit!`.

`staging` is a `Staging` of at least `staging_size(save)` bytes, reused from save to save. With
`nothing`, an area of exactly that size is made for this save and freed with it, at the price of
an allocation per save. When an earlier save still uses `staging`, this call first waits for it to
end. The save keeps `staging` referenced until it is closed.

Errors (nothing is started, and the save can still be committed with `commit!` or
`commit_async!`): `ERANGE` (the data does not fit in `staging`), `ESTATE` (already committed),
`EINVAL`, `ENOMEM`.

Only for a single process (`comm=nothing` or `Comm()`), and without progress reports. The library
would call a progress function and the collectives of a Julia communicator (`Comm(impl, rank,
size)`) on its background thread, where Julia code must not run. So `commit_async!` throws
`ArgumentError` for a `progress` keyword and for such a communicator: use `commit!` there.
"""
function commit_async!(s::Save, staging::Union{Nothing,Staging}=nothing; progress=nothing)
    refuse_async(s, progress)
    handle(s)  # a closed save: ArgumentError, before an area is made for it
    s.async && throw(binding_error(ESTATE, "this save was already committed asynchronously"))
    # No progress callback may be left on the handle: it would run on the background thread.
    install_progress!(s, nothing) do callback, user
        L.shardpoint_save_set_progress(handle(s), callback, user)
    end
    owned = staging === nothing
    st = owned ? Staging(staging_size(s)) : staging
    previous = st.user
    # The library would wait for the previous save inside the C call: wait here, yielding.
    previous isa Save && previous !== s && async_started(previous) && wait_ended(previous)
    keep = s.keep
    rc = GC.@preserve s st keep L.shardpoint_save_commit_async(handle(s), handle(st))
    if rc != 0
        err = last_error(rc)
        owned && free_staging(st)
        throw(err)  # nothing was started: the arrays stay referenced for a later commit
    end
    empty!(keep)  # copied: the library does not read the arrays again
    s.async = true
    s.staging = st
    s.owns_staging = owned
    st.user = s
    return s
end

# Whether an asynchronous commit of the open save `s` was started (it may have ended).
async_started(s::Save) = s.ptr != C_NULL && s.async

# Waits until the asynchronous commit of `s` has ended, whatever its outcome, polling and yielding
# to other tasks (see the top of this file). Not from a finalizer: `sleep` yields.
function wait_ended(s::Save)
    delay = 0.001
    while !isready(s)
        sleep(delay)
        delay = min(2 * delay, 0.01)
    end
    return nothing
end

"""
    wait(save::Save) -> save

Waits for the asynchronous commit of `save` (`commit_async!`) to end and returns its outcome as
`commit!` would: the save, or a `ShardpointError` thrown (`ECANCELED` after `cancel!`,
`ENOTDURABLE` when committed but not durable, `EEXISTS`, `ENOSPC`, ...). On failure nothing is
committed and a checkpoint that was at the path before is intact. Later calls give the same
outcome. `ESTATE` when no asynchronous commit was started. Other tasks run while it waits.
"""
function Base.wait(s::Save)
    wait_ended(s)
    rc = GC.@preserve s L.shardpoint_save_wait(handle(s))  # ended: returns at once
    check(rc)
    s.committed = true
    return s
end

"""
    isready(save::Save) -> Bool

Whether the asynchronous commit of `save` (`commit_async!`) has ended, successfully or not. Once it
is true, `wait(save)` returns (or throws) at once. It is the `isready` of a `Future`:
the outcome is available, without being taken. `ESTATE` when no asynchronous commit was started.
"""
function Base.isready(s::Save)
    finished = Ref{Int32}(0)
    rc = GC.@preserve s L.shardpoint_save_poll(handle(s), finished)
    check(rc)
    return finished[] != 0
end

"""
    cancel!(save) -> save

Asks the asynchronous commit of `save` to stop, and returns at once. Unless this rank's data was
already written, `wait(save)` then throws `ShardpointError` `ECANCELED` (`is_canceled(err)`), nothing
is committed, and the checkpoint that was at the path before stays. Once the data is written the
commit completes regardless. `ESTATE` when no asynchronous commit was started.
"""
function cancel!(s::Save)
    rc = GC.@preserve s L.shardpoint_save_cancel(handle(s))
    check(rc)
    return s
end
