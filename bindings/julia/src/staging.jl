# Staging areas of asynchronous saves (see src/async.jl for the saves themselves).

"""
    Staging(capacity)
    Staging(f, capacity)

A staging area of `capacity` bytes for `commit_async!`: the save copies this rank's data into it
and writes it from there in the background, so the arrays are free again as soon as
`commit_async!` returns. Allocate it once and reuse it for every save of a run: its pages are
faulted in (and locked in memory where the system allows it) when it is created, so that a save's
copy runs at memory speed. `staging_size(save)` is the capacity a save needs; `capacity(staging)`
is what an area holds.

An area serves one save at a time: `commit_async!` with an area that an earlier save still uses
first waits for that save's commit to end. The save that uses an area keeps it referenced until
the save is closed.

`close(staging)` frees it, after waiting for the asynchronous commit still using it (yielding to
other tasks meanwhile); the do-block form runs `f(staging)` and closes. A finalizer frees a
forgotten area, `close` is idempotent.
"""
mutable struct Staging
    ptr::Ptr{L.shardpoint_staging}
    freed::Threads.Atomic{Bool}  # handle freed (exactly once: by close or a finalizer)
    user::Any  # the Save whose asynchronous commit used it last, until that save is closed; or nothing

    function Staging(ptr::Ptr{L.shardpoint_staging})
        st = new(ptr, Threads.Atomic{Bool}(false), nothing)
        return finalizer(free_staging, st)
    end
end

function Staging(capacity::Integer)
    capacity >= 0 || throw(ArgumentError("a staging area holds a number of bytes, not $capacity"))
    out = Ref{Ptr{L.shardpoint_staging}}(C_NULL)
    check(L.shardpoint_staging_new(out, UInt64(capacity)))
    return Staging(out[])
end

function Staging(f::Function, capacity::Integer)
    st = Staging(capacity)
    try
        return f(st)
    finally
        close(st)
    end
end

Base.isopen(st::Staging) = !st.freed[]

function Base.close(st::Staging)
    # Wait here, polling and yielding, rather than inside shardpoint_staging_free, which would
    # block this thread (and every garbage collection of the process) until the save ends.
    user = st.user
    user isa Save && async_started(user) && wait_ended(user)
    free_staging(st)
    return nothing
end

# Frees the handle. Also the finalizer, which must not yield: shardpoint_staging_free then waits
# for a save still using the area itself (that save's background commit runs no Julia code, see
# src/async.jl, so the wait ends).
function free_staging(st::Staging)
    if !Threads.atomic_xchg!(st.freed, true)
        L.shardpoint_staging_free(st.ptr)
    end
    st.user = nothing
    return nothing
end

function handle(st::Staging)
    st.freed[] && throw(ArgumentError("the staging area is closed"))
    return st.ptr
end

"""
    capacity(staging) -> Int

The bytes a staging area holds.
"""
function capacity(st::Staging)
    out = Ref{UInt64}(0)
    rc = GC.@preserve st L.shardpoint_staging_capacity(handle(st), out)
    check(rc)
    return Int(out[])
end

function Base.show(io::IO, st::Staging)
    if isopen(st)
        print(io, "Staging(", capacity(st), " bytes)")
    else
        print(io, "Staging(closed)")
    end
end
