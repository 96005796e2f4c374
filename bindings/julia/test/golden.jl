# The cross-language golden model (tests/golden/README.md): parse model.txt, write the model with W
# ranks, and check a checkpoint directory against it.

using Shardpoint

struct ModelEntry
    kind::Symbol        # :tensor or :bytes
    fqn::String
    dtype::String       # canonical dtype name; "" for bytes
    shape::Vector{Int}  # tensors: the global shape ([] for 0-d); bytes: [length]
    sharding::String
    seed::Int
end

# model.txt: SHARDPOINT_GOLDEN_MODEL, else tests/golden/model.txt of this repository.
golden_model_path() = get(ENV, "SHARDPOINT_GOLDEN_MODEL",
                          normpath(joinpath(@__DIR__, "..", "..", "..", "tests", "golden", "model.txt")))

function parse_model(path::AbstractString)
    model = ModelEntry[]
    meta = Pair{String,String}[]
    for (lineno, raw) in enumerate(eachline(path))
        line = strip(split(raw, '#'; limit=2)[1])
        isempty(line) && continue
        f = split(line)
        if f[1] == "tensor" && length(f) == 6
            shape = f[4] == "-" ? Int[] : [parse(Int, s) for s in split(f[4], ',')]
            push!(model, ModelEntry(:tensor, f[2], f[3], shape, f[5], parse(Int, f[6])))
        elseif f[1] == "bytes" && length(f) == 5
            push!(model, ModelEntry(:bytes, f[2], "", [parse(Int, f[3])], f[4], parse(Int, f[5])))
        elseif f[1] == "meta" && length(f) == 3
            push!(meta, String(f[2]) => String(f[3]))
        else
            error("$path:$lineno: cannot parse \"$line\"")
        end
    end
    return model, meta
end

# byte(k) of the C-order, little-endian byte image of a whole entry.
function golden_byte(k::Int, seed::Int, isbool::Bool)
    b = (k * 131 + seed * 17 + (k >> 11)) % 256
    return UInt8(isbool ? b % 2 : b)
end

# The bytes of the box `box` (1-based ranges, one per dimension) of a tensor of `shape`, in C order.
function box_bytes(shape::Vector{Int}, elsize::Int, seed::Int, isbool::Bool, box::Tuple)
    n = length(shape)
    # C-order element strides of the whole tensor.
    cstrides = [prod(shape[d+1:n]; init=1) for d in 1:n]
    out = UInt8[]
    sizehint!(out, prod(length, box; init=1) * elsize)
    # Column-major iteration over the reversed box visits it in C order (last dim fastest).
    for ci in CartesianIndices(reverse(box))
        idx = reverse(Tuple(ci))  # the element's 1-based indices in the tensor
        linear = sum(((idx[d] - 1) * cstrides[d] for d in 1:n); init=0)  # its 0-based C-order number
        for b in 0:elsize-1
            push!(out, golden_byte(linear * elsize + b, seed, isbool))
        end
    end
    return out
end

# part(n, r, W) of the model (the 0-based [floor(r n / W), floor((r + 1) n / W))) as a 1-based range.
part(n::Int, r::Int, w::Int) = ((r * n) ÷ w + 1):(((r + 1) * n) ÷ w)

# A Julia array of size `sizes` over a flat buffer that holds its elements in C order.
function c_order_view(flat::Vector, sizes::Vector{Int})
    n = length(sizes)
    n <= 1 && return reshape(flat, Tuple(sizes))
    return PermutedDimsArray(reshape(flat, Tuple(reverse(sizes))), Tuple(n:-1:1))
end

# The whole box of a tensor of `shape`: 1-based ranges.
whole_box(shape::Vector{Int}) = Tuple(UnitRange{Int}[1:n for n in shape])

# What rank r of W offers for entry e: its box (1-based ranges), or nothing.
function golden_chunk(e::ModelEntry, r::Int, w::Int)
    box = UnitRange{Int}[1:n for n in e.shape]
    if e.sharding == "rows" || e.sharding == "cols"
        d = e.sharding == "rows" ? 1 : 2
        box[d] = part(e.shape[d], r, w)
        isempty(box[d]) && return nothing
    elseif e.sharding == "rank0"
        r == 0 || return nothing
    elseif e.sharding != "replicated"
        error("$(e.fqn): unknown sharding $(e.sharding)")
    end
    return Tuple(box)
end

