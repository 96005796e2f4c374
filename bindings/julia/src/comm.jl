# Communicators: the single-process one, and one whose collectives are Julia methods.

"""
    gather!(impl, send::Vector{UInt8}, recv::Union{Vector{UInt8},Nothing})

Collective of a callback communicator. Every rank sends `send` (the same length `n` on every
rank); on rank 0 `recv` has room for `nranks * n` bytes and receives rank r's bytes as
`recv[r*n+1:(r+1)*n]` (ranks are 0-based, as in MPI); on the other ranks it is `nothing`. Both
vectors wrap library memory and are valid only during the call. Add a method for your
communicator type; throwing fails the shardpoint call with `ECOMM`.
"""
function gather! end

"""
    bcast!(impl, buf::Vector{UInt8})

Collective of a callback communicator: the bytes of `buf` on rank 0 are copied into `buf` on
every other rank. `buf` wraps library memory and is valid only during the call.
"""
function bcast! end

# What the C callbacks need: the Julia object implementing the collectives, and the last exception
# one of them threw (reported with the library's ECOMM error).
mutable struct CallbackState
    impl::Any
    rank::Int
    size::Int
    error::Union{Nothing,CapturedException}
end

"""
    Comm()
    Comm(impl, rank, size)

A communicator: how the ranks of one job talk during collective calls (`commit!`, `execute!`).
`Comm()` is the single-process one (what `comm=nothing` means). `Comm(impl, rank, size)`, with
`rank` in `0:size-1` (0-based, as MPI and MPI.jl's `MPI.Comm_rank` number ranks), runs the
collectives through Julia methods `gather!(impl, ...)` and `bcast!(impl, ...)`; the library calls
them only on the task that called the collective function.

Saves and loads borrow the communicator: `close(comm)` (or its finalizer) frees it once the last
of them is closed.
"""
mutable struct Comm
    ptr::Ptr{L.shardpoint_comm}
    state::Union{Nothing,CallbackState}  # referenced here so the C `user` pointer stays valid
    borrowers::Threads.Atomic{Int}        # open saves and loads using it
    closing::Threads.Atomic{Bool}         # close requested
    freed::Threads.Atomic{Bool}           # handle freed (exactly once)

    function Comm(ptr::Ptr{L.shardpoint_comm}, state::Union{Nothing,CallbackState})
        c = new(ptr, state, Threads.Atomic{Int}(0), Threads.Atomic{Bool}(false), Threads.Atomic{Bool}(false))
        return finalizer(close, c)
    end
end

function Comm()
    out = Ref{Ptr{L.shardpoint_comm}}(C_NULL)
    check(L.shardpoint_comm_new_single(out))
    return Comm(out[], nothing)
end

function Comm(impl, rank::Integer, size::Integer)
    state = CallbackState(impl, Int(rank), Int(size), nothing)
    callbacks = Ref{L.shardpoint_comm_callbacks}()
    check(L.shardpoint_comm_callbacks_init(callbacks, L.SHARDPOINT_COMM_CALLBACKS_VERSION))
    gather_ptr = @cfunction(gather_callback, Cint, (Ptr{Cvoid}, Ptr{Cvoid}, UInt64, Ptr{Cvoid}))
    broadcast_ptr = @cfunction(broadcast_callback, Cint, (Ptr{Cvoid}, Ptr{Cvoid}, UInt64))
    out = Ref{Ptr{L.shardpoint_comm}}(C_NULL)
    rc = GC.@preserve state begin
        callbacks[] = L.shardpoint_comm_callbacks(
            callbacks[].version, Int32(rank), Int32(size), pointer_from_objref(state),
            gather_ptr, broadcast_ptr, C_NULL)
        L.shardpoint_comm_new_callbacks(out, callbacks)
    end
    check(rc)
    # From here `state` is kept alive by the Comm, which outlives every use of the C handle.
    return Comm(out[], state)
end

