# Tests of the Julia binding against the real library, on real files in temporary directories.
#
#   julia --project=bindings/julia -e 'using Pkg; Pkg.test()'
#
# with the library on the loader's path, or named by the preference "library" (run-tests.sh writes
# a LocalPreferences.toml for the prefix it tests).
#
# Optional: SHARDPOINT_GOLDEN_DIR (one or more checkpoint directories separated by ':') are checked
# against the golden model (tests/golden/README.md), as are the committed tests/golden/v1-*, v2-*
# checkpoints of this repository when they exist.

using Test
using Shardpoint

const SP = Shardpoint

include("golden.jl")

# The code of the ShardpointError that f() throws, or nothing when it throws none.
function error_code(f)
    try
        f()
    catch err
        err isa ShardpointError && return err.code
        rethrow()
    end
    return nothing
end

# The ShardpointError that f() throws, or nothing.
function sp_error(f)
    try
        f()
    catch err
        err isa ShardpointError && return err
        rethrow()
    end
    return nothing
end

# Deterministic sample data of every element type, with negative and large values where the type has them.
sample_value(::Type{Bool}, i::Int) = isodd(i + i ÷ 3)
sample_value(::Type{T}, i::Int) where {T<:Unsigned} = T(i) * (typemax(T) ÷ T(3))
sample_value(::Type{T}, i::Int) where {T<:Signed} = T(i) * (typemax(T) ÷ T(7))
sample_value(::Type{T}, i::Int) where {T<:AbstractFloat} = T(i / 8 - 1.5)
sample_value(::Type{Complex{T}}, i::Int) where {T} = Complex{T}(i / 4, -i / 8)
sample(::Type{T}, dims::Int...) where {T} = reshape([sample_value(T, i) for i in 1:prod(dims; init=1)], dims)

const JULIA_TYPES = [Bool, UInt8, Int8, Int16, Int32, Int64, UInt16, UInt32, UInt64,
                     Float16, Float32, Float64, ComplexF32, ComplexF64]

# The stored bytes of a chunk, read straight from its data file (uncompressed chunks only).
function stored_bytes(dir::AbstractString, c::ChunkInfo)
    return open(joinpath(dir, c.file)) do io
        seek(io, c.file_offset)
        read(io, c.raw_length)
    end
end

# A communicator of one rank implemented in Julia.
mutable struct SoloComm
    calls::Int
end
function SP.gather!(c::SoloComm, send, recv)
    c.calls += 1
    copyto!(recv, send)
    return nothing
end
SP.bcast!(c::SoloComm, buf) = (c.calls += 1; nothing)

# Rank 1 of a local group whose gather fails.
struct FailingRank
    inner::SP.LocalRank
end
function SP.gather!(f::FailingRank, send, recv)
    SP.abort!(f.inner.group, "injected")
    error("injected gather failure")
end
SP.bcast!(f::FailingRank, buf) = SP.bcast!(f.inner, buf)

# A progress function that records its reports, as (phase, done, total), and goes on (returns
# nothing), with the vector it records them in.
function progress_recorder()
    reports = Tuple{Symbol,Int,Int}[]
    note(phase, done, total) = (push!(reports, (phase, done, total)); nothing)
    return reports, note
end

# Whether `reports` are those of one operation of `phase`: one total, done from 0 to that total,
# never going back.
function well_formed(reports, phase::Symbol)
    isempty(reports) && return false
    total = reports[1][3]
    return all(r -> r[1] === phase && r[3] == total && 0 <= r[2] <= total, reports) &&
           reports[1][2] == 0 && reports[end][2] == total && issorted([r[2] for r in reports])
end

# What a progress function throws in the tests.
struct ProgressStop <: Exception end

# The exception f() throws, or nothing.
function thrown_by(f)
    try
        f()
    catch err
        return err
    end
    return nothing
end

@testset "Shardpoint" begin

@testset "library and dtypes" begin
    @test SP.version() == VersionNumber(SP.L.SHARDPOINT_VERSION_STRING)
    for T in JULIA_TYPES
        code = SP.dtype_code(T)
        @test SP.julia_type(code) == T
        @test SP.dtype_size(code) == sizeof(T)
        @test SP.dtype_code(SP.dtype_name(code)) == code
    end
    @test SP.dtype_name(SP.dtype_code(Float32)) == :f32
    @test SP.dtype_name(SP.dtype_code(ComplexF64)) == :complex128
    @test SP.julia_type(:bf16) == UInt16
    @test SP.julia_type("f8_e4m3fn") == UInt8
    @test SP.dtype_size(:f8_e5m2) == 1
    @test error_code(() -> SP.dtype_code(:f33)) == SP.EINVAL
    @test SP.error_name(SP.ECHECKSUM) == "SHARDPOINT_ECHECKSUM"
    @test SP.error_name(12345) == "SHARDPOINT_UNKNOWN"
    @test_throws ArgumentError SP.dtype_code(String)
end

@testset "round trip of every Julia element type" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        Save(ckpt) do s
            for T in JULIA_TYPES
                add_tensor!(s, "t." * string(SP.dtype_name(SP.dtype_code(T))), sample(T, 3, 4))
            end
            # dtypes without a Julia type travel as raw bits
            add_tensor!(s, "raw.bf16", UInt16[0x3f80, 0x4000, 0xbf80, 0x0000]; dtype=:bf16)
            add_tensor!(s, "raw.e4m3", reshape(UInt8.(1:6), 2, 3); dtype=:f8_e4m3fn)
            add_tensor!(s, "raw.e5m2", reshape(UInt8.(250:255), 3, 2); dtype="f8_e5m2")
        end
        Reader(ckpt) do r
            for T in JULIA_TYPES
                name = "t." * string(SP.dtype_name(SP.dtype_code(T)))
                e = entry(r, name)
                @test e.kind === :tensor
                @test e.dtype === SP.dtype_name(SP.dtype_code(T))
                @test e.shape == [3, 4]
                @test e.nbytes == 12 * sizeof(T)
                got = read_tensor(r, name)
                @test got isa Matrix{T}
                @test got == sample(T, 3, 4)
            end
            @test entry(r, "raw.bf16").dtype === :bf16
            @test read_tensor(r, "raw.bf16") == UInt16[0x3f80, 0x4000, 0xbf80, 0x0000]
            @test read_tensor(r, "raw.e4m3") == reshape(UInt8.(1:6), 2, 3)
            @test entry(r, "raw.e5m2").dtype === :f8_e5m2
            @test read_tensor(r, "raw.e5m2") == reshape(UInt8.(250:255), 3, 2)
            # a raw dtype read into another type of the same size
            @test read_tensor(r, "raw.bf16"; element_type=Int16) == Int16[0x3f80, 0x4000, reinterpret(Int16, 0xbf80), 0]
        end
    end
    mktempdir() do dir
        s = Save(joinpath(dir, "x"))
        @test_throws ArgumentError add_tensor!(s, "wrong.size", Float32[1, 2]; dtype=:bf16)
        @test_throws ArgumentError add_tensor!(s, "no.dtype", ["a", "b"])
        @test_throws ArgumentError add_tensor!(s, "bits", trues(4))       # BitArray: not strided
        @test_throws ArgumentError add_tensor!(s, "range", 1:4)          # lazy range: no memory
        close(s)
    end
end

@testset "Julia arrays are tensors with the same indices (strides, not copies)" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        M = reshape(collect(Float64, 1:12), 3, 4)          # M[i, j] = i + 3(j - 1)
        big = reshape(collect(Int32, 1:60), 6, 10)
        stepped = view(big, 1:2:5, 2:3:10)                 # 3×3, strides (2, 18)
        v = collect(Int16, 1:10)
        reversed = view(v, 10:-1:1)                        # stride -1
        permuted = PermutedDimsArray(M, (2, 1))            # 4×3 over M's memory
        Save(ckpt) do s
            add_tensor!(s, "m", M)
            add_tensor!(s, "stepped", stepped)
            add_tensor!(s, "reversed", reversed)
            add_tensor!(s, "permuted", permuted)
            add_tensor!(s, "scalar", 42)
            add_tensor!(s, "empty", zeros(Float32, 0, 4))
        end
        Reader(ckpt) do r
            @test entry(r, "m").shape == [3, 4]
            @test read_tensor(r, "m") == M
            # On disk the tensor is C order: element [i-1, j-1] at (i-1)*4 + (j-1).
            c = only(chunks(r, "m"))
            @test c.transform === :none
            @test reinterpret(Float64, stored_bytes(ckpt, c)) == vec(permutedims(M))
            # A C-order destination (row-major buffer) receives the same C-order image.
            buf = zeros(Float64, 4, 3)
            read_tensor!(r, "m", PermutedDimsArray(buf, (2, 1)))
            @test vec(buf) == vec(permutedims(M))
            # boxes are Julia index ranges, for read_tensor's indices and for `at`
            @test read_tensor(r, "m", 2:3, 2:4) == M[2:3, 2:4]
            @test read_tensor(r, "m", 2, :) == M[2:2, :]
            @test read_tensor!(r, "m", zeros(2, 2); at=(2:3, 3:4)) == M[2:3, 3:4]
            @test read_tensor!(r, "m", zeros(3, 1); at=(axes(M, 1), 4:4)) == M[:, 4:4]

            @test entry(r, "stepped").shape == [3, 3]
            @test read_tensor(r, "stepped") == collect(stepped)
            @test read_tensor(r, "reversed") == Int16.(10:-1:1)
            @test entry(r, "permuted").shape == [4, 3]
            @test read_tensor(r, "permuted") == permutedims(M)

            scalar = read_tensor(r, "scalar")
            @test scalar isa Array{Int64,0}
            @test scalar[] == 42
            @test entry(r, "scalar").shape == Int[]
            @test size(read_tensor(r, "empty")) == (0, 4)

            # strided destinations are written in place, the rest untouched
            D = fill(-1.0, 7, 4)
            read_tensor!(r, "m", view(D, 2:2:6, :))
            @test D[2:2:6, :] == M
            @test all(==(-1.0), D[1:2:7, :])
            d = zeros(Int16, 10)
            read_tensor!(r, "reversed", view(d, 10:-1:1))
            @test d == Int16.(1:10)
        end
    end
