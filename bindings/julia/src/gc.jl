# Garbage collection: the debris of unfinished saves in a checkpoint directory.

# The shardpoint_gc_callback: records one file (name, size) in the vector `user` points at. Nothing
# may be thrown through C: a failure stops the collection.
function gc_file_callback(user::Ptr{Cvoid}, name::Ptr{UInt8}, size::UInt64)::Cint
    try
        files = unsafe_pointer_to_objref(user)::Vector{Pair{String,Int}}
        push!(files, unsafe_string(name) => Int(size))
        return Cint(0)
    catch
        return Cint(1)
    end
end

"""
    collect_garbage(dir; dry_run=false) -> (files, bytes)

Removes the debris of unfinished saves from checkpoint directory `dir`: files with shardpoint's own
name patterns that the committed metadata does not name (nothing else is touched). Returns the
removed files as `name => size` pairs and their total size. With `dry_run=true` only reports them.
"""
function collect_garbage(dir::AbstractString; dry_run::Bool=false)
    files = Pair{String,Int}[]
    nfiles = Ref{UInt64}(0)
    nbytes = Ref{UInt64}(0)
    flags = dry_run ? L.SHARDPOINT_GC_DRY_RUN : UInt32(0)
    path = String(dir)
    callback = @cfunction(gc_file_callback, Cint, (Ptr{Cvoid}, Ptr{UInt8}, UInt64))
    rc = GC.@preserve files L.shardpoint_gc(path, flags, callback, pointer_from_objref(files), nfiles, nbytes)
    check(rc)
    return (files=files, bytes=Int(nbytes[]))
end
