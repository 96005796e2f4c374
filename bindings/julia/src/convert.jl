# Conversion between checkpoints and safetensors, Hugging Face's tensor files: one file, or a
# sharded model directory (model-0000k-of-0000n.safetensors plus model.safetensors.index.json).
# The library does the work (shardpoint_convert_* in shardpoint.h, which documents every rule):
# values are copied bit for bit, in bounded memory, and a conversion that fails or is canceled
# leaves nothing behind.

# The byte count of a size text ("5GB", "500MB", "64KiB", "4096"), as the library parses it.
function parsed_size(text::AbstractString)
    out = Ref{UInt64}(0)
    check(L.shardpoint_parse_size(String(text), out))
    return out[]
end

"""
    Shardpoint.parse_size(text) -> Int

Parses a byte count as Hugging Face writes `max_shard_size`: a whole number with an optional
unit, decimal (`B`, `KB`, `MB`, `GB`, `TB`: powers of 1000) or binary (`KiB`, `MiB`, `GiB`, `TiB`:
powers of 1024), in any case: `parse_size("5GB") == 5_000_000_000`, `parse_size("64KiB") == 65536`.
Throws `ShardpointError` `EINVAL` for a text that is not a size.
"""
parse_size(text::AbstractString) = Int(parsed_size(text))

# A size keyword (max_shard_size, buffer_size) for the library: `nothing` is 0 (the library's
# default), else a positive integer or a size text.
c_size(::Nothing, what::AbstractString) = UInt64(0)
function c_size(n::Integer, what::AbstractString)
    n isa Bool && throw(ArgumentError("$what must be a number of bytes or a size such as \"5GB\", not $n"))
    n > 0 || throw(ArgumentError("$what must be positive, not $n"))
    return UInt64(n)
end
function c_size(text::AbstractString, what::AbstractString)
    n = parsed_size(text)
    n > 0 || throw(ArgumentError("$what must be positive, not $(repr(text))"))
    return n
end
c_size(x, what::AbstractString) =
    throw(ArgumentError("$what must be a number of bytes or a size such as \"5GB\", not $(repr(x))"))

# The SHARDPOINT_CONVERT_* flags of the keywords.
function convert_flags(; overwrite::Bool=false, skip_bytes::Bool=false, durable::Bool=true)
    flags = UInt32(0)
    overwrite && (flags |= L.SHARDPOINT_CONVERT_OVERWRITE)
    skip_bytes && (flags |= L.SHARDPOINT_CONVERT_SKIP_BYTES)
    durable || (flags |= L.SHARDPOINT_CONVERT_NO_FSYNC)
    return flags
end

# Runs `f(options)` with `options` a Ref{shardpoint_convert_options}, valid during the call only:
# it points at `save_options` (a Ref{shardpoint_save_options}, or nothing: the defaults) and at
# the progress state (nothing: no reports), both preserved meanwhile. The library calls the
# progress function on the calling task, during the conversion only.
function with_convert_options(f::F, flags::UInt32, max_shard_size::UInt64, buffer_size::UInt64,
                              io_threads::Integer, save_options::Union{Nothing,Ref{L.shardpoint_save_options}},
                              state::Union{Nothing,ProgressState}) where {F}
    options = Ref{L.shardpoint_convert_options}()
    check(L.shardpoint_convert_options_init(options, L.SHARDPOINT_CONVERT_OPTIONS_VERSION))
    threads = UInt32(io_threads)
    return GC.@preserve save_options state begin
        saveptr = save_options === nothing ? Ptr{L.shardpoint_save_options}(C_NULL) :
                  Base.unsafe_convert(Ptr{L.shardpoint_save_options}, save_options)
        callback = state === nothing ? C_NULL : progress_pointer()
        user = state === nothing ? C_NULL : pointer_from_objref(state)
        o = options[]
        options[] = L.shardpoint_convert_options(o.version, o.flags | flags, max_shard_size, buffer_size,
                                                 saveptr, callback, user, threads, o.reserved)
        f(options)
    end
end

# After a conversion returned `err` (nothing: success): what the progress function threw first
# (it caused the library's ECANCELED), else the library's error.
function finish_conversion(err::Union{Nothing,ShardpointError}, state::Union{Nothing,ProgressState})
    throw_progress_error(state)
    err === nothing || throw(err)
    return nothing
end