end

@testset "bytes entries and user metadata" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        blob = collect(UInt8, 0:255)
        Save(ckpt) do s
            add_bytes!(s, "blob", blob)
            add_bytes!(s, "text", "héllo")
            add_bytes!(s, "empty", UInt8[])
            add_bytes!(s, "slice", view(blob, 11:20))
            set_metadata!(s, "step", "1234")
            set_metadata!(s, "k", "first")
            set_metadata!(s, "k", "last")
        end
        Reader(ckpt) do r
            e = entry(r, "blob")
            @test e.kind === :bytes
            @test e.dtype === nothing
            @test e.nbytes == 256
            @test read_bytes(r, "blob") == blob
            @test String(read_bytes(r, "text")) == "héllo"
            @test read_bytes(r, "empty") == UInt8[]
            @test read_bytes(r, "slice") == blob[11:20]
            buf = zeros(UInt8, 300)
            @test read_bytes!(r, "blob", buf) == 256
            @test buf[1:256] == blob
            @test error_code(() -> read_bytes!(r, "blob", zeros(UInt8, 10))) == SP.ERANGE
            @test error_code(() -> read_tensor(r, "blob")) == SP.EKIND
            @test error_code(() -> read_tensor!(r, "blob", zeros(UInt8, 256))) == SP.EKIND
            @test user_metadata(r) == Dict("step" => "1234", "k" => "last")
            @test user_metadata(r, "step") == "1234"
            @test error_code(() -> user_metadata(r, "missing")) == SP.ENOTFOUND
        end
    end
end

@testset "box reads spanning chunks, loads with several requests" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        W = reshape(collect(Float32, 1:60), 10, 6)
        Save(ckpt; allow_partial=true) do s   # "half" is partly saved on purpose
            # one rank offering three chunks of rows (views: read in place at commit)
            for rows in (1:3, 4:7, 8:10)
                add_tensor!(s, "w", view(W, rows, :); at=(rows, axes(W, 2)), global_shape=size(W))
            end
            add_tensor!(s, "half", W[1:3, :]; global_shape=(10, 6))   # rows 4:10 never saved
            add_bytes!(s, "blob", collect(UInt8, 1:50))
        end
        Reader(ckpt) do r
            cs = chunks(r, "w")
            @test length(cs) == 3
            @test Set(c.box for c in cs) == Set([(1:3, 1:6), (4:7, 1:6), (8:10, 1:6)])
            # a chunk's box is where it sits, in the form reads take
            for c in cs
                @test read_tensor(r, "w", c.box...) == W[c.box...]
                @test read_tensor!(r, "w", zeros(Float32, length.(c.box)...); at=c.box) == W[c.box...]
            end
            @test all(c -> c.writer_rank == 0, cs)
            @test entry(r, "w").covered_numel == 60
            @test entry(r, "w").chunk_count == 3
            @test read_tensor(r, "w") == W
            @test read_tensor(r, "w", 3:8, 2:5) == W[3:8, 2:5]

            @test entry(r, "half").covered_numel == 18
            @test read_tensor(r, "half", 1:3, :) == W[1:3, :]
            @test error_code(() -> read_tensor(r, "half")) == SP.EUNCOVERED

            top = zeros(Float32, 5, 6)
            D = zeros(Float32, 6, 12)
            blob = zeros(UInt8, 64)
            Load(r) do ld
                add_tensor!(ld, "w", top; at=(1:5, 1:6))                  # a box
                add_tensor!(ld, "w", view(D, :, 1:2:12); at=(5:10, 1:6))  # a box, strided dest
                add_bytes!(ld, "blob", blob)
                @test skipped_count(ld) == 0
            end
            @test top == W[1:5, :]
            @test D[:, 1:2:12] == W[5:10, :]
            @test all(iszero, D[:, 2:2:12])
            @test blob[1:50] == collect(UInt8, 1:50)
        end
        Reader(ckpt; allow_partial=true) do r
            x = zeros(Float32, 2)
            y = zeros(Float32, 10, 6)
            ld = Load(r)
            add_tensor!(ld, "not.there", x)
            add_tensor!(ld, "w", y)
            execute!(ld)
            @test skipped_count(ld) == 1
            close(ld)
            @test y == W
            @test x == zeros(Float32, 2)
        end
    end
end

@testset "inspect and storage info" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        Save(ckpt; checkpoint_id="run-7", alignment=8192, io_threads=2) do s
            add_tensor!(s, "b.second", ones(Float32, 5))
            add_tensor!(s, "a.first", zeros(Int64, 2, 2))
            add_bytes!(s, "c.blob", UInt8[1, 2, 3])
        end
        Reader(ckpt) do r
            info = storage_info(r)
            @test info.checkpoint_id == "run-7"
            @test info.world_size == 1
            @test info.format_major == SP.L.SHARDPOINT_FORMAT_MAJOR
            @test info.alignment == 8192
            @test info.file_count >= 1
            @test info.library_version == string(SP.version())
            @test !isempty(info.save_id)
            @test info.created_unix_ns > 0
            names = [e.fqn for e in entries(r)]
            @test names == ["a.first", "b.second", "c.blob"]
            @test entry(r, 1).fqn == "a.first"                   # entries are numbered from 1
            @test entry(r, 2).fqn == "b.second"
            @test entry(r, 3).fqn == entries(r)[3].fqn
            @test_throws ArgumentError entry(r, 0)
            @test error_code(() -> entry(r, 4)) == SP.ERANGE
            @test entry(r, "a.first").numel == 4
            @test error_code(() -> entry(r, "nope")) == SP.ENOTFOUND
            for e in entries(r)
                for c in chunks(r, e.fqn)
                    @test c.file_offset % 8192 == 0
                    @test c.raw_length == (e.kind === :bytes ? e.nbytes : prod(length, c.box; init=1) * SP.dtype_size(e.dtype))
                    @test isfile(joinpath(ckpt, c.file))
                end
            end
            @test only(chunks(r, "c.blob")).box == ()
            @test only(chunks(r, "a.first")).box == (1:2, 1:2)
            fs = files(r)
            @test length(fs) == info.file_count
            for f in fs
                @test f.rank == 0
                @test filesize(joinpath(ckpt, f.name)) == f.size
            end
            @test Set(c.file for e in entries(r) for c in chunks(r, e.fqn)) ⊆ Set(f.name for f in fs)
            @test verify(r) === nothing
        end
    end
end

@testset "verify and corrupted data" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        x = collect(Float64, 1:100)
        Save(ckpt) do s
            add_tensor!(s, "x", x)
        end
        c = Reader(r -> only(chunks(r, "x")), ckpt)
        path = joinpath(ckpt, c.file)
        open(path, "r+") do io          # flip the first data byte
            seek(io, c.file_offset)
            b = read(io, UInt8)
            seek(io, c.file_offset)
            write(io, b ⊻ 0xff)
        end
        Reader(ckpt) do r                # the metadata is intact: opening works
            err = sp_error(() -> verify(r))
            @test err isa ShardpointError
            @test err.code == SP.ECHECKSUM
            @test err.name == "SHARDPOINT_ECHECKSUM"
            @test !isempty(err.message)
            @test error_code(() -> read_tensor(r, "x")) == SP.ECHECKSUM
        end
        Reader(ckpt; checksums=false) do r
            y = read_tensor(r, "x")
            @test count(y .!= x) == 1
            @test y[2:end] == x[2:end]
            @test error_code(() -> verify(r)) == SP.ECHECKSUM   # verify checks regardless
        end
    end
end

@testset "block compression: zstd and zlib, shuffled" begin
    mktempdir() do dir
        w = [sin(Float32(i)) / 50 for i in 1:30000]
        for (codec, transform) in ((:zstd, :zstd_blocks), (:zlib, :zlib_blocks))
            ckpt = joinpath(dir, String(codec))
            Save(ckpt; compression=codec, shuffle=true) do s
                add_tensor!(s, "w", w)
            end
            Reader(ckpt) do r
                @test storage_info(r).format_major == 2
                c = only(chunks(r, "w"))
                @test c.transform === transform
                @test c.shuffle_width == 4
                @test c.stored_length < c.raw_length
                @test read_tensor(r, "w") == w
                @test verify(r) === nothing
            end
        end
        @test_throws ArgumentError Save(joinpath(dir, "x"); compression=:lz4)
        err = sp_error(() -> Save(joinpath(dir, "y"); shuffle=true))
        @test err isa ShardpointError && err.code == SP.EINVAL
    end
end

