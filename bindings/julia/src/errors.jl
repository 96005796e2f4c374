# Errors: every failing C call becomes a ShardpointError carrying the C code, its stable name and
# the library's message.

"""
    ShardpointError(code, name, message)

A failed shardpoint call. `code` is the negative C error code (compare with `Shardpoint.ECHECKSUM`
and friends), `name` its stable name (`"SHARDPOINT_ECHECKSUM"`), `message` what the library said.
"""
struct ShardpointError <: Exception
    code::Int
    name::String
    message::String
end

function Base.showerror(io::IO, e::ShardpointError)
    print(io, "ShardpointError: ", e.name, " (", e.code, "): ", e.message)
end

# The C error codes, without the SHARDPOINT_ prefix.
const OK = Int(L.SHARDPOINT_OK)
const EINVAL = Int(L.SHARDPOINT_EINVAL)
const ENOMEM = Int(L.SHARDPOINT_ENOMEM)
const EIO = Int(L.SHARDPOINT_EIO)
const ENOTFOUND = Int(L.SHARDPOINT_ENOTFOUND)
const EEXISTS = Int(L.SHARDPOINT_EEXISTS)
const EFORMAT = Int(L.SHARDPOINT_EFORMAT)
const ECHECKSUM = Int(L.SHARDPOINT_ECHECKSUM)
const ETRUNCATED = Int(L.SHARDPOINT_ETRUNCATED)
const EVERSION = Int(L.SHARDPOINT_EVERSION)
const EDTYPE = Int(L.SHARDPOINT_EDTYPE)
const ESHAPE = Int(L.SHARDPOINT_ESHAPE)
const EPATH = Int(L.SHARDPOINT_EPATH)
const ECONFLICT = Int(L.SHARDPOINT_ECONFLICT)
const ERANK = Int(L.SHARDPOINT_ERANK)
const ECOMM = Int(L.SHARDPOINT_ECOMM)
const EUNCOVERED = Int(L.SHARDPOINT_EUNCOVERED)
const ESTATE = Int(L.SHARDPOINT_ESTATE)
const EKIND = Int(L.SHARDPOINT_EKIND)
const ERANGE = Int(L.SHARDPOINT_ERANGE)
const ENOSPC = Int(L.SHARDPOINT_ENOSPC)          # no space left on the device, or quota exhausted
const ENOTDURABLE = Int(L.SHARDPOINT_ENOTDURABLE) # committed, but the directory fsync after the
                                                  # commit point failed: may not survive a power loss
const ECANCELED = Int(L.SHARDPOINT_ECANCELED)     # a progress function returned false, or cancel!:
                                                  # the call stopped, a save committed nothing
const EINTERNAL = Int(L.SHARDPOINT_EINTERNAL)

"""
    error_name(code) -> String

The library's stable name for an error code (`"SHARDPOINT_UNKNOWN"` for unknown codes).
"""
error_name(code::Integer) = unsafe_string(L.shardpoint_error_name(Cint(code)))

# The error of the call that just returned `code`. The message is thread-local and the next
# shardpoint call on this thread replaces it (a finalizer freeing a handle counts), so it is read
# first, before anything that allocates and could start a GC that runs finalizers.
@noinline function last_error(code::Integer)
    msgp = L.shardpoint_last_error()
    message = msgp == C_NULL ? "" : unsafe_string(msgp)
    return ShardpointError(Int(code), error_name(code), message)
end

# Throws the pending error when a C call returned non-zero. Call it directly on the return value.
@inline function check(code::Cint)
    code == 0 || throw(last_error(code))
    return nothing
end

"""
    committed(e::ShardpointError) -> Bool

Whether the save that failed with `e` committed its checkpoint anyway: true only for
`ENOTDURABLE` (the checkpoint is in place and loads, but may not survive a power loss).
"""
committed(e::ShardpointError) = e.code == ENOTDURABLE

"""
    is_no_space(e::ShardpointError) -> Bool

Whether `e` is a full disk or an exhausted quota (`ENOSPC`).
"""
is_no_space(e::ShardpointError) = e.code == ENOSPC

"""
    is_canceled(e::ShardpointError) -> Bool

Whether `e` is a call canceled by its progress function (`ECANCELED`: it returned `false`), or an
asynchronous commit stopped by `cancel!`; a canceled save committed nothing. See `commit!`,
`execute!`, `verify` and `cancel!`.
"""
is_canceled(e::ShardpointError) = e.code == ECANCELED

# An error the binding raises itself, in the library's terms (same code and name).
binding_error(code::Integer, message::AbstractString) =
    ShardpointError(Int(code), error_name(code), String(message))
