// A gateway's function list: one row per function with dev, staging and prod side by side, searched and
// filtered by name, environment and state; a function whose live version fails its requests (or that a
// runtime refused to load) is marked in words, not by colour alone.
// Built for 1,000 functions and more: the rows are built once, a keystroke only toggles `hidden`, and the
// browser skips the layout of rows off screen (content-visibility in styles.css; every row is as tall).

import type { FunctionInfo, RuntimeSummary } from "./api";
import { clear, ENV_LABEL, ENVS, type Env, h, icon, timeAgo, uid } from "./util";

/** How an environment's current version fares on the runtimes. */
export type EnvState = "failing" | "not-live" | "live";

export const STATE_LABEL: Record<EnvState, string> = { failing: "Failing", "not-live": "Not live", live: "Live" };

export function envState(r: RuntimeSummary | undefined): EnvState {
  if (!r) return "not-live";
  if (r.failed > 0 || r.errors > 0) return "failing";
  if (r.active === 0 || r.live < r.active) return "not-live";
  return "live";
}

export interface FunctionRow {
  base: string;
  envs: Partial<Record<Env, FunctionInfo>>;
  states: Partial<Record<Env, EnvState>>;
  latest: FunctionInfo;
  search: string; // the base, lower-cased, for the search box
}

export interface ListFilter {
  query: string;
  env: Env | "";
  state: EnvState | "";
}

/** The API lists one entry per environment; the page shows one row per function, sorted by name. */
export function groupFunctions(functions: FunctionInfo[]): FunctionRow[] {
  const rows = new Map<string, FunctionRow>();
  for (const f of functions) {
    const env = f.env as Env;
    let row = rows.get(f.base);
    if (!row) {
      row = { base: f.base, envs: {}, states: {}, latest: f, search: f.base.toLowerCase() };
      rows.set(f.base, row);
    }
    row.envs[env] = f;
    row.states[env] = envState(f.runtime);
    if (f.updated_at > row.latest.updated_at) row.latest = f;
  }
  return [...rows.values()].sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
}

/** The environments a row's state is read from: the one filtered on, or every one it is in. */
function consideredEnvs(row: FunctionRow, env: Env | ""): Env[] {
  return env ? (row.envs[env] ? [env] : []) : ENVS.filter((e) => row.envs[e]);
}

/** A row's worst state over the environments considered: failing, then not live, then live. */
export function rowState(row: FunctionRow, env: Env | "" = ""): EnvState | null {
  const states = consideredEnvs(row, env).map((e) => row.states[e]);
  if (!states.length) return null;
  return states.includes("failing") ? "failing" : states.includes("not-live") ? "not-live" : "live";
}

/** Every word of the query is in the name; the row is in the environment; its state is the one asked. */
export function matches(row: FunctionRow, filter: ListFilter): boolean {
  if (filter.env && !row.envs[filter.env]) return false;
  if (filter.state && rowState(row, filter.env) !== filter.state) return false;
  const words = filter.query.toLowerCase().split(/\s+/);
  return words.every((w) => row.search.includes(w));
}

function plural(n: number, word: string): string {
  return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;
}

function envBadge(row: FunctionRow, env: Env): HTMLElement {
  const f = row.envs[env];
  if (!f) return h("span", { class: "badge absent", title: `nothing in ${env}` }, h("span", { class: "badge-env" }, env), "—");
  const state = row.states[env] ?? "not-live";
  return h(
    "span",
    { class: `badge env-${env} state-${state}`, title: `${env}: version ${f.version}, ${f.runtime?.summary ?? "runtime state unknown"}` },
    h("span", { class: "badge-env" }, env),
    `v${f.semver}`,
    state === "failing" ? icon("alert") : null,
  );
}

function stateText(row: FunctionRow): HTMLElement {
  const failing = ENVS.filter((e) => row.states[e] === "failing");
  const notLive = ENVS.filter((e) => row.states[e] === "not-live");
  if (failing.length) {
    const why = failing.map((e) => `${ENV_LABEL[e]}: ${row.envs[e]?.runtime?.summary}`).join("\n");
    return h("span", { class: "fn-state failing", title: why }, icon("alert"), `Failing in ${failing.join(", ")}`);
  }
  if (notLive.length) return h("span", { class: "fn-state not-live", title: notLive.map((e) => `${ENV_LABEL[e]}: ${row.envs[e]?.runtime?.summary ?? "unknown"}`).join("\n") }, `Not live in ${notLive.join(", ")}`);
  return h("span", { class: "fn-state live" }, "Live");
}