@testset "options: durable, compression, overwrite" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        z = zeros(Float64, 4096)
        Save(ckpt; durable=false, compression=6) do s
            add_tensor!(s, "z", z)
            add_tensor!(s, "v", collect(1:10))
        end
        first_id = Reader(ckpt) do r
            c = only(chunks(r, "z"))
            @test c.transform === :deflate
            @test c.stored_length < c.raw_length
            @test c.raw_length == 4096 * 8
            @test entry(r, "z").stored_bytes < entry(r, "z").nbytes
            @test read_tensor(r, "z") == z
            @test read_tensor(r, "v") == collect(1:10)
            @test verify(r) === nothing
            storage_info(r).save_id
        end

        # an existing checkpoint is kept unless overwrite is asked for
        err = sp_error(() -> Save(ckpt) do s
            add_tensor!(s, "v", collect(11:20))
        end)
        @test err isa ShardpointError
        @test err.code == SP.EEXISTS
        @test occursin("SHARDPOINT_EEXISTS", sprint(showerror, err))
        Reader(ckpt) do r
            @test read_tensor(r, "v") == collect(1:10)
            @test storage_info(r).save_id == first_id
        end

        Save(ckpt; overwrite=true) do s
            add_tensor!(s, "v", collect(11:20))
        end
        Reader(ckpt) do r
            @test [e.fqn for e in entries(r)] == ["v"]
            @test read_tensor(r, "v") == collect(11:20)
            @test storage_info(r).save_id != first_id
        end
    end
end

@testset "errors carry the library's code, name and message" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        Save(ckpt) do s
            add_tensor!(s, "m", ones(Float32, 3, 4))
        end
        Reader(ckpt) do r
            err = sp_error(() -> read_tensor!(r, "m", zeros(Float64, 3, 4)))
            @test err isa ShardpointError
            @test err.code == SP.EDTYPE
            @test err.name == "SHARDPOINT_EDTYPE"
            @test !isempty(err.message)
            @test error_code(() -> read_tensor!(r, "m", zeros(Float32, 3, 4); at=(2:4, 1:4))) == SP.ESHAPE
            @test error_code(() -> read_tensor!(r, "m", zeros(Float32, 12))) == SP.ESHAPE
            @test error_code(() -> read_tensor!(r, "missing", zeros(Float32, 3, 4))) == SP.ENOTFOUND
            ld = Load(r)
            @test error_code(() -> add_tensor!(ld, "m", zeros(Int32, 3, 4))) == SP.EDTYPE
            close(ld)
        end
        @test error_code(() -> Reader(joinpath(dir, "nothing-here"))) == SP.ENOTFOUND

        s = Save(joinpath(dir, "other"))
        add_tensor!(s, "a", ones(4, 4))
        @test error_code(() -> add_tensor!(s, "a", ones(2, 4); at=(2:3, 1:4), global_shape=(4, 4))) == SP.ECONFLICT
        @test error_code(() -> add_tensor!(s, "big", ones(3); global_shape=(2,))) == SP.ESHAPE
        commit!(s)
        @test s.committed
        @test error_code(() -> commit!(s)) == SP.ESTATE
        @test error_code(() -> add_bytes!(s, "late", UInt8[1])) == SP.ESTATE
        close(s)
        close(s)                                          # close is idempotent
        @test !isopen(s)
        @test_throws ArgumentError commit!(s)              # a closed handle is not passed to C
    end
end

@testset "loads are exact: a destination has the shape of what it receives" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        W = reshape(collect(Float32, 1:48), 6, 8)
        Save(ckpt) do s
            add_tensor!(s, "w", W)
            add_bytes!(s, "blob", UInt8[1, 2, 3])
        end
        Reader(ckpt) do r
            for shape in ((6, 7), (6, 9), (7, 8), (8, 6), (48,), (6, 8, 1))
                dest = fill(-1f0, shape...)
                err = sp_error(() -> read_tensor!(r, "w", dest))
                @test err isa ShardpointError && err.code == SP.ESHAPE
                @test err.message == "destination has shape $(shape) but \"w\" is (6, 8)"
                @test all(==(-1f0), dest)
                Load(r) do ld
                    @test error_code(() -> add_tensor!(ld, "w", dest)) == SP.ESHAPE
                end
            end
            # the right shape, also as a strided view; the wrong element type
            @test read_tensor!(r, "w", zeros(Float32, 6, 8)) == W
            D = zeros(Float32, 12, 8)
            read_tensor!(r, "w", view(D, 1:2:12, :))
            @test D[1:2:12, :] == W
            @test error_code(() -> read_tensor!(r, "w", zeros(Float64, 6, 8))) == SP.EDTYPE
            @test error_code(() -> read_tensor!(r, "w", zeros(Int32, 6, 8))) == SP.EDTYPE
            # a part of the tensor only when asked for, with `at`
            @test read_tensor!(r, "w", zeros(Float32, 6, 7); at=(1:6, 2:8)) == W[:, 2:8]
            @test read_tensor(r, "w", 2:3, :) == W[2:3, :]
            # missing and bytes entries keep their errors
            @test error_code(() -> read_tensor!(r, "nope", zeros(Float32, 6, 7))) == SP.ENOTFOUND
            @test error_code(() -> read_tensor!(r, "blob", zeros(UInt8, 3))) == SP.EKIND
        end
    end
end

@testset "positions are 1-based ranges, checked before the library sees them" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        W = reshape(collect(Float32, 1:48), 6, 8)
        Save(ckpt) do s
            add_tensor!(s, "w", W[1:3, :]; at=(1:3, 1:8), global_shape=(6, 8))
            add_tensor!(s, "w", view(W, 4:6, :); at=(4:6, axes(W, 2)), global_shape=size(W))
            add_tensor!(s, "v", collect(1:5); at=1:5)          # a bare range for a vector
            # what is not a box of 1-based unit ranges of the array's size never reaches C
            A = ones(Float32, 2, 8)
            @test_throws ArgumentError add_tensor!(s, "x", A; at=(0:1, 1:8), global_shape=(6, 8))    # below 1
            @test_throws ArgumentError add_tensor!(s, "x", A; at=(1:2:3, 1:8), global_shape=(6, 8))  # a step
            @test_throws ArgumentError add_tensor!(s, "x", A; at=(1:3, 1:8), global_shape=(6, 8))    # 3 rows for 2
            @test_throws ArgumentError add_tensor!(s, "x", A; at=(1:2,), global_shape=(6, 8))        # 1 of 2 dims
            @test_throws ArgumentError add_tensor!(s, "x", A; at=(1, 1), global_shape=(6, 8))        # not ranges
            @test_throws ArgumentError add_tensor!(s, "x", A; at=[1:2, 1:8], global_shape=(6, 8))    # not a tuple
            err = sp_error(() -> add_tensor!(s, "x", A; at=(6:7, 1:8), global_shape=(6, 8)))
            @test err isa ShardpointError && err.code == SP.ESHAPE
            @test err.message == "at[1] = 6:7 is outside \"x\" of shape (6, 8)"
        end
        Reader(ckpt) do r
            @test [e.fqn for e in entries(r)] == ["v", "w"]
            @test read_tensor(r, "w") == W
            @test read_tensor!(r, "v", zeros(Int, 2); at=2:3) == [2, 3]
            dest = zeros(Float32, 2, 3)
            @test read_tensor!(r, "w", dest; at=(5:6, 6:8)) == W[5:6, 6:8]
            @test_throws ArgumentError read_tensor!(r, "w", dest; at=(0:1, 1:3))
            @test_throws ArgumentError read_tensor!(r, "w", dest; at=(1:2:3, 1:3))
            @test_throws ArgumentError read_tensor!(r, "w", dest; at=(1:3, 1:3))     # 3 rows into 2
            @test_throws ArgumentError read_tensor!(r, "w", dest; at=(1:2,))
            @test_throws ArgumentError read_tensor(r, "w", 1:2:5, :)
            @test_throws ArgumentError read_tensor(r, "w", [1, 2], :)
            err = sp_error(() -> read_tensor!(r, "w", dest; at=(6:7, 1:3)))
            @test err isa ShardpointError && err.code == SP.ESHAPE
            @test err.message == "at[1] = 6:7 is outside \"w\" of shape (6, 8)"
            @test error_code(() -> read_tensor(r, "w", 1:7, :)) == SP.ESHAPE
            Load(r) do ld
                @test_throws ArgumentError add_tensor!(ld, "w", dest; at=(0:1, 1:3))
                add_tensor!(ld, "w", dest; at=(1:2, 1:3))
            end
            @test dest == W[1:2, 1:3]
            # saved chunks report their boxes in the form `at` takes
            @test Set(c.box for c in chunks(r, "w")) == Set([(1:3, 1:8), (4:6, 1:8)])
            @test only(chunks(r, "v")).box == (1:5,)
        end
    end
end

@testset "error codes of 0.2: no space, not durable" begin
    @test SP.ENOSPC == -20
    @test SP.ENOTDURABLE == -21
    @test SP.error_name(SP.ENOSPC) == "SHARDPOINT_ENOSPC"
    @test SP.error_name(SP.ENOTDURABLE) == "SHARDPOINT_ENOTDURABLE"
    full = SP.binding_error(SP.ENOSPC, "disk full")
    @test is_no_space(full) && !committed(full)
    late = SP.binding_error(SP.ENOTDURABLE, "directory fsync failed")
    @test committed(late) && !is_no_space(late)
end

