# Dtypes. The library owns the names, codes and sizes; the binding only knows which Julia element
# type holds each dtype.

# Julia element types with a dtype of the same meaning. (Tuples rather than Dicts: they are built
# at precompile time, and a linear scan of 14 pairs costs nothing.)
const JULIA_DTYPES = (
    Bool => L.SHARDPOINT_DTYPE_BOOL,
    UInt8 => L.SHARDPOINT_DTYPE_U8,
    Int8 => L.SHARDPOINT_DTYPE_I8,
    Int16 => L.SHARDPOINT_DTYPE_I16,
    Int32 => L.SHARDPOINT_DTYPE_I32,
    Int64 => L.SHARDPOINT_DTYPE_I64,
    UInt16 => L.SHARDPOINT_DTYPE_U16,
    UInt32 => L.SHARDPOINT_DTYPE_U32,
    UInt64 => L.SHARDPOINT_DTYPE_U64,
    Float16 => L.SHARDPOINT_DTYPE_F16,
    Float32 => L.SHARDPOINT_DTYPE_F32,
    Float64 => L.SHARDPOINT_DTYPE_F64,
    ComplexF32 => L.SHARDPOINT_DTYPE_COMPLEX64,
    ComplexF64 => L.SHARDPOINT_DTYPE_COMPLEX128,
)

# Dtypes without a Julia type are held as raw bits of their size.
const RAW_DTYPES = (
    UInt16 => L.SHARDPOINT_DTYPE_BF16,
    UInt8 => L.SHARDPOINT_DTYPE_F8_E4M3FN,
    UInt8 => L.SHARDPOINT_DTYPE_F8_E5M2,
)

"""
    dtype_code(x) -> Int32

The C dtype code of `x`: a canonical name (`:f32`, `"bf16"`), a code, or a Julia element type
(`Float32`).
"""
function dtype_code(name::Union{Symbol,AbstractString})
    out = Ref{Int32}(-1)
    check(L.shardpoint_dtype_from_name(String(name), out))
    return out[]
end

function dtype_code(code::Integer)
    L.shardpoint_dtype_size(Int32(code)) == 0 &&
        throw(binding_error(EINVAL, "unknown dtype code $code"))
    return Int32(code)
end

function dtype_code(::Type{T}) where {T}
    for (J, code) in JULIA_DTYPES
        J === T && return code
    end
    throw(ArgumentError(
        "element type $T has no shardpoint dtype; for bf16 and f8 data pass raw bits " *
        "(UInt16 / UInt8 arrays) with dtype=:bf16, :f8_e4m3fn or :f8_e5m2"))
end

"""
    dtype_name(code) -> Symbol

The canonical name of a dtype (`:f32`).
"""
function dtype_name(code::Integer)
    p = L.shardpoint_dtype_name(Int32(code))
    p == C_NULL && throw(binding_error(EINVAL, "unknown dtype code $code"))
    return Symbol(unsafe_string(p))
end

"""
    dtype_size(dtype) -> Int

Bytes per element of a dtype (given as anything `dtype_code` accepts).
"""
dtype_size(dtype) = Int(L.shardpoint_dtype_size(dtype_code(dtype)))

"""
    julia_type(dtype) -> Type

The Julia element type that holds `dtype`: the matching type, or `UInt16` (bf16) / `UInt8` (f8)
raw bits.
"""
function julia_type(dtype)
    code = dtype_code(dtype)
    for (T, c) in (JULIA_DTYPES..., RAW_DTYPES...)
        c == code && return T
    end
    throw(binding_error(EINVAL, "no Julia type for dtype $code"))
end

# The dtype for data of element type T: T's own dtype, or the explicit `dtype` when its element
# size matches T (raw bits such as bf16 in UInt16).
function element_dtype(::Type{T}, dtype) where {T}
    dtype === nothing && return dtype_code(T)
    code = dtype_code(dtype)
    width = Int(L.shardpoint_dtype_size(code))
    if !(isbitstype(T) && sizeof(T) == width)
        throw(ArgumentError("element type $T cannot hold dtype $(dtype_name(code)) ($width bytes per element)"))
    end
    return code
end
