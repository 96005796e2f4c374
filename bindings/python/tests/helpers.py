"""Helpers shared by the tests."""

import shardpoint as sp


def run_ranks(world, fn, **kwargs):
    """fn(rank, comm) on `world` threads joined by a LocalGroup; a hang becomes a CommError."""
    return sp.LocalGroup(world, timeout=60).run(fn, **kwargs)


def part(n, rank, world):
    return rank * n // world, (rank + 1) * n // world


def chunk_file_bytes(directory, chunk):
    with open(directory / chunk.file, "rb") as f:
        f.seek(chunk.file_offset)
        return f.read(chunk.stored_length)


def flip_byte(directory, chunk, at=0):
    """Corrupts one stored byte of `chunk` in its data file."""
    path = directory / chunk.file
    with open(path, "r+b") as f:
        f.seek(chunk.file_offset + at)
        byte = f.read(1)
        f.seek(chunk.file_offset + at)
        f.write(bytes([byte[0] ^ 0xFF]))
