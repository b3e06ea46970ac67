/**
 * libbpf's option structs (bpf/bpf.h), as Struct descriptions: libbpf.ts encodes them, no offsets are
 * written by hand. Pure TypeScript, so the layout test reads them without loading libbpf.
 *
 * Their layout is libbpf's, not our BPF object's, so it is not in our BTF. test/xdp/layout.test.ts
 * checks them instead against the headers of the libbpf we embed (/usr/include/bpf/bpf.h from
 * libbpf-dev, the same Debian package version as build/lib/libbpf.so.1, both installed by
 * bpf/install-deps.sh): it generates a C probe from these descriptions, compiles it with clang for this
 * host and runs it; the probe prints sizeof, and each described field's offsetof, size and whether its
 * C type is the one described (__builtin_types_compatible_p, so `size_t` is not `__u64`). At run time
 * libbpf also validates `sz`: larger than it knows, the extra bytes must be zero; smaller, it reads
 * only `sz` bytes.
 */
import { Struct, int, pointer, sizeT, u32, u64 } from "./struct.ts";

/** struct bpf_map_batch_opts (bpf/bpf.h). */
export const BPF_MAP_BATCH_OPTS = new Struct("bpf_map_batch_opts", { sz: sizeT, elem_flags: u64, flags: u64 });

/** struct bpf_test_run_opts (bpf/bpf.h), every field. */
export const BPF_TEST_RUN_OPTS = new Struct("bpf_test_run_opts", {
  sz: sizeT,
  data_in: pointer,
  data_out: pointer,
  data_size_in: u32,
  data_size_out: u32,
  ctx_in: pointer,
  ctx_out: pointer,
  ctx_size_in: u32,
  ctx_size_out: u32,
  retval: u32,
  repeat: int,
  duration: u32,
  flags: u32,
  cpu: u32,
  batch_size: u32,
});

/**
 * struct bpf_link_create_opts (bpf/bpf.h): only `sz` and `flags` are described (and set); the rest
 * (iter_info, target_btf_id, a union of per-attach-type fields) stays zero, up to libbpf's sizeof.
 */
export const BPF_LINK_CREATE_OPTS = new Struct("bpf_link_create_opts", { sz: sizeT, flags: u32 }, { sizeof: 64 });

/** libbpf's option structs, for the layout test. */
export const LIBBPF_STRUCTS = [BPF_MAP_BATCH_OPTS, BPF_TEST_RUN_OPTS, BPF_LINK_CREATE_OPTS];