# The C callbacks. They must not throw into C: exceptions are kept for the error report and turned
# into a non-zero return, which the library reports as ECOMM.
function gather_callback(user::Ptr{Cvoid}, send::Ptr{Cvoid}, len::UInt64, recv::Ptr{Cvoid})::Cint
    state = unsafe_pointer_to_objref(user)::CallbackState
    try
        n = Int(len)
        sendbuf = wrap_bytes(send, n)
        recvbuf = state.rank == 0 ? wrap_bytes(recv, n * state.size) : nothing
        gather!(state.impl, sendbuf, recvbuf)
        return Cint(0)
    catch err
        # Keep the first failure: later callbacks of the same collective fail because of it.
        state.error === nothing && (state.error = CapturedException(err, catch_backtrace()))
        return Cint(-1)
    end
end

function broadcast_callback(user::Ptr{Cvoid}, buf::Ptr{Cvoid}, len::UInt64)::Cint
    state = unsafe_pointer_to_objref(user)::CallbackState
    try
        bcast!(state.impl, wrap_bytes(buf, Int(len)))
        return Cint(0)
    catch err
        # Keep the first failure: later callbacks of the same collective fail because of it.
        state.error === nothing && (state.error = CapturedException(err, catch_backtrace()))
        return Cint(-1)
    end
end

Base.isopen(c::Comm) = !c.closing[]

function Base.close(c::Comm)
    c.closing[] = true
    free_if_unused(c)
    return nothing
end

function free_if_unused(c::Comm)
    if c.closing[] && c.borrowers[] == 0 && !Threads.atomic_xchg!(c.freed, true)
        L.shardpoint_comm_free(c.ptr)
    end
    return nothing
end

# A save or load starts borrowing `c` (or nothing: the single-process default).
borrow(::Nothing) = Ptr{L.shardpoint_comm}(C_NULL)
function borrow(c::Comm)
    c.closing[] && throw(ArgumentError("the communicator is closed"))
    Threads.atomic_add!(c.borrowers, 1)
    return c.ptr
end

giveback(::Nothing) = nothing
function giveback(c::Comm)
    Threads.atomic_sub!(c.borrowers, 1)
    free_if_unused(c)
    return nothing
end

function handle(c::Comm)
    c.closing[] && throw(ArgumentError("the communicator is closed"))
    return c.ptr
end

"""
    rank(comm) -> Int

This process's rank in `comm`: 0-based, from 0 to `nranks(comm) - 1`, as MPI (and MPI.jl's
`MPI.Comm_rank`) numbers ranks. Ranks are the one number of the API that is not 1-based.
"""
function rank(c::Comm)
    out = Ref{Int32}(-1)
    rc = GC.@preserve c L.shardpoint_comm_rank(handle(c), out)
    check(rc)
    return Int(out[])
end

"""
    nranks(comm) -> Int

The number of ranks of `comm`.
"""
function nranks(c::Comm)
    out = Ref{Int32}(0)
    rc = GC.@preserve c L.shardpoint_comm_size(handle(c), out)
    check(rc)
    return Int(out[])
end

# Before a collective: forget an old callback failure.
clear_callback_error(::Nothing) = nothing
clear_callback_error(c::Comm) = (c.state === nothing || (c.state.error = nothing); nothing)

# After a failed collective: add what a Julia callback threw to the library's error.
with_callback_error(err::ShardpointError, ::Nothing) = err
function with_callback_error(err::ShardpointError, c::Comm)
    st = c.state
    (st === nothing || st.error === nothing) && return err
    cause = sprint(showerror, st.error.ex)
    st.error = nothing
    return ShardpointError(err.code, err.name, err.message * " (callback error: " * cause * ")")
end

# ------------------------------------------------------------------------------------------------
# Local group: W ranks as tasks of one process, for tests and single-machine jobs.
# ------------------------------------------------------------------------------------------------

"""
    LocalGroup(n)

Shared state of `n` ranks running as tasks in this process: a slot per rank and a barrier.
`LocalRank(group, r)` is rank r's collective implementation (r in `0:n-1`); `run_local` sets
everything up. When a rank fails, the group is aborted: collectives that have not completed fail
on every rank instead of waiting forever.
"""
mutable struct LocalGroup
    size::Int
    cond::Threads.Condition
    slots::Vector{Vector{UInt8}}
    arrived::Int
    generation::Int
    failure::Union{Nothing,String}
end

function LocalGroup(n::Integer)
    n >= 1 || throw(ArgumentError("a group needs at least one rank"))
    return LocalGroup(Int(n), Threads.Condition(), [UInt8[] for _ in 1:n], 0, 0, nothing)