@testset "save options: durable by default, partial tensors only when asked" begin
    @test save_flags() == 0
    @test save_flags(durable=false) == 0x4
    @test save_flags(allow_partial=true) == 0x8
    @test save_flags(overwrite=true, durable=false, allow_partial=true) == 0x1 | 0x4 | 0x8
    mktempdir() do dir
        ckpt = joinpath(dir, "gap")
        err = sp_error(() -> Save(ckpt) do s
            add_tensor!(s, "t", zeros(Int32, 3, 3); global_shape=(4, 3))   # row 4 never offered
        end)
        @test err isa ShardpointError && err.code == SP.EUNCOVERED
        @test occursin("t", err.message)
        @test error_code(() -> Reader(ckpt)) == SP.ENOTFOUND
        @test !isdir(ckpt) || all(==("shardpoint.lock"), readdir(ckpt))
        Save(ckpt; allow_partial=true) do s
            add_tensor!(s, "t", zeros(Int32, 3, 3); global_shape=(4, 3))
        end
        Reader(ckpt) do r
            @test entry(r, "t").covered_numel == 9
        end
        # the deprecated keyword still saves (durably)
        old = joinpath(dir, "old")
        Save(old; fsync=true) do s
            add_tensor!(s, "x", Int8[1, 2])
        end
        Reader(old) do r
            @test read_tensor(r, "x") == Int8[1, 2]
            @test block_size(r) > 0
            @test isempty(verify_each(r))
        end
    end
end

@testset "verify_each and collect_garbage" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        Save(ckpt) do s
            add_tensor!(s, "a", collect(Int64, 1:1000))
            add_tensor!(s, "b", collect(Int64, 1:1000))
        end
        for fqn in ("a", "b")
            c = Reader(r -> only(chunks(r, fqn)), ckpt)
            open(joinpath(ckpt, c.file), "r+") do io
                seek(io, c.file_offset + 8)
                write(io, 0xff)
            end
        end
        Reader(ckpt) do r
            problems = verify_each(r)
            @test [p.fqn for p in problems] == ["a", "b"]
            @test all(p -> p.code == SP.ECHECKSUM, problems)
            @test all(p -> p.chunk == 1, problems)                 # chunks are numbered from 1
            @test all(p -> chunks(r, p.fqn)[p.chunk].file == p.file, problems)
        end
        debris = joinpath(ckpt, "data-" * "0"^32 * "-r0.bin")
        write(debris, zeros(UInt8, 10))
        @test collect_garbage(ckpt; dry_run=true).files == ["data-" * "0"^32 * "-r0.bin" => 10]
        @test isfile(debris)
        @test collect_garbage(ckpt).bytes == 10
        @test !isfile(debris)
    end
end

@testset "progress and cancellation" begin
    @test SP.ECANCELED == -22
    @test SP.error_name(SP.ECANCELED) == "SHARDPOINT_ECANCELED"
    stopped = SP.binding_error(SP.ECANCELED, "canceled by the progress callback")
    @test is_canceled(stopped) && !committed(stopped) && !is_no_space(stopped)
    @test !is_canceled(SP.binding_error(SP.EIO, "disk"))
    @test SP.phase_symbol(SP.L.SHARDPOINT_PROGRESS_WRITE) === :write
    @test SP.phase_symbol(SP.L.SHARDPOINT_PROGRESS_READ) === :read
    @test SP.phase_symbol(SP.L.SHARDPOINT_PROGRESS_VERIFY) === :verify
    @test isdefined(SP.L, :shardpoint_writer_set_progress)   # the phase API: raw binding only
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        a = collect(Float64, 1:500_000)                     # 4 MB
        b = reshape(collect(Int32, 1:60_000), 300, 200)

        # A save reports its write: from 0 to the raw bytes of this rank's chunks, never back,
        # on the task that called it.
        caller = current_task()
        on_caller = Ref(true)
        reports = Tuple{Symbol,Int,Int}[]
        note = function (phase, done, total)
            on_caller[] &= current_task() === caller
            push!(reports, (phase, done, total))
            return nothing                                  # nothing goes on
        end
        Save(ckpt; progress=note) do s
            add_tensor!(s, "a", a)
            add_tensor!(s, "b", b)
        end
        @test well_formed(reports, :write)
        @test reports[end][3] == sizeof(a) + sizeof(b)
        @test on_caller[]
        first_id = Reader(r -> storage_info(r).save_id, ckpt)

        Reader(ckpt) do r
            # A verify reports the stored bytes it checks, and the reader forgets the function.
            verified, note = progress_recorder()
            @test verify(r; progress=note) === nothing
            @test well_formed(verified, :verify)
            @test verified[end][3] == sum(e.stored_bytes for e in entries(r))
            n = length(verified)
            @test verify(r) === nothing
            @test length(verified) == n
            checked, note = progress_recorder()
            @test isempty(verify_each(r; progress=note))
            @test well_formed(checked, :verify)

            # A load reports the bytes it reads: one whole raw chunk, its bytes.
            read_reports, note = progress_recorder()
            dest = zeros(Float64, length(a))
            Load(r; progress=note) do ld
                add_tensor!(ld, "a", dest)
            end
            @test dest == a
            @test well_formed(read_reports, :read)
            @test read_reports[end][3] == sizeof(a)

            # Anything but false goes on.
            for verdict in (true, 0, 1, "go on")
                dest2 = zeros(Int32, 300, 200)
                ld = Load(r)
                add_tensor!(ld, "b", dest2)
                execute!(ld; progress=(phase, done, total) -> verdict)
                @test ld.executed
                close(ld)
                @test dest2 == b
            end
        end

        # Returning false cancels: ECANCELED, nothing is committed, the checkpoint stays.
        calls = Ref(0)
        stop = (phase, done, total) -> (calls[] += 1; false)
        err = sp_error(() -> Save(ckpt; overwrite=true, progress=stop) do s
            add_tensor!(s, "a", zeros(Float64, length(a)))
            add_tensor!(s, "b", zeros(Int32, 300, 200))
        end)
        @test err isa ShardpointError
        @test err.code == SP.ECANCELED
        @test err.name == "SHARDPOINT_ECANCELED"
        @test is_canceled(err)
        @test calls[] == 1                                  # the first report canceled
        s = Save(ckpt; overwrite=true)
        add_tensor!(s, "a", fill(-1.0, length(a)))
        @test error_code(() -> commit!(s; progress=(phase, done, total) -> false)) == SP.ECANCELED
        @test !s.committed
        @test error_code(() -> commit!(s)) == SP.ESTATE     # a save commits (or cancels) once
        @test error_code(() -> commit!(s; progress=stop)) == SP.ESTATE
        close(s)
        fresh = joinpath(dir, "fresh")
        @test error_code(() -> Save(fresh; progress=stop) do s
            add_tensor!(s, "x", ones(10))
        end) == SP.ECANCELED
        @test error_code(() -> Reader(fresh)) == SP.ENOTFOUND

        # An exception thrown by the progress function cancels too, and is rethrown as it was.
        throwing = (phase, done, total) -> throw(ProgressStop())
        @test thrown_by(() -> Save(ckpt; overwrite=true, progress=throwing) do s
            add_tensor!(s, "a", zeros(Float64, length(a)))
        end) isa ProgressStop
        @test thrown_by(() -> Save(fresh; progress=throwing) do s
            add_tensor!(s, "x", ones(10))
        end) isa ProgressStop
        @test error_code(() -> Reader(fresh)) == SP.ENOTFOUND

        # The checkpoint from before every canceled save loads, with the same values.
        Reader(ckpt) do r
            @test storage_info(r).save_id == first_id
            @test read_tensor(r, "a") == a
            @test read_tensor(r, "b") == b
            @test isempty(verify_each(r))

            # Loads and verifies cancel the same way.
            ld = Load(r)
            add_tensor!(ld, "a", zeros(Float64, length(a)))
            @test error_code(() -> execute!(ld; progress=(phase, done, total) -> false)) == SP.ECANCELED
            @test error_code(() -> execute!(ld)) == SP.ESTATE
            close(ld)
            ld = Load(r)
            add_tensor!(ld, "a", zeros(Float64, length(a)))
            @test thrown_by(() -> execute!(ld; progress=throwing)) isa ProgressStop
            close(ld)
            calls[] = 0
            @test error_code(() -> verify(r; progress=stop)) == SP.ECANCELED
            @test error_code(() -> verify_each(r; progress=stop)) == SP.ECANCELED
            @test calls[] == 2
            @test thrown_by(() -> verify(r; progress=throwing)) isa ProgressStop
            @test thrown_by(() -> verify_each(r; progress=throwing)) isa ProgressStop
            # No verify reports to a function of an earlier call.
            @test verify(r) === nothing
            @test isempty(verify_each(r))
            @test calls[] == 2
        end

        # With a communicator, the rank that cancels gets ECANCELED, the others ERANK.
        ranked = joinpath(dir, "ranked")
        errs = run_local(2) do r, comm
            sp_error(() -> Save(ranked; comm=comm, progress=(phase, done, total) -> r != 1) do s
                add_tensor!(s, "x", fill(Float32(r), 1000); at=(1000r+1:1000r+1000,), global_shape=(2000,))
            end)
        end
        @test errs[2] isa ShardpointError && errs[2].code == SP.ECANCELED
        @test errs[1] isa ShardpointError && errs[1].code == SP.ERANK
        @test error_code(() -> Reader(ranked)) == SP.ENOTFOUND
    end
end