"""
    golden_write(dir, world)

Saves the golden model into `dir` with `world` ranks (tasks + callback communicator).
"""
function golden_write(dir::AbstractString, world::Int; model_path=golden_model_path())
    model, meta = parse_model(model_path)
    run_local(world) do r, comm
        Save(dir; comm=comm, overwrite=true) do s
            for e in model
                box = golden_chunk(e, r, world)
                box === nothing && continue
                if e.kind === :bytes
                    add_bytes!(s, e.fqn, UInt8[golden_byte(k, e.seed, false) for k in 0:e.shape[1]-1])
                else
                    code = Shardpoint.dtype_code(e.dtype)
                    T = Shardpoint.julia_type(code)
                    bytes = box_bytes(e.shape, Shardpoint.dtype_size(code), e.seed, e.dtype == "bool", box)
                    data = c_order_view(collect(reinterpret(T, bytes)), Int[length(x) for x in box])
                    add_tensor!(s, e.fqn, data; at=box, global_shape=e.shape, dtype=code)
                end
            end
            for (k, v) in meta
                set_metadata!(s, k, v)
            end
        end
        return nothing
    end
    return nothing
end

# Reads a box (1-based ranges) of a tensor into a C-order buffer and returns its bytes.
function read_box_bytes(r::Reader, fqn::String, code::Int32, box::Tuple)
    T = Shardpoint.julia_type(code)
    sizes = Int[length(x) for x in box]
    flat = Vector{T}(undef, prod(sizes; init=1))
    read_tensor!(r, fqn, c_order_view(flat, sizes); at=box, dtype=code)
    return collect(reinterpret(UInt8, flat))
end

function first_difference(a::Vector{UInt8}, b::Vector{UInt8})
    length(a) == length(b) || return "length $(length(a)) != $(length(b))"
    return "first difference at byte $(findfirst(i -> a[i] != b[i], eachindex(a)) - 1)"
end

"""
    golden_check(dir) -> Vector{String}

Checks the checkpoint in `dir` against the golden model; returns one line per failure.
"""
function golden_check(dir::AbstractString; model_path=golden_model_path())
    model, meta = parse_model(model_path)
    failures = String[]
    fail(msg) = push!(failures, "$dir: $msg")
    reader = try
        Reader(dir)
    catch err
        fail("cannot open: " * sprint(showerror, err))
        return failures
    end
    try
        stored = Dict(e.fqn => e for e in entries(reader))
        expected = Set(e.fqn for e in model)
        for name in sort!(collect(setdiff(keys(stored), expected)))
            fail("unexpected entry $name")
        end
        for e in model
            info = get(stored, e.fqn, nothing)
            if info === nothing
                fail("missing entry $(e.fqn)")
                continue
            end
            try
                if e.kind === :bytes
                    info.kind === :bytes || (fail("$(e.fqn): kind $(info.kind), expected bytes"); continue)
                    info.nbytes == e.shape[1] || (fail("$(e.fqn): length $(info.nbytes), expected $(e.shape[1])"); continue)
                    want = UInt8[golden_byte(k, e.seed, false) for k in 0:e.shape[1]-1]
                    got = read_bytes(reader, e.fqn)
                    got == want || fail("$(e.fqn): bytes differ ($(first_difference(got, want)))")
                    continue
                end
                info.kind === :tensor || (fail("$(e.fqn): kind $(info.kind), expected tensor"); continue)
                string(info.dtype) == e.dtype || (fail("$(e.fqn): dtype $(info.dtype), expected $(e.dtype)"); continue)
                info.shape == e.shape || (fail("$(e.fqn): shape $(info.shape), expected $(e.shape)"); continue)
                code = Shardpoint.dtype_code(e.dtype)
                elsize = Shardpoint.dtype_size(code)
                isbool = e.dtype == "bool"
                n = length(e.shape)
                # 2. the whole entry
                whole = whole_box(e.shape)
                got = read_box_bytes(reader, e.fqn, code, whole)
                want = box_bytes(e.shape, elsize, e.seed, isbool, whole)
                got == want || fail("$(e.fqn): whole entry differs ($(first_difference(got, want)))")
                # 3. the model's rows floor(shape[0] / 3) .. shape[0] (0-based), here 1-based rows
                if n >= 1 && e.shape[1] >= 2
                    box = ((e.shape[1] ÷ 3 + 1):e.shape[1], whole[2:end]...)
                    got = read_box_bytes(reader, e.fqn, code, box)
                    want = box_bytes(e.shape, elsize, e.seed, isbool, box)
                    got == want || fail("$(e.fqn): box of rows $(box[1]) differs ($(first_difference(got, want)))")
                end
            catch err
                err isa ShardpointError || rethrow()
                fail("$(e.fqn): " * sprint(showerror, err))
            end
        end
        # 4. user metadata
        stored_meta = user_metadata(reader)
        for (k, v) in meta
            got = get(stored_meta, k, nothing)
            got == v || fail("metadata $k = $(repr(got)), expected $(repr(v))")
        end
    finally
        close(reader)
    end
    return failures
end
