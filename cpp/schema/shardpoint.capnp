# The metadata of a shardpoint checkpoint, format major version 1.
# This schema and FORMAT.md are the one source of truth for the layout. Field numbers are
# append-only: never renumber, never reuse, never change a field's type.
@0xafe8d73e09094d10;

$import "/capnp/c++.capnp".namespace("shardpoint::schema");

enum DType {
  bool @0;
  u8 @1;
  i8 @2;
  i16 @3;
  i32 @4;
  i64 @5;
  u16 @6;
  u32 @7;
  u64 @8;
  f16 @9;
  bf16 @10;
  f32 @11;
  f64 @12;
  complex64 @13;
  complex128 @14;
  f8E4m3fn @15;
  f8E5m2 @16;
}

enum Transform {
  none @0;      # stored bytes are the raw bytes
  deflate @1;   # stored bytes are a zlib stream (RFC 1950) of the raw bytes
  zlibBlocks @2;  # format 2: each block of blockSize raw bytes compressed alone, zlib (RFC 1950)
  zstdBlocks @3;  # format 2: the same with one zstd frame (RFC 8878) per block
}

struct Checkpoint {
  storage @0 :StorageMeta;
  files @1 :List(DataFile);
  entries @2 :List(Entry);        # sorted by fqn, byte order, no duplicates
  userMetadata @3 :List(KeyValue);
  frameworkMetadata @4 :List(KeyValue);  # format 1.1: what a framework needs to rebuild its own
                                         # metadata (e.g. "torch.dcp": JSON); readers may ignore it
}

struct StorageMeta {
  checkpointId @0 :Text;
  saveId @1 :Text;                # 32 lowercase hex digits, unique per save
  worldSize @2 :UInt32;
  libraryVersion @3 :Text;
  createdUnixNs @4 :Int64;
  alignment @5 :UInt32;           # extent alignment the writer used (a power of two)
  blockSize @6 :UInt32;           # bytes covered by one block CRC (a power of two)
}

struct DataFile {
  name @0 :Text;                  # a plain file name inside the checkpoint directory
  size @1 :UInt64;                # the file's size in bytes when it was committed
  rank @2 :UInt32;                # the rank that wrote it
}

struct Entry {
  fqn @0 :Text;
  union {
    tensor @1 :Tensor;
    bytes @2 :Extent;
  }
}

struct Tensor {
  dtype @0 :DType;
  shape @1 :List(UInt64);
  chunks @2 :List(Chunk);         # pairwise disjoint boxes inside shape
}

struct Chunk {
  offsets @0 :List(UInt64);       # one per dimension
  sizes @1 :List(UInt64);         # one per dimension
  extent @2 :Extent;              # the chunk's elements in C order, little-endian
}

struct Extent {
  file @0 :UInt32;                # index into Checkpoint.files
  offset @1 :UInt64;              # byte offset of the stored bytes in that file
  storedLength @2 :UInt64;        # bytes in the file
  rawLength @3 :UInt64;           # bytes after undoing the transform
  crc32 @4 :UInt32;               # CRC-32 (zlib) of the stored bytes
  transform @5 :Transform;
  blockCrc32 @6 :List(UInt32);    # transform none: CRC-32 of each blockSize piece of the stored
                                  # bytes (the last one may be shorter); empty for deflate;
                                  # zlibBlocks, zstdBlocks: CRC-32 of each block's stored bytes
  writerRank @7 :UInt32;
  blockStoredLength @8 :List(UInt32);  # zlibBlocks, zstdBlocks: stored bytes of each block, in
                                       # order, back to back; equal to the block's raw length
                                       # when the block is stored uncompressed
  shuffleWidth @9 :UInt32;        # zlibBlocks, zstdBlocks: 0, or the dtype's size when each
                                  # compressed block was byte-shuffled before compressing
}

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

# --- Messages of the storage-layer phases (FORMAT.md section 7) -------------------------------
# The ranks of one save exchange these through the host framework's own collectives (or
# shardpoint's communicator). They are never stored in a checkpoint.

enum EntryKind {
  tensor @0;
  bytes @1;
}

# A WriteItem without its data: what a rank offers to save.
struct PlannedItem {
  fqn @0 :Text;
  kind @1 :EntryKind;
  dtype @2 :DType;                # bytes entries: u8
  shape @3 :List(UInt64);         # the global shape; bytes entries: [length]
  offsets @4 :List(UInt64);       # the chunk's box; bytes entries: [0]
  sizes @5 :List(UInt64);         # bytes entries: [length]
  lengthUnknown @6 :Bool;         # bytes planned before their length is known: shape, offsets,
                                  # sizes [0], [0], [0]; such offers of one name are written once
}

# A rank's local plan (items, no decision yet) or its final plan (the coordinator's decision).
struct SavePlanMessage {
  rank @0 :UInt32;
  items @1 :List(PlannedItem);    # local plan: everything the rank offers; final plan: empty
  final @2 :Bool;                 # false: a local plan; true: a final plan
  saveId @3 :Text;                # final plan: the save's id (32 lowercase hex digits)
  fileName @4 :Text;              # final plan: the data file this rank writes
  writes @5 :List(UInt32);        # final plan: indices into the rank's local plan items to write
}

# What one rank wrote: returned by the write phase, gathered for the finish phase.
struct WriteResultsMessage {
  rank @0 :UInt32;
  saveId @1 :Text;
  fileName @2 :Text;
  fileSize @3 :UInt64;            # the data file's size after writing
  results @4 :List(WriteResultEntry);
}

struct WriteResultEntry {
  item @0 :PlannedItem;
  extent @1 :Extent;              # `file` is ignored: the extent is in the message's file
}
