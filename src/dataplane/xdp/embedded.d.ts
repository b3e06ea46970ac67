// Files embedded in the compiled binary with `import path from "…" with { type: "file" }` (a path at run time).
declare module "*.bpf.o" {
  const path: string;
  export default path;
}
declare module "*.so.1" {
  const path: string;
  export default path;
}