@testset "asynchronous saves" begin
    mktempdir() do dir
        # A staging area: its capacity, close (idempotent), the do-block form.
        st = Staging(1 << 20)
        @test capacity(st) == 1 << 20
        @test isopen(st)
        @test occursin("1048576", sprint(show, st))
        close(st)
        close(st)
        @test !isopen(st)
        @test_throws ArgumentError capacity(st)
        @test_throws ArgumentError Staging(-1)
        @test Staging(capacity, 0) == 0

        # The arrays may change as soon as commit_async! returns: the checkpoint holds what they
        # were when it was called.
        ckpt = joinpath(dir, "ckpt")
        W = reshape(collect(Float32, 1:(512 * 256)), 512, 256)
        grid = reshape(collect(Int64, 1:4096), 4, 1024)
        col = view(grid, 2, :)                              # strided
        blob = collect(UInt8, 1:100)
        W0, col0, blob0 = copy(W), collect(col), copy(blob)
        s = Save(ckpt)
        add_tensor!(s, "w", W)
        add_tensor!(s, "col", col)
        add_bytes!(s, "blob", blob)
        set_metadata!(s, "step", "1")
        need = staging_size(s)
        raw = sizeof(W) + sizeof(col0) + length(blob)
        @test raw <= need <= raw + 3 * 64                    # each item 64-byte aligned
        staging = Staging(need)
        @test capacity(staging) == need
        @test commit_async!(s, staging) === s
        @test isempty(s.keep)                                # copied: the arrays are free
        @test s.staging === staging
        @test staging.user === s
        fill!(W, -1.0f0)                                     # the next training step
        fill!(grid, 0)
        fill!(blob, 0x5a)
        GC.gc(true)
        @test error_code(() -> commit!(s)) == SP.ESTATE      # a save commits once
        @test error_code(() -> commit_async!(s, staging)) == SP.ESTATE
        @test wait(s) === s
        @test wait(s) === s                                  # the same outcome again
        @test isready(s)
        @test s.committed
        close(s)
        @test staging.user === nothing
        @test_throws ArgumentError wait(s)                   # a closed save
        @test_throws ArgumentError isready(s)
        @test_throws ArgumentError cancel!(s)
        @test_throws ArgumentError commit_async!(s, staging)
        Reader(ckpt) do r
            @test read_tensor(r, "w") == W0
            @test read_tensor(r, "col") == col0
            @test read_bytes(r, "blob") == blob0
            @test user_metadata(r)["step"] == "1"
            @test isempty(verify_each(r))
        end

        # Errors come from wait, the same each time: a second save without overwrite.
        first_id = Reader(r -> storage_info(r).save_id, ckpt)
        s2 = Save(ckpt)
        add_tensor!(s2, "w", zeros(Float32, 4))
        commit_async!(s2, staging)
        e1 = sp_error(() -> wait(s2))
        e2 = sp_error(() -> wait(s2))
        @test e1 isa ShardpointError && e1.code == SP.EEXISTS
        @test e2 isa ShardpointError && e2.code == e1.code && e2.message == e1.message
        @test isready(s2)
        @test !s2.committed
        close(s2)
        @test Reader(r -> storage_info(r).save_id, ckpt) == first_id

        # A staging area too small: ERANGE, nothing is started, and the save still commits.
        small = joinpath(dir, "small")
        s3 = Save(small)
        x = collect(Float64, 1:10_000)
        add_tensor!(s3, "x", x)
        Staging(1024) do tiny
            err = sp_error(() -> commit_async!(s3, tiny))
            @test err isa ShardpointError && err.code == SP.ERANGE
            @test err.name == "SHARDPOINT_ERANGE"
            @test occursin("staging", err.message)
            @test tiny.user === nothing
        end
        @test !s3.async
        @test error_code(() -> wait(s3)) == SP.ESTATE        # no asynchronous commit was started
        @test error_code(() -> isready(s3)) == SP.ESTATE
        @test error_code(() -> cancel!(s3)) == SP.ESTATE
        @test length(s3.keep) == 1                           # the array is still referenced
        GC.gc(true)
        @test commit!(s3) === s3
        close(s3)
        @test Reader(r -> read_tensor(r, "x"), small) == x

        # Without an area, one of the right size is made for the save and freed with it.
        own = joinpath(dir, "own")
        s4 = Save(own)
        y = fill(Int32(7), 100, 10)
        add_tensor!(s4, "y", y)
        need4 = staging_size(s4)
        commit_async!(s4)
        owned = s4.staging
        @test s4.owns_staging
        @test capacity(owned) == need4
        fill!(y, Int32(0))
        @test wait(s4) === s4
        close(s4)
        @test !isopen(owned)
        @test Reader(r -> read_tensor(r, "y"), own) == fill(Int32(7), 100, 10)

        # cancel! stops the commit before this rank's data is written: ECANCELED, nothing is
        # committed, the checkpoint from before stays as it was. The write is made slow (zstd at its
        # highest level, one I/O thread, 16 MiB of random floats: about a second) so that the
        # cancel arrives long before it ends.
        prev = joinpath(dir, "prev")
        old = collect(Float32, 1:1000)
        Save(prev) do s
            add_tensor!(s, "w", old)
        end
        files_before = sort(readdir(prev))
        id_before = Reader(r -> storage_info(r).save_id, prev)
        s5 = Save(prev; overwrite=true, compression=:zstd, compression_level=19, io_threads=1)
        for k in 1:8
            add_tensor!(s5, "t$k", rand(Float32, 1024, 512))  # 2 MiB each
        end
        commit_async!(s5)
        @test cancel!(s5) === s5
        err = sp_error(() -> wait(s5))
        @test err isa ShardpointError
        @test err.code == SP.ECANCELED
        @test is_canceled(err)
        @test !s5.committed
        @test error_code(() -> wait(s5)) == SP.ECANCELED
        close(s5)
        @test sort(readdir(prev)) == files_before
        Reader(prev) do r
            @test storage_info(r).save_id == id_before
            @test read_tensor(r, "w") == old
            @test isempty(verify_each(r))
        end

        # One area for three saves, back to back: each commit_async! waits for the save still
        # using the area; close(save) and close(staging) wait for their commits; every checkpoint
        # holds its own step.
        saves = Save[]
        models = [fill(Float64(i), 1000) for i in 1:3]
        Staging(64 << 10) do shared
            for i in 1:3
                si = Save(joinpath(dir, "step-$i"))
                add_tensor!(si, "w", models[i])
                set_metadata!(si, "step", string(i))
                commit_async!(si, shared)
                if i > 1
                    @test isready(saves[i - 1])              # the area was free again
                end
                @test shared.user === si
                fill!(models[i], -1.0)
                push!(saves, si)
            end
            close(saves[1])                                  # without wait: close waits
            @test wait(saves[2]) === saves[2]
            close(saves[2])
        end                                                  # closing the area waits for saves[3]
        @test isready(saves[3])
        @test wait(saves[3]) === saves[3]
        close(saves[3])
        for i in 1:3
            Reader(joinpath(dir, "step-$i")) do r
                @test read_tensor(r, "w") == fill(Float64(i), 1000)
                @test user_metadata(r)["step"] == string(i)
            end
        end

        # The guards: no progress function, no communicator implemented in Julia (the library
        # would call them on its background thread). ArgumentError before the library is called;
        # the save can still be committed.
        guarded = joinpath(dir, "guarded")
        s6 = Save(guarded)
        add_tensor!(s6, "x", ones(10))
        report = (phase, done, total) -> nothing
        err = thrown_by(() -> commit_async!(s6; progress=report))
        @test err isa ArgumentError
        @test occursin("background thread", err.msg)
        @test_throws ArgumentError commit_async!(s6, staging; progress=report)
        @test !s6.async
        @test error_code(() -> wait(s6)) == SP.ESTATE        # nothing was started
        @test commit!(s6) === s6
        close(s6)
        @test Reader(r -> read_tensor(r, "x"), guarded) == ones(10)

        solo = SoloComm(0)
        jcomm = Comm(solo, 0, 1)
        s7 = Save(joinpath(dir, "julia-comm"); comm=jcomm)
        add_tensor!(s7, "x", ones(10))
        err = thrown_by(() -> commit_async!(s7, staging))
        @test err isa ArgumentError
        @test occursin("Comm(impl, rank, size)", err.msg)
        @test solo.calls == 0                                # no collective ran
        @test staging.user === nothing
        @test commit!(s7) === s7
        @test solo.calls > 0
        close(s7)
        close(jcomm)

        errs = run_local(2) do r, comm
            sr = Save(joinpath(dir, "ranks"); comm=comm)
            try
                add_tensor!(sr, "x", fill(Float32(r), 2); at=(2r+1:2r+2,), global_shape=(4,))
                thrown_by(() -> commit_async!(sr))
            finally
                close(sr)
            end
        end
        @test all(e -> e isa ArgumentError, errs)
        @test error_code(() -> Reader(joinpath(dir, "ranks"))) == SP.ENOTFOUND

        # The library's own single-process communicator runs no Julia code: allowed.
        single = Comm()
        s8 = Save(joinpath(dir, "single-comm"); comm=single)
        add_tensor!(s8, "x", [1, 2, 3])
        commit_async!(s8, staging)
        close(single)                                        # freed when the save is closed
        @test wait(s8) === s8
        close(s8)
        @test single.freed[]
        @test Reader(r -> read_tensor(r, "x"), joinpath(dir, "single-comm")) == [1, 2, 3]

        # A closed area is refused; the save can still commit.
        close(staging)
        s9 = Save(joinpath(dir, "closed-area"))
        add_tensor!(s9, "x", ones(3))
        @test_throws ArgumentError commit_async!(s9, staging)
        @test !s9.async
        commit!(s9)
        close(s9)
    end
