/**
 * What this binary is: the version (package.json, bundled at build time), the git commit and the
 * target it was compiled for (set by the build with `bun build --define`, see the Makefile and
 * packaging/build.ts), and the Bun runtime inside it.
 */
import pkg from "../package.json" with { type: "json" };

// Replaced by string literals at build time; undeclared (typeof → "undefined") when run from source.
declare const FEATHERLB_COMMIT: string;
declare const FEATHERLB_TARGET: string;

export const VERSION: string = pkg.version;

/** The git commit (12 hex digits, "-dirty" when the tree had changes), or "unknown" outside a build. */
export const COMMIT: string = typeof FEATHERLB_COMMIT === "string" && FEATHERLB_COMMIT !== "" ? FEATHERLB_COMMIT : "unknown";

/** The release target, named as the tarballs are: linux-x64, linux-x64-baseline, linux-arm64. */
export const TARGET: string = typeof FEATHERLB_TARGET === "string" && FEATHERLB_TARGET !== "" ? FEATHERLB_TARGET : `${process.platform}-${process.arch}`;

/** `featherlb --version`: one line, the version first so `cut -d' ' -f2` keeps working. */
export function versionLine(): string {
  return `featherlb ${VERSION} (commit ${COMMIT}, bun ${Bun.version}, ${TARGET})`;
}
