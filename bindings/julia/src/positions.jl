# Positions: where the binding's 1-based positions meet the library's 0-based ones.
#
# Every position the Julia API takes or returns is 1-based, as Julia indexes arrays:
#   - a box of a tensor (a chunk that is saved, a part that is read, a saved chunk's place) is a
#     tuple of unit ranges, one per dimension: `at=(3:4, 1:8)` is the box `W[3:4, 1:8]` of the
#     global tensor `W`;
#   - entries, chunks, data files and metadata pairs are numbered from 1.
# The library counts all of these from 0. The four functions below are the only ones that convert
# (check/check.js fails on `+ 1` / `- 1` anywhere else in src/, and on a position passed to or
# read from the C ABI without them), and they check what they convert.
#
# Not positions, so never converted: ranks are 0-based, as in MPI (and MPI.jl's MPI.Comm_rank),
# and byte offsets in data files (`file_offset`) are 0-based, as `seek` takes them.

"""
    c_index(i) -> UInt64

The library's 0-based number of the 1-based entry, chunk, file or metadata number `i`.
"""
function c_index(i::Integer)
    i >= 1 || throw(ArgumentError("number $i: entries, chunks, files and metadata pairs are numbered from 1"))
    return UInt64(i - 1)
end

"""
    julia_index(i) -> Int

The 1-based number (a Julia index) of the library's 0-based number `i`: an entry, a chunk, or a
rank (whose slot in a per-rank vector this is).
"""
julia_index(i::Integer) = Int(i) + 1

"""
    c_offsets(at, sizes, shape, fqn) -> Vector{UInt64}

The library's 0-based offsets of the box `at` of tensor `fqn`. `at` is a tuple of unit ranges, one
per dimension (a bare range for one dimension), or `nothing` for the box at the origin (the
array's own axes). `sizes` is the size of the Julia array that the box is read into or saved
from: every range must have its length. `shape` is the tensor's global shape when known (else
`nothing`); the box must lie inside it.

Throws `ArgumentError` for what is not a box of 1-based unit ranges of the array's size, and
`ShardpointError` `ESHAPE` (as the library would) for a box outside the tensor.
"""
function c_offsets(at, sizes::Dims, shape, fqn::AbstractString)
    nd = length(sizes)
    ranges = at === nothing ? map(n -> 1:n, sizes) : at isa AbstractRange ? (at,) : at
    ranges isa Tuple ||
        throw(ArgumentError("at=$(repr(at)): give a tuple of unit ranges, one per dimension, as (3:4, 1:8)"))
    length(ranges) == nd ||
        throw(ArgumentError("at has $(length(ranges)) ranges, the array has $nd dimensions"))
    if shape !== nothing && length(shape) != nd
        throw(binding_error(ESHAPE, "the array has $nd dimensions but \"$fqn\" has $(length(shape))"))
    end
    offsets = Vector{UInt64}(undef, nd)
    for d in 1:nd
        r = ranges[d]
        r isa AbstractRange{<:Integer} ||
            throw(ArgumentError("at[$d] is $(repr(r)): a box is unit ranges such as 3:4 (index i is i:i)"))
        step(r) == 1 || throw(ArgumentError("at[$d] = $r has step $(step(r)): a box is unit ranges (a:b)"))
        first(r) >= 1 || throw(ArgumentError("at[$d] = $r starts at $(first(r)): positions are 1-based"))
        length(r) == sizes[d] ||
            throw(ArgumentError("at[$d] = $r has $(length(r)) indices, the array has size $(sizes[d]) there"))
        if shape !== nothing && last(r) > shape[d]
            dims = Tuple(Int(n) for n in shape)
            box = at === nothing ? "an array of size $sizes" : "at[$d] = $r"
            throw(binding_error(ESHAPE, "$box is outside \"$fqn\" of shape $dims"))
        end
        offsets[d] = UInt64(first(r) - 1)
    end
    return offsets
end

"""
    julia_ranges(offsets, sizes, n) -> NTuple{n,UnitRange{Int}}

The 1-based box of the library's `n` 0-based offsets and sizes (arrays the library owns).
"""
function julia_ranges(offsets::Ptr{UInt64}, sizes::Ptr{UInt64}, n::Integer)
    return ntuple(Int(n)) do d
        lo = Int(unsafe_load(offsets, d)) + 1
        lo:(lo + Int(unsafe_load(sizes, d)) - 1)
    end
end