end

@testset "lifetimes: borrowed memory, finalizers, close order" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        # The save alone references this array until commit.
        s = Save(ckpt)
        add_tensor!(s, "gc", collect(Float64, 1:10_000))
        add_bytes!(s, "gcb", collect(UInt8, 1:200))
        GC.gc(true)
        commit!(s)
        close(s)
        Reader(ckpt) do r
            @test read_tensor(r, "gc") == collect(Float64, 1:10_000)
            @test read_bytes(r, "gcb") == collect(UInt8, 1:200)
        end

        # A reader closed while a load uses it is freed when the load is closed.
        r = Reader(ckpt)
        ld = Load(r)
        close(r)
        @test !isopen(r)
        @test_throws ArgumentError entries(r)
        dest = zeros(Float64, 10_000)
        add_tensor!(ld, "gc", dest)
        execute!(ld)
        @test ld.executed
        @test dest == collect(Float64, 1:10_000)
        @test error_code(() -> execute!(ld)) == SP.ESTATE
        close(ld)
        @test r.freed[]

        # Handles left to the finalizers: an uncommitted save writes nothing.
        uncommitted = joinpath(dir, "uncommitted")
        let s2 = Save(uncommitted)
            add_tensor!(s2, "x", ones(3))
        end
        let r2 = Reader(ckpt), ld2 = Load(r2)
            add_tensor!(ld2, "gc", zeros(Float64, 10_000))
        end
        GC.gc(true)
        GC.gc(true)
        @test error_code(() -> Reader(uncommitted)) == SP.ENOTFOUND

        # A communicator closed while a save borrows it stays usable by that save.
        comm = Comm()
        s3 = Save(joinpath(dir, "with-comm"); comm=comm)
        close(comm)
        @test !isopen(comm)
        @test !comm.freed[]
        @test_throws ArgumentError Save(joinpath(dir, "x"); comm=comm)
        add_tensor!(s3, "x", ones(2))
        commit!(s3)
        close(s3)
        @test comm.freed[]
        @test Reader(r -> read_tensor(r, "x"), joinpath(dir, "with-comm")) == ones(2)
    end
end

@testset "communicators" begin
    mktempdir() do dir
        single = Comm()
        @test SP.rank(single) == 0
        @test SP.nranks(single) == 1
        Save(joinpath(dir, "single"); comm=single) do s
            add_tensor!(s, "x", [1, 2, 3])
        end
        close(single)

        solo = SoloComm(0)
        comm = Comm(solo, 0, 1)
        @test SP.rank(comm) == 0
        @test SP.nranks(comm) == 1
        Save(joinpath(dir, "solo"); comm=comm) do s
            add_tensor!(s, "x", [4, 5, 6])
        end
        @test solo.calls > 0      # collectives call the communicator even with one rank
        Reader(joinpath(dir, "solo")) do r
            Load(r; comm=comm) do ld
                y = zeros(Int, 3)
                add_tensor!(ld, "x", y)
                execute!(ld)
                @test y == [4, 5, 6]
            end
        end
        close(comm)
        @test error_code(() -> Comm(solo, 1, 1)) == SP.EINVAL     # rank outside 0:size-1

        # A callback that throws fails the collective with ECOMM on every rank, and the
        # exception's message is part of the error. Nothing is committed.
        failed = joinpath(dir, "failed")
        group = SP.LocalGroup(2)
        tasks = map(0:1) do r
            @async begin
                impl = r == 1 ? FailingRank(SP.LocalRank(group, r)) : SP.LocalRank(group, r)
                c = Comm(impl, r, 2)
                try
                    sp_error(() -> Save(failed; comm=c) do s
                        add_tensor!(s, "x", fill(Float32(r), 2); at=(2r+1:2r+2,), global_shape=(4,))
                    end)
                finally
                    close(c)
                end
            end
        end
        errs = fetch.(tasks)
        @test errs[2] isa ShardpointError
        @test errs[2].code == SP.ECOMM
        @test occursin("injected gather failure", errs[2].message)
        @test errs[1] isa ShardpointError
        @test errs[1].code in (SP.ECOMM, SP.ERANK)
        @test error_code(() -> Reader(failed)) == SP.ENOTFOUND
    end
end

@testset "3 ranks save, 2 ranks load resharded (local group)" begin
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        W = reshape(collect(Float32, 1:9*5), 9, 5)
        C = reshape(collect(Int64, 1:4*7), 4, 7)
        bias = collect(Float64, 1:7)
        results = run_local(3) do r, comm
            rows = part(9, r, 3)
            cols = part(7, r, 3)
            Save(ckpt; comm=comm) do s
                add_tensor!(s, "w", W[rows, :]; at=(rows, 1:5), global_shape=size(W))        # rows
                add_tensor!(s, "c", view(C, :, cols); at=(1:4, cols), global_shape=size(C))  # cols, in place
                add_tensor!(s, "bias", bias)                                                 # replicated
                r == 0 && add_bytes!(s, "blob", collect(UInt8, 0:99))                        # rank 0 only
                set_metadata!(s, "ranks", "3")
            end
            (SP.rank(comm), SP.nranks(comm))
        end
        @test results == [(0, 3), (1, 3), (2, 3)]

        Reader(ckpt) do r
            @test storage_info(r).world_size == 3
            @test sort(unique([f.rank for f in files(r)])) == [0, 1, 2]   # every rank wrote data
            ws = chunks(r, "w")
            @test length(ws) == 3
            @test sort([c.writer_rank for c in ws]) == [0, 1, 2]
            @test length(chunks(r, "c")) == 3
            @test length(chunks(r, "bias")) == 1                  # written once
            @test read_tensor(r, "w") == W
            @test read_tensor(r, "c") == C
            @test read_tensor(r, "bias") == bias
            @test read_bytes(r, "blob") == collect(UInt8, 0:99)
            @test user_metadata(r) == Dict("ranks" => "3")
            @test verify(r) === nothing
        end

        # Two ranks, each loading a half of the rows: 1:4 and 5:9 cross the saved 1:3, 4:6, 7:9.
        loaded = run_local(2) do r, comm
            rows = part(9, r, 2)
            w = zeros(Float32, length(rows), 5)
            c = zeros(Int64, 4, 7)
            b = zeros(Float64, 7)
            Reader(ckpt; comm=comm) do rd   # rank 0 reads the metadata for both
                Load(rd; comm=comm) do ld
                    add_tensor!(ld, "w", w; at=(rows, 1:5))
                    add_tensor!(ld, "c", c)
                    add_tensor!(ld, "bias", b)
                end
            end
            (rows, w, c, b)
        end
        @test [rows for (rows, _, _, _) in loaded] == [1:4, 5:9]
        for (rows, w, c, b) in loaded
            @test w == W[rows, :]
            @test c == C
            @test b == bias
        end

        # Every rank sees the same error.
        codes = run_local(3) do r, comm
            error_code(() -> Save(ckpt; comm=comm) do s
                add_tensor!(s, "w", ones(Float32, 1))
            end)
        end
        @test codes == fill(SP.EEXISTS, 3)

        # Damaged metadata found by rank 0 is every rank's error.
        meta = joinpath(ckpt, "shardpoint.meta")
        bytes = read(meta)
        bytes[41] ⊻= 0xff
        write(meta, bytes)
        codes = run_local(3) do r, comm
            error_code(() -> Reader(ckpt; comm=comm))
        end
        @test codes == fill(SP.ECHECKSUM, 3)
    end
end

@testset "local group: an error of every rank reaches every rank" begin
    # The coordinator finds a dtype conflict in the global plan and broadcasts it: the library
    # fails the commit on every rank. run_local aborts the group as soon as the first rank
    # throws; that must not fail the others' final broadcast, which has completed.
    mktempdir() do dir
        for bad in 0:3
            path = joinpath(dir, "bad$bad")
            codes = zeros(Int, 4)
            try
                run_local(4) do r, comm
                    T = r == bad ? Int32 : Float32     # the same element size, another dtype
                    try
                        Save(path; comm=comm) do s
                            add_tensor!(s, "x", fill(T(r), 2); at=(2r+1:2r+2,), global_shape=(8,))
                        end
                    catch err
                        codes[r+1] = err isa ShardpointError ? err.code : typemin(Int)
                        rethrow()
                    end
                end
            catch
            end
            @test codes == fill(SP.ECONFLICT, 4)
            @test error_code(() -> Reader(path)) == SP.ENOTFOUND
        end
    end

    # On the transport itself: rank 0 completes a broadcast and leaves (abort!) before rank 1's
    # task has run again; rank 1 still gets the data of the round that completed.
    for _ in 1:20
        g = SP.LocalGroup(2)
        buf = zeros(UInt8, 2)
        t = @async SP.bcast!(SP.LocalRank(g, 1), buf)
        SP.bcast!(SP.LocalRank(g, 0), UInt8[4, 2])
        SP.abort!(g, "rank 0 left")
        wait(t)
        @test buf == UInt8[4, 2]
    end
    # A round that the rank that left never joins fails instead of waiting forever.
    g = SP.LocalGroup(2)
    t = @async SP.bcast!(SP.LocalRank(g, 1), zeros(UInt8, 1))
    SP.abort!(g, "rank 0 left")
    @test_throws TaskFailedException wait(t)
