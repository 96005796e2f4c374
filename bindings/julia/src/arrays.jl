# How Julia arrays are described to the library.
#
# The rule: a Julia array of size (d1, ..., dn) is the tensor of shape (d1, ..., dn), element
# A[i1, ..., in] being tensor element [i1-1, ..., in-1]. The library takes the address of the first
# element and element strides per dimension, so Julia's column-major arrays (strides (1, d1, ...)),
# views with steps (including negative ones) and PermutedDimsArray wrappers are all passed in
# place. A tensor saved from C or Python with shape (a, b) therefore loads into an a×b Matrix with
# the same element at the same index.

# Arrays whose elements sit at pointer(A) + strides: anything Base calls strided, plus
# PermutedDimsArray (only a reordering of its parent's strides).
is_strided(::StridedArray) = true
is_strided(A::PermutedDimsArray) = is_strided(parent(A))
is_strided(::AbstractArray) = false

function require_strided(A::AbstractArray)
    is_strided(A) && return nothing
    throw(ArgumentError(
        "an array of type $(typeof(A)) has no strided memory layout; pass a copy (collect(A)). " *
        "For Bool data use Array{Bool}, not BitArray."))
end

# The address of A's first element (the element at index (1, ..., 1)). Only valid while A is
# preserved from the GC.
first_pointer(A::PermutedDimsArray) = first_pointer(parent(A))
first_pointer(A::AbstractArray) = Ptr{Cvoid}(pointer(A))

# Element strides in the library's type.
element_strides(A::AbstractArray) = (require_strided(A); Int64[s for s in strides(A)])

# A list of ndim non-negative values as the library's uint64_t array.
function u64_vector(values, ndim::Integer, what::AbstractString)
    length(values) == ndim ||
        throw(ArgumentError("$what has $(length(values)) values, the array has $ndim dimensions"))
    return UInt64[v for v in values]
end

# Copies `n` uint64 values owned by the library into a Julia vector.
copy_u64s(p::Ptr{UInt64}, n::Integer) = n == 0 ? Int[] : Int[unsafe_load(p, i) for i in 1:n]

# A byte vector over library memory (for the duration of a callback only).
function wrap_bytes(p::Ptr{Cvoid}, n::Integer)
    n == 0 && return UInt8[]
    p == C_NULL && error("the library passed a NULL buffer of $n bytes")
    return unsafe_wrap(Array, Ptr{UInt8}(p), Int(n))
end