"""
    convert_to_safetensors(ckpt, out; max_shard_size=nothing, overwrite=false, skip_bytes=false,
                           durable=true, buffer_size=nothing, io_threads=0, progress=nothing)

Writes every tensor of the checkpoint in directory `ckpt`, whole (its chunks from any number of
ranks put together, CRC-32 verified), and its user metadata as the files' `"__metadata__"`, to
safetensors at `out`:

  - a file path: that one safetensors file;
  - an existing directory, or a path ending in `/`: `out/model.safetensors`;
  - with `max_shard_size` (bytes, or a size text such as `"5GB"` or `"500MB"`, see
    `Shardpoint.parse_size`): the model directory `out` (created if missing) gets
    `model-0000k-of-0000n.safetensors` files of at most that many tensor bytes each (a larger
    tensor gets a file of its own; tensors in name order) and `model.safetensors.index.json`.

Other files in the directory (`config.json`, ...) are left alone. An existing output throws
`EEXISTS` unless `overwrite=true`, which replaces the model there. A checkpoint holding a bytes
entry (`add_bytes!`) throws `EKIND` unless `skip_bytes=true` leaves those out; complex128
(`ComplexF64`) has no safetensors dtype (`EDTYPE`); a tensor only partly saved throws
`EUNCOVERED`. `durable=false` skips every fsync (see `Save`). `buffer_size` (bytes or a size text,
at least 4096; default 64 MiB) bounds the memory: the conversion holds about twice that.
`io_threads` read the checkpoint (0: one per core). Single-process; conversions to distinct
outputs may run on several threads at once.

`progress`, a function `progress(phase, done, total)` as for `commit!`, is told how it goes:
`phase` is `:convert`, `done` of `total` tensor bytes are copied. Returning `false` cancels
(`ShardpointError` `ECANCELED`, `is_canceled(err)`), and an exception it throws cancels and is
rethrown. On any failure, a cancel included, no output file is left and the directories the
conversion created are removed.
"""
function convert_to_safetensors(ckpt::AbstractString, out::AbstractString; max_shard_size=nothing,
                                overwrite::Bool=false, skip_bytes::Bool=false, durable::Bool=true,
                                buffer_size=nothing, io_threads::Integer=0, progress=nothing)
    flags = convert_flags(; overwrite, skip_bytes, durable)
    shard = c_size(max_shard_size, "max_shard_size")
    buffer = c_size(buffer_size, "buffer_size")
    source = String(ckpt)
    target = String(out)
    state = progress_state(progress)
    err = with_convert_options(flags, shard, buffer, io_threads, nothing, state) do options
        rc = L.shardpoint_convert_to_safetensors(source, target, options)
        rc == 0 ? nothing : last_error(rc)
    end
    return finish_conversion(err, state)
end

"""
    convert_from_safetensors(input, ckpt; overwrite=false, durable=true, compression=0,
                             compression_level=0, shuffle=false, io_threads=0, alignment=0,
                             checkpoint_id=nothing, buffer_size=nothing, progress=nothing)

Saves the tensors of safetensors `input` as a checkpoint in directory `ckpt`, with the files'
`"__metadata__"` as its user metadata (`user_metadata(reader)`; in a sharded model the first
file's value of a key wins). `input` is a safetensors file, an index (a path ending in `.json`)
whose `weight_map` names files beside it, or a model directory (its `model.safetensors`, else its
`model.safetensors.index.json`). Every file is validated before anything is written: a malformed
or truncated file throws `EFORMAT`, a dtype shardpoint lacks `EDTYPE`, each naming the file and
the tensor; a missing input or shard `ENOTFOUND`.

The checkpoint is written by an ordinary save, atomically, with `Save`'s options: `overwrite`
(else an existing checkpoint throws `EEXISTS`), `durable`, `compression`, `compression_level`,
`shuffle`, `io_threads`, `alignment`, `checkpoint_id`. `buffer_size` (bytes or a size text; default
64 MiB) bounds the memory (two buffers of it) and the size of a chunk: a larger tensor is saved as
several chunks. `progress` as for `convert_to_safetensors` (phase `:convert`). On any failure, a
cancel included, nothing is committed, a checkpoint that was in `ckpt` is intact and the
directories the conversion created are removed.
"""
function convert_from_safetensors(input::AbstractString, ckpt::AbstractString; overwrite::Bool=false,
                                  durable::Bool=true, compression::Union{Integer,Symbol}=0,
                                  compression_level::Integer=0, shuffle::Bool=false, io_threads::Integer=0,
                                  alignment::Integer=0, checkpoint_id::Union{Nothing,AbstractString}=nothing,
                                  buffer_size=nothing, progress=nothing)
    flags = convert_flags(; overwrite, durable)  # the library adds them to the save's flags
    buffer = c_size(buffer_size, "buffer_size")
    source = String(input)
    target = String(ckpt)
    state = progress_state(progress)
    err = with_save_options(; compression, compression_level, shuffle, io_threads, alignment,
                            checkpoint_id) do save_options
        with_convert_options(flags, UInt64(0), buffer, io_threads, save_options, state) do options
            rc = L.shardpoint_convert_from_safetensors(source, target, options)
            rc == 0 ? nothing : last_error(rc)
        end
    end
    return finish_conversion(err, state)
end