function renderRow(row: FunctionRow, href: string): HTMLLIElement {
  const state = rowState(row);
  return h(
    "li",
    null,
    h(
      "a",
      { class: `fn-row${state && state !== "live" ? ` ${state}` : ""}`, href },
      h("span", { class: "fn-name mono", title: row.base }, row.base),
      h(
        "span",
        { class: "badges" },
        ENVS.map((env) => envBadge(row, env)),
      ),
      stateText(row),
      h("span", { class: "fn-updated muted small" }, `updated ${timeAgo(row.latest.updated_at)} by ${row.latest.updated_by}`),
    ),
  );
}

/** Render the list with its search and filters into `container`; `hrefOf` links a row to its page. */
export function renderFunctionList(container: HTMLElement, functions: FunctionInfo[], hrefOf: (base: string) => string): void {
  const rows = groupFunctions(functions);
  const ids = { search: uid("fn-search"), env: uid("fn-env"), state: uid("fn-state") };
  const filter: ListFilter = { query: "", env: "", state: "" };

  const search = h("input", { id: ids.search, type: "search", class: "mono", placeholder: "user/", autocomplete: "off", spellcheck: "false" });
  const envSelect = h(
    "select",
    { id: ids.env },
    h("option", { value: "" }, "All environments"),
    ENVS.map((e) => h("option", { value: e }, `In ${ENV_LABEL[e].toLowerCase()}`)),
  );
  const stateOptions = (["", "failing", "not-live", "live"] as const).map((s) => h("option", { value: s }, s ? STATE_LABEL[s] : "Any state"));
  const stateSelect = h("select", { id: ids.state }, stateOptions);
  const count = h("p", { class: "fn-count muted small", role: "status" });
  const items = rows.map((row) => renderRow(row, hrefOf(row.base)));
  const list = h("ul", { class: "fn-rows", "aria-label": "Functions" }, items);
  const none = h(
    "div",
    { class: "empty-state", hidden: true },
    h("h2", null, "No function matches"),
    h("button", { class: "btn", type: "button", onclick: () => reset() }, "Clear search and filters"),
  );

  function apply(): void {
    const started = performance.now();
    filter.query = search.value.trim();
    filter.env = envSelect.value as Env | "";
    filter.state = stateSelect.value as EnvState | "";
    let shown = 0;
    const counts: Record<EnvState, number> = { failing: 0, "not-live": 0, live: 0 };
    const nameAndEnv = { ...filter, state: "" as const };
    rows.forEach((row, i) => {
      const visible = matches(row, filter);
      if (visible) shown++;
      if (items[i].hidden === visible) items[i].hidden = !visible;
      if (matches(row, nameAndEnv)) {
        const s = rowState(row, filter.env);
        if (s) counts[s]++;
      }
    });
    stateOptions.forEach((o) => {
      const s = o.value as EnvState | "";
      o.textContent = s ? `${STATE_LABEL[s]} (${counts[s].toLocaleString("en")})` : "Any state";
    });
    const filtered = filter.query || filter.env || filter.state;
    count.textContent = filtered ? `Showing ${shown.toLocaleString("en")} of ${plural(rows.length, "function")}` : plural(rows.length, "function");
    list.hidden = shown === 0;
    none.hidden = shown !== 0;
    performance.measure("fnstage:function-filter", { start: started });
  }

  function reset(): void {
    search.value = "";
    envSelect.value = "";
    stateSelect.value = "";
    apply();
    search.focus();
  }

  search.addEventListener("input", apply);
  search.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && search.value) {
      e.preventDefault();
      search.value = "";
      apply();
    }
  });
  envSelect.addEventListener("change", apply);
  stateSelect.addEventListener("change", apply);

  clear(
    container,
    h(
      "div",
      { class: "fn-filters", role: "search", "aria-label": "Functions" },
      h("div", { class: "field grow" }, h("label", { class: "label", for: ids.search }, "Search functions"), search),
      h("div", { class: "field" }, h("label", { class: "label", for: ids.env }, "Environment"), envSelect),
      h("div", { class: "field" }, h("label", { class: "label", for: ids.state }, "State"), stateSelect),
      count,
    ),
    list,
    none,
  );
  apply();
}
