// A gateway's function list: one row per function with dev, staging and prod side by side, searched and
// filtered by name, environment and state; a function whose live version fails its requests (or that a
// runtime refused to load) is marked in words, not by colour alone.
// Built for 1,000 functions and more: a keystroke filters plain data, and only the rows in view are in
// the DOM (a windowed list; every row is one height).

import type { FunctionInfo, RuntimeSummary } from "./api";
import { clear, ENV_LABEL, ENVS, type Env, h, icon, timeAgo, uid } from "./util";

/** How an environment's current version fares on the runtimes. "pending": every runtime has it, some
 * hold it without having run it yet (a cold start's: servable, loaded on its first request). */
export type EnvState = "failing" | "not-live" | "pending" | "live";

export const STATE_LABEL: Record<EnvState, string> = { failing: "Failing", "not-live": "Not live", pending: "Pending", live: "Live" };

export function envState(r: RuntimeSummary | null | undefined): EnvState {
  if (!r) return "not-live";
  if (r.failed > 0 || r.errors > 0) return "failing";
  if (r.active > 0 && r.held > 0 && r.live + r.held === r.active) return "pending";
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

/** A row's worst state over the environments considered: failing, then not live, then pending, then live. */
export function rowState(row: FunctionRow, env: Env | "" = ""): EnvState | null {
  const states = consideredEnvs(row, env).map((e) => row.states[e]);
  if (!states.length) return null;
  for (const state of ["failing", "not-live", "pending"] as const) if (states.includes(state)) return state;
  return "live";
}

/** A filter as a test of a row: every word of the query is in the name, the row is in the environment,
 * its state is the one asked. Made once per keystroke, run on every row. */
export function matcher(filter: ListFilter): (row: FunctionRow) => boolean {
  const words = filter.query.toLowerCase().split(/\s+/).filter(Boolean);
  return (row) =>
    (!filter.env || Boolean(row.envs[filter.env])) &&
    (!filter.state || rowState(row, filter.env) === filter.state) &&
    words.every((w) => row.search.includes(w));
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
  const pending = ENVS.filter((e) => row.states[e] === "pending");
  if (pending.length) return h("span", { class: "fn-state pending", title: pending.map((e) => `${ENV_LABEL[e]}: ${row.envs[e]?.runtime?.summary}`).join("\n") }, `Pending in ${pending.join(", ")}`);
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

/** Only the rows in and near the viewport are in the DOM (every row is ROW_PX tall, so the rest is
 * padding): the first render and every keystroke cost the same for 100 functions or 10,000. Each row
 * says its place (aria-posinset of aria-setsize), and a row reached by Tab pulls the next ones in. */
const ROW_PX = 52;
const BUFFER_ROWS = 10;

class WindowedList {
  readonly el: HTMLUListElement;
  private built = new Map<number, HTMLLIElement>(); // row index -> its element, built on first show
  private shown: number[] = []; // indexes of the rows that match, in order
  private from = -1;
  private to = -1;
  private frame = 0;

  constructor(
    private rows: FunctionRow[],
    private hrefOf: (base: string) => string,
  ) {
    this.el = h("ul", { class: "fn-rows", "aria-label": "Functions" });
    const later = () => {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    };
    window.addEventListener("scroll", later, { passive: true });
    window.addEventListener("resize", later, { passive: true });
    this.el.addEventListener("focusin", (e) => {
      const li = (e.target as Element).closest("li");
      const at = li ? Number(li.dataset.at) : -1;
      if (at >= 0 && (at + 1 >= this.to || at - 1 < this.from)) this.render(at); // Tab goes on to the next
    });
  }

  show(indexes: number[]): void {
    this.shown = indexes;
    this.from = this.to = -1;
    this.render();
  }

  /** The rows in view, BUFFER_ROWS more on each side, and around `focused` when a row has focus. */
  render(focused = -1): void {
    if (!this.el.isConnected) return;
    const n = this.shown.length;
    const top = this.el.getBoundingClientRect().top;
    let from = Math.max(0, Math.floor(-top / ROW_PX) - BUFFER_ROWS);
    let to = Math.min(n, Math.ceil((window.innerHeight - top) / ROW_PX) + BUFFER_ROWS);
    if (focused >= 0) {
      from = Math.min(from, Math.max(0, focused - BUFFER_ROWS));
      to = Math.max(to, Math.min(n, focused + BUFFER_ROWS + 1));
    }
    if (to < from) to = from;
    if (from === this.from && to === this.to) return;
    this.from = from;
    this.to = to;
    const items: HTMLLIElement[] = [];
    for (let at = from; at < to; at++) {
      const i = this.shown[at];
      let li = this.built.get(i);
      if (!li) {
        li = renderRow(this.rows[i], this.hrefOf(this.rows[i].base));
        this.built.set(i, li);
      }
      li.dataset.at = String(at);
      li.setAttribute("aria-posinset", String(at + 1));
      li.setAttribute("aria-setsize", String(n));
      items.push(li);
    }
    this.el.style.paddingTop = `${from * ROW_PX}px`;
    this.el.style.paddingBottom = `${(n - to) * ROW_PX}px`;
    // rows that stay (a scroll keeps most) are never moved: a moved row loses the keyboard's focus, and
    // re-inserting one costs its layout and text shaping. Rows keep their order, so removing the rows
    // that go and inserting the new ones in place is enough.
    const keep = new Set<Element>(items);
    for (const child of [...this.el.children]) if (!keep.has(child)) child.remove();
    let next: ChildNode | null = this.el.firstChild;
    for (const li of items) {
      if (li === next) next = next.nextSibling;
      else this.el.insertBefore(li, next);
    }
  }
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
  const stateOptions = (["", "failing", "not-live", "pending", "live"] as const).map((s) => h("option", { value: s }, s ? STATE_LABEL[s] : "Any state"));
  const stateSelect = h("select", { id: ids.state }, stateOptions);
  const count = h("p", { class: "fn-count muted small", role: "status" });
  const list = new WindowedList(rows, hrefOf);
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
    const shown: number[] = [];
    const counts: Record<EnvState, number> = { failing: 0, "not-live": 0, pending: 0, live: 0 };
    const keeps = matcher(filter);
    const keepsNameAndEnv = matcher({ ...filter, state: "" });
    rows.forEach((row, i) => {
      if (keeps(row)) shown.push(i);
      if (keepsNameAndEnv(row)) {
        const s = rowState(row, filter.env);
        if (s) counts[s]++;
      }
    });
    for (const o of stateOptions) {
      const s = o.value as EnvState | "";
      o.textContent = s ? `${STATE_LABEL[s]} (${counts[s].toLocaleString("en")})` : "Any state";
    }
    const filtered = filter.query || filter.env || filter.state;
    count.textContent = filtered ? `Showing ${shown.length.toLocaleString("en")} of ${plural(rows.length, "function")}` : plural(rows.length, "function");
    list.el.hidden = shown.length === 0;
    none.hidden = shown.length !== 0;
    list.show(shown);
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
    list.el,
    none,
  );
  apply();
}