end

@testset "checkpoint manager: retention, listing, deletion" begin
    mktempdir() do dir
        root = joinpath(dir, "run")
        m = CheckpointManager(root; keep_last=2)           # the root is created
        @test isopen(m) && isdir(root)
        @test latest_step(m) === nothing
        @test isempty(steps(m))
        @test step_path(m, 7) == joinpath(root, "step-7")
        @test step_path(m, 0) == joinpath(root, "step-0")    # a step is a label, not a position
        @test_throws ArgumentError step_path(m, -1)

        # keep_last keeps the newest committed steps; the do-block form applies retention.
        deleted = Int[]
        for step in (10, 20, 30, 40)
            append!(deleted, Save(m, step) do s
                add_tensor!(s, "w", fill(Float32(step), 4, 8))
                set_metadata!(s, "step", string(step))
            end)
        end
        @test deleted == [10, 20]
        @test [i.step for i in steps(m)] == [30, 40]
        @test latest_step(m) == 40
        @test !ispath(step_path(m, 10)) && !ispath(step_path(m, 20))
        Reader(step_path(m, 40)) do r
            @test read_tensor(r, "w") == fill(40.0f0, 4, 8)
            @test user_metadata(r, "step") == "40"
        end

        # Save(m, step) is an ordinary Save: commit it, then apply retention.
        s = Save(m, 50)
        @test s isa Save
        add_tensor!(s, "w", fill(50.0f0, 4, 8))
        commit!(s)
        close(s)
        @test apply_retention!(m; dry_run=true) == [30]
        @test [i.step for i in steps(m)] == [30, 40, 50]     # a dry run deletes nothing
        @test apply_retention!(m) == [30]
        @test [i.step for i in steps(m)] == [40, 50]

        # A committed step is refused unless overwritten.
        @test error_code(() -> Save(m, 50) do s
            add_tensor!(s, "w", zeros(Float32, 4, 8))
        end) == SP.EEXISTS
        none = Save(m, 50; overwrite=true, retention=false) do s
            add_tensor!(s, "w", fill(-50.0f0, 4, 8))
        end
        @test none == Int[]                                  # retention=false: nothing deleted
        @test Reader(r -> read_tensor(r, "w"), step_path(m, 50)) == fill(-50.0f0, 4, 8)

        info = steps(m)[end]
        @test info isa StepInfo
        @test info.step == 50 && info.state === :committed && !info.busy
        @test info.path == step_path(m, 50)
        @test info.message == "" && info.metric === nothing  # no best_metric asked for
        listed = readdir(info.path)
        @test info.file_count == length(listed)
        @test info.bytes == sum(filesize(joinpath(info.path, f)) for f in listed)
        @test info.disk_bytes > 0 && info.time_unix_ns > 0

        # States: a directory without metadata is partial, corrupted metadata is damaged.
        mkdir(joinpath(root, "step-5"))
        meta = joinpath(step_path(m, 40), "shardpoint.meta")
        raw = read(meta)
        raw[end] ⊻= 0xff
        write(meta, raw)
        @test Dict(i.step => i.state for i in steps(m)) == Dict(5 => :partial, 40 => :damaged, 50 => :committed)
        damaged = only(filter(i -> i.step == 40, steps(m)))
        @test !isempty(damaged.message)
        @test latest_step(m) == 50                           # only committed steps count

        # Explicit deletions remove a step in any state.
        @test delete_step!(m, 40) === m
        @test error_code(() -> delete_step!(m, 40)) == SP.ENOTFOUND
        delete_step!(m, 5)
        @test [i.step for i in steps(m)] == [50]
        @test_throws ArgumentError delete_step!(m, -3)

        # Garbage of the whole root: killed deletions and killed saves' debris.
        debris = "data-" * "ab"^16 * "-r00000.bin"
        write(joinpath(step_path(m, 50), debris), zeros(UInt8, 100))
        mkdir(joinpath(root, ".deleting-step-9-0123456789abcdef"))
        garbage = collect_garbage(m; dry_run=true)
        @test sort(garbage.files) == [".deleting-step-9-0123456789abcdef/" => 0, "step-50/$debris" => 100]
        @test garbage.bytes == 100
        @test isfile(joinpath(step_path(m, 50), debris))
        @test collect_garbage(m).bytes == 100
        @test readdir(root) == ["step-50"]
        @test Reader(r -> read_tensor(r, "w"), step_path(m, 50)) == fill(-50.0f0, 4, 8)

        # Any checkpoint directory is deleted as crash-safely as a step.
        plain = joinpath(dir, "plain")
        Save(s -> add_tensor!(s, "x", ones(3)), plain)
        @test delete_checkpoint(plain) === nothing
        @test !ispath(plain)
        @test error_code(() -> delete_checkpoint(plain)) == SP.ENOTFOUND
        @test error_code(() -> delete_checkpoint(root)) == SP.ENOTFOUND   # the root is no checkpoint

        # Saves made from a manager stay valid after it is closed.
        s = Save(m, 60)
        add_tensor!(s, "w", fill(60.0f0, 4, 8))
        close(m)
        @test !isopen(m)
        commit!(s)
        close(s)
        @test Reader(r -> read_tensor(r, "w"), joinpath(root, "step-60")) == fill(60.0f0, 4, 8)
        @test_throws ArgumentError steps(m)
        @test_throws ArgumentError Save(m, 70)
        close(m)                                             # idempotent
        @test occursin("closed", sprint(show, m))

        # The do-block form closes; it returns what the block returns.
        @test CheckpointManager(m -> latest_step(m), root) == 60
    end
end

@testset "checkpoint manager: keep_every, keep_best, options" begin
    mktempdir() do dir
        CheckpointManager(joinpath(dir, "every"); keep_last=2, keep_every=4) do m
            deleted = Int[]
            for step in 1:10
                append!(deleted, Save(s -> add_tensor!(s, "x", fill(Float64(step), 3)), m, step))
            end
            @test deleted == [1, 2, 3, 5, 6, 7]
            @test [i.step for i in steps(m)] == [4, 8, 9, 10]
        end

        losses = [1 => "0.9", 2 => "0.8", 3 => "0.1", 4 => nothing, 5 => "0.2", 6 => "0.5"]  # 4: never best
        for (mode, kept) in ((:min, [3, 5, 6]), (:max, [1, 2, 6]))
            CheckpointManager(joinpath(dir, "best-$mode"); keep_best=2, best_metric="loss", best_mode=mode) do m
                for (step, loss) in losses
                    Save(m, step; retention=false) do s
                        add_tensor!(s, "x", zeros(2))
                        loss === nothing || set_metadata!(s, "loss", loss)
                    end
                end
                gone = sort(setdiff(first.(losses), kept))
                @test apply_retention!(m; dry_run=true) == gone
                @test length(steps(m)) == 6
                @test apply_retention!(m) == gone
                @test [i.step for i in steps(m)] == kept
                @test [i.metric for i in steps(m)] == [Dict(losses)[k] for k in kept]
            end
        end

        @test error_code(() -> CheckpointManager(joinpath(dir, "a"); keep_best=1)) == SP.EINVAL  # no best_metric
        @test_throws ArgumentError CheckpointManager(joinpath(dir, "a"); keep_last=-1)
        @test_throws ArgumentError CheckpointManager(joinpath(dir, "a"); best_mode=:median)
        @test error_code(() -> CheckpointManager(joinpath(dir, "missing"); create=false)) == SP.ENOTFOUND
        @test !ispath(joinpath(dir, "missing"))

        # A reader open on a deleted step keeps reading it.
        CheckpointManager(joinpath(dir, "reading"); keep_last=1) do m
            big = collect(Float64, 1:(1 << 18))
            Save(s -> add_tensor!(s, "big", big), m, 1)
            Reader(step_path(m, 1)) do r
                @test Save(s -> add_tensor!(s, "big", 2 .* big), m, 2) == [1]
                @test !ispath(step_path(m, 1))
                @test read_tensor(r, "big") == big
            end
            @test latest_step(m) == 2
        end

        # With a communicator the saves are collective and only rank 0 deletes.
        ranked = joinpath(dir, "ranked")
        results = run_local(2) do r, comm
            CheckpointManager(ranked; comm=comm, keep_last=1) do m
                map(1:2) do step
                    Save(m, step) do s
                        add_tensor!(s, "x", fill(Float32(step), 2); at=(2r+1:2r+2,), global_shape=(4,))
                    end
                end
            end
        end
        @test results[1] == [Int[], [1]]                     # rank 0
        @test results[2] == [Int[], Int[]]                   # rank 1: retention does nothing
        CheckpointManager(ranked) do m
            @test [i.step for i in steps(m)] == [2]
            @test Reader(r -> read_tensor(r, "x"), step_path(m, 2)) == fill(2.0f0, 4)
        end
    end
end

