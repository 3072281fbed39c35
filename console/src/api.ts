// The HTTP API client: the same /api/v1 the CLI uses, errors kept exactly as the API words them.

const TOKEN_KEY = "fnstage.token";

export interface Problem {
  file: string;
  line: number | null;
  col: number | null;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
    readonly details: unknown = undefined,
  ) {
    super(message);
  }
}

let onUnauthorized: (error: ApiError) => void = () => {};

export function setUnauthorizedHandler(handler: (error: ApiError) => void): void {
  onUnauthorized = handler;
}

export function getToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

export async function request<T = any>(method: string, path: string, body?: unknown, token = getToken()): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path.startsWith("/") ? path : `/api/v1/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network", `the fnstage API did not answer (${(err as Error).message})`);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const e = data?.error;
    const error = e
      ? new ApiError(response.status, e.code ?? "error", e.message ?? response.statusText, e.field ?? null, e.details)
      : new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return data as T;
}

export const api = {
  get: <T = any>(path: string) => request<T>("GET", path),
  post: <T = any>(path: string, body: unknown) => request<T>("POST", path, body),
  put: <T = any>(path: string, body: unknown) => request<T>("PUT", path, body),
  patch: <T = any>(path: string, body: unknown) => request<T>("PATCH", path, body),
  del: <T = any>(path: string) => request<T>("DELETE", path),
};

/** `user/me` -> `user/me` with each segment escaped, slashes kept. */
export function pathOf(base: string): string {
  return base.split("/").map(encodeURIComponent).join("/");
}

export function gw(gateway: string): string {
  return `gateways/${encodeURIComponent(gateway)}`;
}

export interface FunctionInfo {
  gateway: string;
  name: string;
  env: string;
  base: string;
  version: number;
  semver: string;
  entrypoint: string;
  files?: Record<string, string>;
  updated_at: string;
  updated_by: string;
  history_id: number | null;
  runtime?: RuntimeSummary; // with `functions?runtime=true`: where the current version is live
}

/** A rollout's counts without the per-runtime list (the function list's `runtime`). */
export interface RuntimeSummary {
  live: number;
  failed: number; // runtimes that refused to load the version
  pending: number;
  silent: number;
  active: number;
  requests: number;
  errors: number; // requests the live version failed since it went live
  summary: string;
}

export interface Card extends FunctionInfo {
  state: string;
  note: string | null;
  kind: string | null;
  deployed_by: string;
  deployed_at: string;
  runtime: Rollout;
  canary?: CanaryStatus | null; // a running canary, or the decision that made the current version
}

export interface CanaryArm {
  version: number;
  semver: string;
  requests: number;
  errors: number;
  p95_ms: number | null;
}

export interface CanaryStatus {
  name: string;
  state: "running" | "completed" | "rolled_back" | "aborted";
  share: number;
  steps: number[];
  time_left_s: number;
  stable: CanaryArm;
  canary: CanaryArm;
  reason: string | null;
  decided_by: string | null;
}

export interface Rollout extends RuntimeSummary {
  version: number;
  done: boolean;
  latency_ms: number | null;
  runtimes: { state: string; error: string | null; last_error: string | null }[];
}

export interface HistoryEntry {
  id: number;
  name: string;
  env: string;
  base: string;
  kind: string;
  version: number;
  semver: string;
  changelog: string | null;
  actor: string;
  created_at: string;
  source_env: string | null;
  source_version: number | null;
  lock_hash?: string | null; // the dependency lock this version runs with (None: no dependencies)
  url?: string | null; // the version's own URL (issue 14), when the control plane knows the runtime's
}

export interface FileDiff {
  path: string;
  status: "added" | "removed" | "modified" | "unchanged";
  a: string | null;
  b: string | null;
}

export interface Gateway {
  id: string;
  allow_dev_to_prod: boolean;
  history_limit: number;
}
