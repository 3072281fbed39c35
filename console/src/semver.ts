// Semantic versions as the server orders them (semver.org precedence), and the next one to suggest.

export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  pre: (string | number)[];
}

const RE = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-.]+)?$/;

export function parse(text: string | null | undefined): SemVer | null {
  const m = RE.exec((text ?? "").trim());
  if (!m) return null;
  const pre = m[4] ? m[4].split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p)) : [];
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), pre };
}

export function compare(a: SemVer, b: SemVer): number {
  for (const key of ["major", "minor", "patch"] as const) if (a[key] !== b[key]) return a[key] < b[key] ? -1 : 1;
  if (!a.pre.length || !b.pre.length) return a.pre.length === b.pre.length ? 0 : a.pre.length ? -1 : 1;
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i];
    const y = b.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    if (typeof x === "number" && typeof y === "number") return x < y ? -1 : 1;
    if (typeof x === "number") return -1;
    if (typeof y === "number") return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

export function format(v: SemVer): string {
  return `${v.major}.${v.minor}.${v.patch}${v.pre.length ? `-${v.pre.join(".")}` : ""}`;
}

export function isGreater(a: string, b: string | null | undefined): boolean {
  const x = parse(a);
  const y = parse(b);
  if (!x) return false;
  return !y || compare(x, y) > 0;
}

function bumpPre(v: SemVer): SemVer {
  const pre = [...v.pre];
  const last = pre.length - 1;
  if (typeof pre[last] === "number") pre[last] = (pre[last] as number) + 1;
  else pre.push(1);
  return { ...v, pre };
}

const release = (v: SemVer): SemVer => ({ ...v, pre: [] });
const nextPatch = (v: SemVer): SemVer => ({ ...v, patch: v.pre.length ? v.patch : v.patch + 1, pre: [] });

/** The semver to suggest for a release of `source` into `target` whose current semver is `current`. */
export function suggest(source: string | null, target: string, current: string | null): string {
  const src = parse(source);
  const cur = parse(current);
  let candidate: SemVer;
  if (target === "prod") {
    candidate = src && src.major > 0 ? release(src) : { major: 1, minor: 0, patch: 0, pre: [] };
    if (cur && compare(candidate, cur) <= 0) candidate = nextPatch(cur);
  } else if (target === "staging") {
    candidate = src && src.major > 0 ? { ...release(src), pre: ["rc", 1] } : { major: 1, minor: 0, patch: 0, pre: ["rc", 1] };
    if (cur && compare(candidate, cur) <= 0) {
      candidate = cur.pre.length ? bumpPre(cur) : { ...cur, patch: cur.patch + 1, pre: ["rc", 1] };
    }
  } else {
    candidate = cur ? (cur.pre.length ? bumpPre(cur) : nextPatch(cur)) : src ? nextPatch(src) : { major: 0, minor: 1, patch: 0, pre: [] };
  }
  return format(candidate);
}
