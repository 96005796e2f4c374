# Progress reports and cancellation of the long calls: `commit!`, `execute!`, `verify`,
# `verify_each`, `convert_to_safetensors`, `convert_from_safetensors` (and the do-block forms of
# `Save` and `Load`), each with a keyword `progress`.
#
# A progress function is called as `f(phase::Symbol, done::Int, total::Int)`: `phase` is `:write`
# (a save writing this rank's data: raw bytes of its chunks), `:read` (a load reading this rank's
# requests), `:verify` (a verify checking stored bytes) or `:convert` (a conversion to or from
# safetensors copying tensor bytes); `done` of `total` bytes are through.
# The library calls it on the task that called the operation, never on one of its I/O threads:
# once at the start (done 0), then at most every 50 ms, then once with done == total; `done`
# never decreases. Returning `false` cancels: the call throws ShardpointError ECANCELED, and a
# canceled save commits nothing (the checkpoint in the directory before is untouched). Any other
# return value, `nothing` included, goes on. An asynchronous commit (`commit_async!`) takes no
# progress function: the library would call it on its background thread (see src/async.jl).
#
# How: the library calls the C function `progress_callback` below (a plain function, so
# `@cfunction` needs no closure), whose `user` pointer is the ProgressState holding the Julia
# function. The state is preserved (GC.@preserve) for the whole C call, and referenced from the
# handle that holds the pointer for as long as the handle may call it (a conversion's options
# struct holds it for the call only: see src/convert.jl). Exceptions never unwind
# through C: the callback catches what the function throws, cancels, and the binding rethrows it
# once the C call has returned.

# What the C callback needs: the Julia progress function and the first exception it threw.
mutable struct ProgressState
    f::Any
    error::Union{Nothing,CapturedException}
end

# The state for a `progress` keyword (nothing: no reports).
progress_state(::Nothing) = nothing
progress_state(f) = ProgressState(f, nothing)

# A shardpoint_progress_phase as the symbol a progress function receives.
function phase_symbol(phase::Int32)
    phase == L.SHARDPOINT_PROGRESS_WRITE && return :write
    phase == L.SHARDPOINT_PROGRESS_READ && return :read
    phase == L.SHARDPOINT_PROGRESS_VERIFY && return :verify
    phase == L.SHARDPOINT_PROGRESS_CONVERT && return :convert
    return Symbol("phase", phase)
end

# The shardpoint_progress_callback. `user` is a ProgressState preserved by the caller of the
# operation. Returns 1 (cancel) when the function returns `false` or throws; nothing is thrown
# through C.
function progress_callback(user::Ptr{Cvoid}, phase::Int32, done::UInt64, total::UInt64)::Cint
    state = unsafe_pointer_to_objref(user)::ProgressState
    state.error === nothing || return Cint(1)  # it threw already: stay canceled
    try
        go_on = state.f(phase_symbol(phase), Int(done), Int(total))
        return go_on === false ? Cint(1) : Cint(0)
    catch err
        state.error = CapturedException(err, catch_backtrace())
        return Cint(1)
    end
end

# The C function pointer of progress_callback.
progress_pointer() = @cfunction(progress_callback, Cint, (Ptr{Cvoid}, Int32, UInt64, UInt64))

# Gives the handle of `owner` (a Save or a Load) the progress state (nothing: no reports) through
# `set(callback, user)`, a raw *_set_progress call, and references the state from `owner.progress`:
# whatever pointer the handle holds stays valid until the owner is closed. C is not called when
# there is nothing to set and nothing to clear. The caller preserves `state` until the operation
# has returned.
function install_progress!(set::F, owner, state::Union{Nothing,ProgressState}) where {F}
    state === nothing && owner.progress === nothing && return nothing
    rc = if state === nothing
        set(C_NULL, C_NULL)
    else
        set(progress_pointer(), pointer_from_objref(state))
    end
    check(rc)
    owner.progress = state
    return nothing
end

# After the C call has returned: what the progress function threw, rethrown (rather than the
# library's ECANCELED, which it caused).
function throw_progress_error(state::Union{Nothing,ProgressState})
    state === nothing && return nothing
    captured = state.error
    captured === nothing && return nothing
    state.error = nothing
    throw(captured.ex)
end
