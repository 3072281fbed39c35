// The HTTP API client: the same /api/v1 the CLI uses, errors kept exactly as the API words them.

import type { components } from "./api-types";

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

// The API's bodies, as the server's OpenAPI document describes them (src/api-types.ts is generated from
// it by api-types.sh; check.sh fails when it is stale): never written by hand here.
export type Schemas = components["schemas"];
export type FunctionInfo = Schemas["ListedFunction"]; // `runtime` with `functions?runtime=true`
export type RuntimeSummary = Schemas["RuntimeSummary"];
export type Card = Schemas["Card"];
export type CanaryArm = Schemas["CanaryArm"];
export type CanaryStatus = Schemas["CanaryStatus"];
export type Rollout = Schemas["Rollout"];
export type HistoryEntry = Schemas["HistoryEntry"];
export type FileDiff = Schemas["FileDiff"];
export type Gateway = Schemas["Gateway"];
/** What a function's page needs of its gateway (before the list of gateways has loaded, a stand-in). */
export type GatewaySettings = Pick<Gateway, "id" | "allow_dev_to_prod" | "history_limit">;
export type Member = Schemas["Member"];
export type Token = Schemas["Token"];
export type Stats = Schemas["Stats"];
export type VersionSeries = Schemas["VersionSeries"];
export type Configuration = Schemas["Configuration"];
export type ConfigVersion = Schemas["ConfigVersion"];
export type Invocation = Schemas["Invocation"];
export type Invocations = Schemas["Invocations"];