end

struct LocalRank
    group::LocalGroup
    rank::Int
end

"""
    abort!(group, reason)

Marks the group failed: ranks waiting in a collective, and later collectives, throw. A barrier
round that completed before the abort still succeeds on every rank, even on one that has not woken
up yet: the abort is for a rank that takes no further part, so only rounds it never joins fail.
(An error the library reports on every rank after its final broadcast thus stays every rank's.)
"""
function abort!(g::LocalGroup, reason::AbstractString)
    lock(g.cond)
    try
        g.failure === nothing && (g.failure = String(reason))
        notify(g.cond)
    finally
        unlock(g.cond)
    end
    return nothing
end

# Waits until every rank has arrived. A barrier that completed succeeds even if the group is
# aborted right after (so every rank sees the same result of a finished collective).
function barrier(g::LocalGroup)
    lock(g.cond)
    try
        g.failure === nothing || error("local group aborted: $(g.failure)")
        gen = g.generation
        g.arrived += 1
        if g.arrived == g.size
            g.arrived = 0
            g.generation += 1
            notify(g.cond)
        else
            while g.generation == gen && g.failure === nothing
                wait(g.cond)
            end
            g.generation == gen && error("local group aborted: $(g.failure)")
        end
    finally
        unlock(g.cond)
    end
    return nothing
end

function gather!(m::LocalRank, send::AbstractVector{UInt8}, recv::Union{Nothing,AbstractVector{UInt8}})
    g = m.group
    try
        g.slots[julia_index(m.rank)] = copy(send)
        barrier(g)
        if m.rank == 0
            recv === nothing && error("rank 0 got no receive buffer")
            n = length(send)
            length(recv) == n * g.size || error("receive buffer holds $(length(recv)) bytes, expected $(n * g.size)")
            # recv as an n × size matrix (same memory): rank r's bytes are its column julia_index(r).
            columns = reshape(recv, n, g.size)
            for r in range(0; length=g.size)
                part = g.slots[julia_index(r)]
                length(part) == n || error("rank $r sent $(length(part)) bytes, rank 0 sent $n")
                copyto!(view(columns, :, julia_index(r)), part)
            end
        end
        barrier(g)  # slots are reused only after rank 0 has read them
    catch err
        abort!(g, "rank $(m.rank) failed in gather: " * sprint(showerror, err))
        rethrow()
    end
    return nothing
end

function bcast!(m::LocalRank, buf::AbstractVector{UInt8})
    g = m.group
    try
        m.rank == 0 && (g.slots[julia_index(0)] = copy(buf))
        barrier(g)
        if m.rank != 0
            root = g.slots[julia_index(0)]
            length(root) == length(buf) || error("rank 0 broadcast $(length(root)) bytes, rank $(m.rank) expected $(length(buf))")
            copyto!(buf, root)
        end
        barrier(g)
    catch err
        abort!(g, "rank $(m.rank) failed in broadcast: " * sprint(showerror, err))
        rethrow()
    end
    return nothing
end

"""
    run_local(f, n) -> Vector

Runs `f(rank, comm)` for ranks `0:n-1` (0-based, as in MPI), each in its own task with a
callback `Comm` over a `LocalGroup`, and returns the results in rank order. The tasks share this
thread and switch while they wait inside collectives, so this works with any number of Julia
threads. If a rank throws, the group is aborted (the other ranks' pending collectives fail with
ECOMM) and, once every rank has finished, the first failure is rethrown (as a
`TaskFailedException`).
"""
function run_local(f, n::Integer)
    g = LocalGroup(n)
    tasks = map(range(0; length=n)) do r  # the ranks 0 to n-1
        @async begin
            comm = nothing
            try
                comm = Comm(LocalRank(g, r), r, n)
                f(r, comm)
            catch err
                abort!(g, "rank $r failed: " * sprint(showerror, err))
                rethrow()
            finally
                comm === nothing || close(comm)
            end
        end
    end
    for t in tasks
        # Wait for every rank before reporting, so no rank is left running.
        try
            wait(t)
        catch
        end
    end
    return [fetch(t) for t in tasks]
end