@testset "conversion to and from safetensors" begin
    @test SP.phase_symbol(SP.L.SHARDPOINT_PROGRESS_CONVERT) === :convert
    @test SP.parse_size("5GB") == 5_000_000_000
    @test SP.parse_size("64KiB") == 65536
    @test SP.parse_size("4096") == 4096
    @test error_code(() -> SP.parse_size("5 parsecs")) == SP.EINVAL
    mktempdir() do dir
        ckpt = joinpath(dir, "ckpt")
        a = reshape(collect(Float32, 1:48), 6, 8)
        b = collect(Int64, -5:5)
        c = reshape(collect(Float64, 1:60) ./ 7, 3, 4, 5)
        h = Float16[1.5, -2.25, 0.0]
        Save(ckpt) do s
            add_tensor!(s, "a", a)
            add_tensor!(s, "b", b)
            add_tensor!(s, "c", c)
            add_tensor!(s, "h", h)
            set_metadata!(s, "format", "pt")
            set_metadata!(s, "step", "12")
        end
        nbytes = sizeof(a) + sizeof(b) + sizeof(c) + sizeof(h)   # 766

        # One file, with the user metadata as __metadata__.
        file = joinpath(dir, "model.safetensors")
        reports, note = progress_recorder()
        @test convert_to_safetensors(ckpt, file; progress=note) === nothing
        @test isfile(file)
        @test well_formed(reports, :convert)
        @test reports[end][3] == nbytes
        header = open(file) do io
            n = ltoh(read(io, UInt64))
            String(read(io, n))
        end
        @test occursin(r"\"__metadata__\"\s*:\s*\{", header)
        @test occursin(r"\"step\"\s*:\s*\"12\"", header)
        @test occursin(r"\"a\"\s*:\s*\{\s*\"dtype\"\s*:\s*\"F32\"\s*,\s*\"shape\"\s*:\s*\[\s*6\s*,\s*8\s*\]", header)

        # And back: values equal, metadata kept.
        back = joinpath(dir, "back")
        reports, note = progress_recorder()
        convert_from_safetensors(file, back; progress=note)
        @test well_formed(reports, :convert)
        Reader(back) do r
            @test read_tensor(r, "a") == a
            @test read_tensor(r, "b") == b
            @test read_tensor(r, "c") == c
            @test read_tensor(r, "h") == h
            @test [e.fqn for e in entries(r)] == ["a", "b", "c", "h"]
            md = user_metadata(r)
            @test md["format"] == "pt" && md["step"] == "12"
        end

        # Existing outputs are refused unless overwritten.
        @test error_code(() -> convert_to_safetensors(ckpt, file)) == SP.EEXISTS
        convert_to_safetensors(ckpt, file; overwrite=true, durable=false)
        @test error_code(() -> convert_from_safetensors(file, back)) == SP.EEXISTS
        convert_from_safetensors(file, back; overwrite=true, compression=:zstd, shuffle=true)
        @test Reader(r -> read_tensor(r, "c"), back) == c

        # A sharded model directory: a new file whenever the next tensor would pass 200 bytes.
        hf = joinpath(dir, "hf")
        convert_to_safetensors(ckpt, hf; max_shard_size="200B", buffer_size=4096)
        shards = filter(f -> endswith(f, ".safetensors"), readdir(hf))
        @test shards == ["model-0000$k-of-00004.safetensors" for k in 1:4]
        index = read(joinpath(hf, "model.safetensors.index.json"), String)
        @test occursin(r"\"total_size\"\s*:\s*766\b", index)
        @test occursin(r"\"c\"\s*:\s*\"model-00003-of-00004.safetensors\"", index)
        for input in (hf, joinpath(hf, "model.safetensors.index.json"))
            sharded = joinpath(dir, "sharded")
            convert_from_safetensors(input, sharded; overwrite=true, buffer_size="4KiB")
            Reader(sharded) do r
                @test read_tensor(r, "a") == a && read_tensor(r, "b") == b
                @test read_tensor(r, "c") == c && read_tensor(r, "h") == h
                @test user_metadata(r, "step") == "12"
            end
        end
        @test error_code(() -> convert_to_safetensors(ckpt, hf; max_shard_size=200)) == SP.EEXISTS
        convert_to_safetensors(ckpt, hf; max_shard_size=10_000, overwrite=true)
        @test filter(f -> endswith(f, ".safetensors"), readdir(hf)) == ["model-00001-of-00001.safetensors"]

        # A tensor saved in chunks (by several ranks) is written whole.
        chunked = joinpath(dir, "chunked")
        W = reshape(collect(Float32, 1:90), 9, 10)
        run_local(3) do r, comm
            rows = (3r+1):(3r+3)
            Save(chunked; comm=comm) do s
                add_tensor!(s, "w", W[rows, :]; at=(rows, 1:10), global_shape=size(W))
            end
        end
        convert_to_safetensors(chunked, joinpath(dir, "w.safetensors"))
        convert_from_safetensors(joinpath(dir, "w.safetensors"), joinpath(dir, "w"))
        Reader(joinpath(dir, "w")) do r
            @test read_tensor(r, "w") == W
            @test length(chunks(r, "w")) == 1
        end

        # A canceled conversion leaves nothing behind.
        canceled = joinpath(dir, "canceled.safetensors")
        @test error_code(() -> convert_to_safetensors(ckpt, canceled; progress=(p, d, t) -> false)) == SP.ECANCELED
        @test !ispath(canceled)
        @test thrown_by(() -> convert_to_safetensors(ckpt, joinpath(dir, "hf2"); max_shard_size=200,
                                                     progress=(p, d, t) -> throw(ProgressStop()))) isa ProgressStop
        @test !ispath(joinpath(dir, "hf2"))
        @test error_code(() -> convert_from_safetensors(file, joinpath(dir, "new"); progress=(p, d, t) -> d < t)) == SP.ECANCELED
        @test !ispath(joinpath(dir, "new"))
        @test thrown_by(() -> convert_from_safetensors(file, joinpath(dir, "new");
                                                       progress=(p, d, t) -> throw(ProgressStop()))) isa ProgressStop
        @test !ispath(joinpath(dir, "new"))

        # A bytes entry is refused unless skip_bytes leaves it out.
        blobs = joinpath(dir, "blobs")
        Save(blobs) do s
            add_tensor!(s, "w", collect(1.0:3.0))
            add_bytes!(s, "rng", "state")
        end
        out = joinpath(dir, "blobs.safetensors")
        err = sp_error(() -> convert_to_safetensors(blobs, out))
        @test err isa ShardpointError && err.code == SP.EKIND
        @test occursin("rng", err.message)
        @test !ispath(out)
        convert_to_safetensors(blobs, out; skip_bytes=true)
        convert_from_safetensors(out, joinpath(dir, "no-blobs"))
        Reader(joinpath(dir, "no-blobs")) do r
            @test [e.fqn for e in entries(r)] == ["w"]
            @test read_tensor(r, "w") == collect(1.0:3.0)
        end

        # complex128 has no safetensors dtype; a malformed input is refused, nothing written.
        Save(s -> add_tensor!(s, "z", ComplexF64[1 + 2im]), joinpath(dir, "complex"))
        @test error_code(() -> convert_to_safetensors(joinpath(dir, "complex"), joinpath(dir, "z.safetensors"))) == SP.EDTYPE
        @test !ispath(joinpath(dir, "z.safetensors"))
        truncated = joinpath(dir, "truncated.safetensors")
        data = read(file)
        write(truncated, data[1:(end - 10)])
        @test error_code(() -> convert_from_safetensors(truncated, joinpath(dir, "t"))) == SP.EFORMAT
        @test !ispath(joinpath(dir, "t"))
        @test error_code(() -> convert_from_safetensors(joinpath(dir, "nothing.safetensors"), joinpath(dir, "t"))) == SP.ENOTFOUND

        # Size keywords: positive integers or size texts.
        x = joinpath(dir, "x")
        @test_throws ArgumentError convert_to_safetensors(ckpt, x; max_shard_size=0)
        @test_throws ArgumentError convert_to_safetensors(ckpt, x; max_shard_size=1.5)
        @test_throws ArgumentError convert_to_safetensors(ckpt, x; max_shard_size=true)
        @test_throws ArgumentError convert_to_safetensors(ckpt, x; buffer_size=-1)
        @test error_code(() -> convert_to_safetensors(ckpt, x; max_shard_size="5 parsecs")) == SP.EINVAL
        @test error_code(() -> convert_to_safetensors(ckpt, x; buffer_size=100)) == SP.EINVAL   # below 4096
        @test error_code(() -> convert_to_safetensors(joinpath(dir, "nowhere"), x)) == SP.ENOTFOUND
        @test !ispath(x)
    end
end

@testset "golden model" begin
    model_path = golden_model_path()
    if !isfile(model_path)
        @warn "golden model not found at $model_path; set SHARDPOINT_GOLDEN_MODEL"
        @test_skip isfile(model_path)
    else
        # Written by Julia with 3 ranks, read back by the golden reader.
        mktempdir() do dir
            ckpt = joinpath(dir, "golden")
            golden_write(ckpt, 3)
            failures = golden_check(ckpt)
            foreach(println, failures)
            @test isempty(failures)
            Reader(ckpt) do r
                @test storage_info(r).world_size == 3
            end
        end
        # Checkpoints written by other languages, and the committed ones.
        dirs = String[]
        for d in split(get(ENV, "SHARDPOINT_GOLDEN_DIR", ""), ':'; keepempty=false)
            push!(dirs, String(d))
        end
        golden_root = dirname(model_path)
        for d in readdir(golden_root; join=true)
            isdir(d) && occursin(r"^v[0-9]-", basename(d)) && push!(dirs, d)
        end
        for d in dirs
            failures = golden_check(d)
            foreach(println, failures)
            @test isempty(failures)
        end
    end
end

end # @testset "Shardpoint"
