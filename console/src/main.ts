// The fnstage console: sign in, pick a gateway, its functions, and a function's page (environment cards,
// editor, try it, release sheet, history). A client of /api/v1 only, like the CLI.

import { renderAccess } from "./access";
import { configHref, renderConfiguration } from "./configuration";
import { depsHref, renderDependencies } from "./dependencies";
import { api, ApiError, type CanaryStatus, type Card, type FileDiff, type FunctionInfo, type Gateway, type GatewaySettings, getToken, gw, type HistoryEntry, pathOf, type Problem, request, type Rollout, type Schemas, setToken, setUnauthorizedHandler } from "./api";
import { FileEditor } from "./editor";
import { renderFunctionList } from "./functions";
import { openHistorySheet } from "./history";
import { openLogsSheet } from "./logs";
import { openReleaseSheet } from "./release";
import { Sheet } from "./sheet";
import { tryPanel } from "./tryit";
import { clear, ENV_LABEL, ENVS, formatTime, h, icon, timeAgo, uid } from "./util";

const GATEWAY_KEY = "fnstage.gateway";
const TEMPLATE = `async def main(ctx):
    name = ctx.query.get("name", "world")
    ctx.log("greeting", name)
    return {"message": f"Hello, {name}!"}
`;

interface Session {
  me: { name: string; is_admin: boolean };
  gateways: Gateway[];
  runtimeUrl: string | null;
}

let session: Session | null = null;
let leaveGuard: (() => boolean) | null = null; // true when leaving would lose unsaved work
let currentHash = location.hash;
let ignoreHashChange = false;
let pageCleanup: (() => void) | null = null;

const root = document.getElementById("app")!;
const main = h("main", { id: "main", tabindex: "-1" });

// ---------- routing ----------

type Route =
  | { page: "home" }
  | { page: "gateway"; gateway: string }
  | { page: "access"; gateway: string }
  | { page: "config"; gateway: string; env: string }
  | { page: "deps"; gateway: string }
  | { page: "function"; gateway: string; base: string };

function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "g" && parts[1]) {
    if (parts[2] === "f" && parts.length > 3) return { page: "function", gateway: parts[1], base: parts.slice(3).join("/") };
    if (parts[2] === "access" && parts.length === 3) return { page: "access", gateway: parts[1] };
    if (parts[2] === "deps" && parts.length === 3) return { page: "deps", gateway: parts[1] };
    if (parts[2] === "config" && parts.length === 4) return { page: "config", gateway: parts[1], env: parts[3] };
    return { page: "gateway", gateway: parts[1] };
  }
  return { page: "home" };
}

export function gatewayHref(gateway: string): string {
  return `#/g/${encodeURIComponent(gateway)}`;
}
export function accessHref(gateway: string): string {
  return `${gatewayHref(gateway)}/access`;
}
export function functionHref(gateway: string, base: string): string {
  return `${gatewayHref(gateway)}/f/${pathOf(base)}`;
}

function confirmLeave(): boolean {
  if (!leaveGuard?.()) return true;
  return window.confirm("You have unsaved changes in the editor. Leave this page and lose them?");
}

window.addEventListener("hashchange", () => {
  if (ignoreHashChange) {
    ignoreHashChange = false;
    return;
  }
  if (!confirmLeave()) {
    ignoreHashChange = true;
    location.hash = currentHash;
    return;
  }
  currentHash = location.hash;
  render();
});

window.addEventListener("beforeunload", (e) => {
  if (leaveGuard?.()) {
    e.preventDefault();
    e.returnValue = "";
  }
});

// ---------- shell ----------

function signOut(message?: string): void {
  if (!confirmLeave()) return;
  leaveGuard = null;
  setToken(null);
  session = null;
  renderSignIn(message);
}

setUnauthorizedHandler((error) => {
  if (session) signOut(`Signed out: ${error.message}`);
});

async function start(): Promise<void> {
  if (!getToken()) {
    renderSignIn();
    return;
  }
  try {
    await loadSession();
  } catch (err) {
    renderSignIn(err instanceof ApiError && err.status === 401 ? `Your token was refused: ${err.message}` : (err as Error).message);
    return;
  }
  render();
}

async function loadSession(): Promise<void> {
  const [me, gateways, health] = await Promise.all([api.get<Schemas["Me"]>("me"), api.get<Schemas["Gateways"]>("gateways"), api.get<Schemas["Health"]>("health")]);
  session = { me, gateways: gateways.gateways, runtimeUrl: health.runtime_url };
}

function skipToContent(e: Event): void {
  e.preventDefault();
  main.focus();
}

function topbar(activeGateway: string | null): HTMLElement {
  const s = session!;
  const select = h(
    "select",
    {
      id: "gateway-select",
      "aria-label": "Gateway",
      onchange: () => {
        if (select.value === "__new__") {
          select.value = activeGateway ?? "";
          openNewGateway();
        } else {
          location.hash = gatewayHref(select.value);
        }
      },
    },
    activeGateway ? null : h("option", { value: "", selected: true, disabled: true }, "Choose a gateway"),
    s.gateways.map((g) => h("option", { value: g.id, selected: g.id === activeGateway }, g.id)),
    h("option", { value: "__new__" }, "+ New gateway…"),
  );
  return h(
    "header",
    { class: "topbar" },
    h("a", { class: "skip", href: "#main", onclick: skipToContent }, "Skip to content"),
    h("a", { class: "brand", href: activeGateway ? gatewayHref(activeGateway) : "#/" }, h("span", { class: "logo", "aria-hidden": "true" }, "ƒ"), "fnstage"),
    h("div", { class: "gateway-pick" }, h("span", { class: "muted", "aria-hidden": "true" }, "Gateway"), select),
    h("div", { class: "spacer" }),
    h("span", { class: "who", title: s.me.is_admin ? "admin" : undefined }, h("span", { class: "avatar", "aria-hidden": "true" }, s.me.name.slice(0, 1).toUpperCase()), s.me.name),
    h("button", { class: "btn ghost small", type: "button", onclick: () => signOut() }, "Sign out"),
  );
}

function render(): void {
  renderPage();
  // the element that had focus (a link, the gateway picker, Sign in) was replaced: a keyboard goes on
  // from the page's content, not from the top of a document it cannot see
  if (session && (!document.activeElement || document.activeElement === document.body)) main.focus({ preventScroll: true });
}

function renderPage(): void {
  pageCleanup?.();
  pageCleanup = null;
  leaveGuard = null;
  if (!session) {
    renderSignIn();
    return;
  }
  const route = parseRoute(location.hash);
  if (route.page === "home") {
    const remembered = localStorage.getItem(GATEWAY_KEY);
    const pick = session.gateways.find((g) => g.id === remembered) ?? session.gateways[0];
    if (pick) {
      ignoreHashChange = true;
      location.replace(gatewayHref(pick.id));
      currentHash = location.hash;
      ignoreHashChange = false;
      renderGateway(pick.id);
    } else {
      renderNoGateway();
    }
    return;
  }
  localStorage.setItem(GATEWAY_KEY, route.gateway);
  if (route.page === "gateway") renderGateway(route.gateway);
  else if (route.page === "access") renderAccessPage(route.gateway);
  else if (route.page === "config") renderConfigPage(route.gateway, route.env);
  else if (route.page === "deps") renderDepsPage(route.gateway);
  else renderFunction(route.gateway, route.base);
}

function shell(activeGateway: string | null, ...content: (Node | null)[]): void {
  clear(main, ...content);
  clear(root, topbar(activeGateway), main);
}

// ---------- sign in ----------

function renderSignIn(message?: string): void {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, spellcheck: "false", class: "mono" });
  const error = h("p", { class: "error-text", role: "alert" }, message ?? "");
  const button = h("button", { class: "btn primary wide", type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "signin-card",
      "aria-labelledby": "signin-title",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const token = input.value.trim();
        if (!token) {
          error.textContent = "Paste an API token.";
          return;
        }
        button.disabled = true;
        try {
          await request("GET", "me", undefined, token);
          setToken(token);
          await loadSession();
          render();
        } catch (err) {
          error.textContent = (err as Error).message;
          button.disabled = false;
        }
      },
    },
    h("div", { class: "brand big" }, h("span", { class: "logo", "aria-hidden": "true" }, "ƒ"), "fnstage"),
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, "Serverless Python functions with instant, recorded, reversible releases."),
    h("label", { class: "label", for: "token" }, "API token"),
    input,
    h("p", { class: "hint" }, "`fnstage up` wrote the admin's token to .fnstage/admin-token."),
    error,
    button,
  );
  clear(root, h("main", { class: "signin" }, form));
  input.focus();
}

// ---------- gateways ----------

function openNewGateway(): void {
  const sheet = new Sheet({ title: "New gateway", subtitle: "A gateway groups functions, their dependencies and their URLs: ID.env.your-domain." });
  const idInput = h("input", { id: "new-gateway-id", class: "mono", placeholder: "demo", autocomplete: "off", spellcheck: "false", required: true });
  const allow = h("input", { id: "new-gateway-skip", type: "checkbox" });
  const error = h("p", { class: "error-text", role: "alert" });
  const create = h("button", { class: "btn primary", type: "submit", form: "new-gateway-form" }, "Create gateway");
  sheet.body.append(
    h(
      "form",
      {
        id: "new-gateway-form",
        class: "stack",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          create.disabled = true;
          try {
            const g = await api.post<Gateway>("gateways", { id: idInput.value.trim(), allow_dev_to_prod: allow.checked });
            session!.gateways.push(g);
            sheet.close(true);
            location.hash = gatewayHref(g.id);
          } catch (err) {
            error.textContent = (err as Error).message;
            create.disabled = false;
          }
        },
      },
      h("label", { class: "label", for: "new-gateway-id" }, "Gateway ID"),
      idInput,
      h("p", { class: "hint" }, "Lowercase letters, digits and '-' (a DNS label)."),
      h("label", { class: "check" }, allow, "Allow releases straight from dev to prod"),
      error,
    ),
  );
  sheet.footer.append(h("span"), h("div", { class: "footer-buttons" }, h("button", { class: "btn", type: "button", onclick: () => sheet.close() }, "Cancel"), create));
  idInput.focus();
}

function renderNoGateway(): void {
  shell(
    null,
    h(
      "div",
      { class: "empty-state" },
      h("h1", null, "Create your first gateway"),
      h("p", { class: "muted" }, "Functions live in a gateway. Each has its dev, staging and prod."),
      h("button", { class: "btn primary", type: "button", onclick: openNewGateway }, icon("plus"), "New gateway"),
    ),
  );
}

async function renderGateway(gateway: string): Promise<void> {
  const list = h("div", { class: "fn-list" }, h("p", { class: "muted", role: "status" }, "Loading functions…"));
  const pathInput = h("input", { id: "new-fn-path", class: "mono", placeholder: "user/me", autocomplete: "off", spellcheck: "false" });
  const error = h("p", { class: "error-text", role: "alert" });
  const form = h(
    "form",
    {
      class: "new-fn",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const base = pathInput.value.trim().replace(/^\/+|\/+$/g, "");
        try {
          await api.put(`${gw(gateway)}/functions/dev/${pathOf(base)}`, { files: { "index.py": TEMPLATE }, entrypoint: "index.py", expected_version: 0 });
          location.hash = functionHref(gateway, base);
        } catch (err) {
          error.textContent = (err as Error).message;
        }
      },
    },
    h("label", { class: "label", for: "new-fn-path" }, "New function path"),
    h("div", { class: "inline" }, pathInput, h("button", { class: "btn", type: "submit" }, icon("plus"), "Create in dev")),
    error,
  );
  shell(
    gateway,
    h(
      "div",
      { class: "page-head" },
      h("div", null, h("p", { class: "crumbs" }, "Gateway"), h("h1", null, gateway), h("a", { class: "small", href: accessHref(gateway) }, "Members and tokens"), " · ", h("a", { class: "small", href: configHref(gatewayHref(gateway), "dev") }, "Configuration and secrets"), " · ", h("a", { class: "small", href: depsHref(gatewayHref(gateway)) }, "Dependencies")),
      form,
    ),
    list,
  );
  let functions: FunctionInfo[];
  try {
    functions = (await api.get<Schemas["Functions"]>(`${gw(gateway)}/functions?runtime=true`)).functions;
  } catch (err) {
    clear(list, h("p", { class: "error-text", role: "alert" }, (err as Error).message));
    return;
  }
  performance.mark("fnstage:functions-loaded");
  if (!functions.length) {
    clear(list, h("div", { class: "empty-state" }, h("h2", null, "No functions yet"), h("p", { class: "muted" }, "Create one above, or push with the CLI: fnstage push . dev/user/me")));
    return;
  }
  renderFunctionList(list, functions, (base) => functionHref(gateway, base));
  performance.mark("fnstage:functions-rendered");
  // the frame after it: a requestAnimationFrame callback runs before the paint, a task queued there after
  requestAnimationFrame(() => setTimeout(() => performance.mark("fnstage:functions-painted"), 0));
}

function renderAccessPage(gateway: string): void {
  const body = h("div", { class: "access-page" });
  shell(
    gateway,
    h("div", { class: "page-head" }, h("div", null, h("p", { class: "crumbs" }, h("a", { href: gatewayHref(gateway) }, gateway)), h("h1", null, "Members and tokens"))),
    body,
  );
  renderAccess(body, gateway);
}

function renderConfigPage(gateway: string, env: string): void {
  const body = h("div", { class: "access-page" });
  shell(
    gateway,
    h("div", { class: "page-head" }, h("div", null, h("p", { class: "crumbs" }, h("a", { href: gatewayHref(gateway) }, gateway)), h("h1", null, `Configuration: ${env}`))),
    body,
  );
  renderConfiguration(body, gateway, env, (e) => configHref(gatewayHref(gateway), e));
}

function renderDepsPage(gateway: string): void {
  const body = h("div", { class: "access-page" });
  shell(
    gateway,
    h("div", { class: "page-head" }, h("div", null, h("p", { class: "crumbs" }, h("a", { href: gatewayHref(gateway) }, gateway)), h("h1", null, "Dependencies"))),
    body,
  );
  renderDependencies(body, gateway);
}

// ---------- the function page ----------

function runtimeClass(card: Card): string {
  const r = card.runtime;
  if (r.failed > 0) return "failed";
  if (r.errors > 0) return "erroring"; // live, but its requests fail: the summary says how many and why
  if (!r.runtimes.length) return "idle";
  if (r.active > 0 && r.live === r.active) return "live";
  return "pending";
}

/** The card's runtime line; when it carries an error, the whole text shows on hover and when expanded
 * (the line itself is cut to the card's width). */
function runtimeState(card: Card): HTMLElement {
  const summary = card.runtime.summary;
  const errors = [...new Set(card.runtime.runtimes.map((r) => r.error ?? r.last_error).filter((e): e is string => Boolean(e)))];
  const full = [summary, ...errors.filter((e) => !summary.includes(e))].join("\n");
  const line = h("span", { class: `runtime-state ${runtimeClass(card)}`, title: full }, h("span", { class: "pulse", "aria-hidden": "true" }), summary);
  // failing without a runtime's words (the summary alone carries them) still expands: a title is no help
  // to a keyboard or a touch screen
  if (!errors.length && !card.runtime.failed && !card.runtime.errors) return line;
  return h("details", { class: "runtime-details" }, h("summary", { title: full }, line, icon("chevron")), h("p", { class: "runtime-full", "data-testid": `runtime-error-${card.env}` }, full));
}

function canaryLine(c: CanaryStatus): HTMLElement {
  const counts = `canary ${c.canary.errors} of ${c.canary.requests} failed · stable ${c.stable.errors} of ${c.stable.requests} failed`;
  if (c.state === "running") {
    const left = c.time_left_s >= 60 ? `${Math.floor(c.time_left_s / 60)}m ${Math.round(c.time_left_s % 60)}s` : `${Math.round(c.time_left_s)}s`;
    return h("p", { class: "canary running", "data-testid": "canary" }, `Canary v${c.canary.semver}: ${c.share}% of requests, ${left} left · ${counts}`);
  }
  const verb = c.state === "completed" ? "took all traffic" : c.state === "aborted" ? "aborted" : "rolled back";
  return h("p", { class: `canary ${c.state}`, "data-testid": "canary" }, `Canary v${c.canary.semver} ${verb}${c.decided_by ? ` by ${c.decided_by}` : ""}: ${c.reason ?? counts}`);
}

function renderCards(container: HTMLElement, cards: Record<string, Card | null>, actions: { release: (env: string) => void; history: (env: string) => void }): void {
  const items: Node[] = [];
  ENVS.forEach((env, i) => {
    if (i > 0) items.push(h("div", { class: "flow-arrow", "aria-hidden": "true" }, icon("arrow")));
    const card = cards[env];
    const titleId = uid("card");
    items.push(
      h(
        "article",
        { class: `env-card env-${env}${card ? "" : " empty"}`, "aria-labelledby": titleId, "data-env": env },
        h("div", { class: "env-card-head" }, h("h2", { id: titleId }, h("span", { class: "env-dot", "aria-hidden": "true" }), ENV_LABEL[env]), card ? h("span", { class: "state" }, card.state) : null),
        card
          ? [
              h("div", { class: "semver-line" }, h("span", { class: "semver mono", "data-testid": `semver-${env}` }, `v${card.semver}`), h("span", { class: "version" }, `version ${card.version}`)),
              runtimeState(card),
              card.canary ? canaryLine(card.canary) : null,
              // one line, cut to the card: the whole note on hover
              h("p", { class: "note", title: card.note ?? undefined }, card.note ? `“${card.note}”` : h("span", { class: "muted" }, card.kind === "create" ? "created" : "no note")),
              h("p", { class: "meta" }, h("span", { class: "avatar small", "aria-hidden": "true" }, card.deployed_by.slice(0, 1).toUpperCase()), `${card.deployed_by} · `, h("time", { datetime: card.deployed_at, title: formatTime(card.deployed_at) }, timeAgo(card.deployed_at)), card.kind ? ` · ${card.kind}` : ""),
              h(
                "div",
                { class: "card-actions" },
                h("button", { class: "btn small ghost", type: "button", "aria-label": `History of ${env}`, onclick: () => actions.history(env) }, icon("history"), "History"),
                env !== "prod" ? h("button", { class: "btn small", type: "button", "aria-label": `Release from ${env}`, onclick: () => actions.release(env) }, "Release", icon("arrow")) : null,
              ),
            ]
          : h("div", { class: "empty-card" }, h("p", { class: "muted" }, "Not released here yet"), h("p", { class: "small muted" }, env === "dev" ? "Save in the editor to deploy to dev." : `Release to ${env} from ${env === "staging" ? "dev" : "staging"}.`)),
      ),
    );
  });
  clear(container, items);
}

async function renderFunction(gateway: string, base: string): Promise<void> {
  const cardsEl = h("section", { class: "pipeline", "aria-label": "Environments, left to right" }, h("p", { class: "muted" }, "Loading…"));
  const saveStatus = h("span", { class: "save-status", role: "status", "aria-live": "polite" });
  const banner = h("div", { class: "banner", hidden: true, role: "alert" });
  const noteInput = h("input", { id: "save-note", placeholder: "Change note (optional)", autocomplete: "off", class: "note-input" });
  // dev's semver: kept from save to save unless set here (the release sheet sets the others)
  const semverInput = h("input", { id: "save-semver", placeholder: "semver", autocomplete: "off", spellcheck: "false", class: "semver-input mono", title: "Dev's semver for this save; empty keeps the current one" });
  const saveBtn = h("button", { class: "btn primary", type: "button", title: "Save to dev (Ctrl+S / ⌘S)" }, "Save", h("kbd", null, navigator.platform.includes("Mac") ? "⌘S" : "Ctrl+S"));
  const basedOn = h("span", { class: "muted small" });
  let gw0: GatewaySettings = session!.gateways.find((g) => g.id === gateway) ?? { id: gateway, allow_dev_to_prod: false, history_limit: 30 };
  let cards: Record<string, Card | null> = { dev: null, staging: null, prod: null };
  let baseVersion = 0;
  let saving = false;
  let openSheet: Sheet | null = null;

  const editor = new FileEditor({ onSave: () => save(), onChange: () => updateDirty() });
  leaveGuard = () => editor.dirty();

  const releaseBtn = h("button", { class: "btn primary", type: "button", onclick: () => openRelease("dev") }, icon("rocket"), "Release…");
  const historyBtn = h("button", { class: "btn", type: "button", onclick: () => openHistory("prod") }, icon("history"), "History");
  const logsBtn = h("button", { class: "btn", type: "button", onclick: () => { openSheet = openLogsSheet({ gateway: gw0, base, env: "dev" }); } }, "Logs");

  shell(
    gateway,
    h(
      "div",
      { class: "page-head" },
      h("div", null, h("p", { class: "crumbs" }, h("a", { href: gatewayHref(gateway) }, gateway), " / function"), h("h1", { class: "mono" }, base)),
      h("div", { class: "head-actions" }, logsBtn, historyBtn, releaseBtn),
    ),
    cardsEl,
    h(
      "div",
      { class: "workbench" },
      h(
        "section",
        { class: "panel code", "aria-labelledby": "code-title" },
        h(
          "div",
          { class: "panel-head" },
          h("div", null, h("h2", { id: "code-title" }, "Code ", h("span", { class: "env-tag env-dev" }, "dev")), basedOn),
          h("div", { class: "save-bar" }, saveStatus, h("label", { class: "sr-only", for: "save-note" }, "Change note (optional)"), noteInput, h("label", { class: "sr-only", for: "save-semver" }, "Dev semver (optional)"), semverInput, saveBtn),
        ),
        banner,
        editor.el,
      ),
      tryPanel({ gateway, base, runtimeUrl: session!.runtimeUrl, envs: () => ENVS.filter((e) => cards[e]) }),
    ),
  );
  saveBtn.addEventListener("click", () => save());

  const onKey = (e: KeyboardEvent) => {
    if ((e.metaKey || e.ctrlKey) && e.key.toLowerCase() === "s" && !document.body.classList.contains("sheet-open")) {
      e.preventDefault();
      save();
    }
  };
  document.addEventListener("keydown", onKey);
  pageCleanup = () => {
    document.removeEventListener("keydown", onKey);
    openSheet?.close(true);
  };

  function updateDirty(): void {
    const dirty = editor.dirty();
    if (!saving && !banner.dataset.kind) {
      saveStatus.className = `save-status ${dirty ? "dirty" : ""}`;
      saveStatus.textContent = dirty ? "Unsaved changes" : saveStatus.dataset.saved ?? "";
    }
  }

  function showBanner(kind: "error" | "conflict" | null, ...content: (Node | string | null)[]): void {
    banner.hidden = !kind;
    banner.className = `banner ${kind ?? ""}`;
    if (kind) banner.dataset.kind = kind;
    else delete banner.dataset.kind;
    clear(banner, ...content);
  }

  async function refreshCards(): Promise<void> {
    try {
      const data = await api.get<Schemas["Overview"]>(`${gw(gateway)}/overview/${pathOf(base)}`);
      cards = data.environments;
    } catch (err) {
      clear(cardsEl, h("p", { class: "error-text", role: "alert" }, (err as Error).message));
      return;
    }
    renderCards(cardsEl, cards, { release: openRelease, history: openHistory });
    releaseBtn.disabled = !(cards.dev || cards.staging);
  }

  function setBase(fn: FunctionInfo): void {
    baseVersion = fn.version;
    semverInput.placeholder = `v${fn.semver}`;
    basedOn.textContent = `editing version ${fn.version} (v${fn.semver}), saved ${timeAgo(fn.updated_at)} by ${fn.updated_by}`;
  }

  async function save(overwrite = false): Promise<void> {
    if (saving) return;
    const files = editor.files();
    const semver = semverInput.value.trim().replace(/^v/, "");
    if (!overwrite && !editor.dirty() && baseVersion > 0 && !semver) {
      saveStatus.textContent = "Nothing to save";
      editor.setProblems([]); // the saved version built
      return;
    }
    saving = true;
    saveBtn.disabled = true;
    saveStatus.className = "save-status";
    clear(saveStatus, h("span", { class: "spinner", "aria-hidden": "true" }), "Saving to dev…");
    try {
      const note = noteInput.value.trim();
      const result = await api.put<Schemas["Saved"]>(`${gw(gateway)}/functions/dev/${pathOf(base)}`, {
        files,
        entrypoint: editor.entrypoint,
        expected_version: baseVersion,
        ...(note ? { note } : {}),
        ...(semver ? { semver } : {}),
      });
      saving = false;
      showBanner(null);
      editor.markSaved(files);
      noteInput.value = "";
      semverInput.value = "";
      setBase(result.function);
      const saved = result.changed === false ? `No change: still version ${result.function.version}` : `Saved version ${result.function.version}`;
      saveStatus.dataset.saved = saved;
      saveStatus.className = "save-status ok";
      saveStatus.textContent = saved;
      await refreshCards();
      watchDev(result.function.version, saved);
    } catch (err) {
      saving = false;
      const e = err as ApiError;
      saveStatus.className = "save-status bad";
      if (e.code === "build_failed") {
        const problems = (Array.isArray(e.details) ? e.details : []) as Problem[];
        editor.setProblems(problems.length ? problems : [{ file: editor.activePath(), line: null, col: null, message: e.message }]);
        saveStatus.textContent = "Build failed: not saved";
        showBanner(null);
        const first = problems.find((p) => p.line);
        if (first) editor.goTo(first);
      } else if (e.code === "stale_version") {
        saveStatus.textContent = "Not saved: conflict";
        showConflict(e);
      } else {
        saveStatus.textContent = "Not saved";
        showBanner("error", icon("alert"), h("span", null, `Not saved: ${e.message}`), h("span", { class: "muted" }, " Your text is kept."));
      }
    } finally {
      saving = false;
      saveBtn.disabled = false;
    }
  }

  async function watchDev(version: number, saved: string): Promise<void> {
    const started = Date.now();
    while (Date.now() - started < 5000 && baseVersion === version) {
      try {
        const r = await api.get<Rollout>(`${gw(gateway)}/rollout/dev/${pathOf(base)}?version=${version}`);
        if (baseVersion !== version || editor.dirty()) return;
        if (r.done || (!r.runtimes.length && Date.now() - started > 1500)) {
          saveStatus.textContent = `${saved} · ${r.summary}${r.latency_ms != null ? ` in ${Math.round(r.latency_ms)} ms` : ""}`;
          saveStatus.dataset.saved = saveStatus.textContent;
          saveStatus.className = `save-status ${r.failed ? "bad" : "ok"}`;
          refreshCards();
          return;
        }
      } catch {
        return;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  function showConflict(e: ApiError): void {
    const theirs = (e.details as { current_version?: number } | undefined)?.current_version;
    showBanner(
      "conflict",
      h("div", { class: "banner-text" }, h("strong", null, icon("alert"), "Someone else saved meanwhile. Nothing was overwritten."), h("span", null, e.message), h("span", { class: "muted" }, "Your text is kept in the editor.")),
      h(
        "div",
        { class: "banner-actions" },
        h("button", { class: "btn small", type: "button", onclick: () => compareWithTheirs() }, "Compare yours with theirs"),
        h(
          "button",
          {
            class: "btn small danger",
            type: "button",
            onclick: async () => {
              const fn = await api.get<FunctionInfo>(`${gw(gateway)}/functions/dev/${pathOf(base)}`);
              baseVersion = fn.version;
              save(true);
            },
          },
          theirs ? `Save mine over version ${theirs}` : "Save mine over theirs",
        ),
        h(
          "button",
          {
            class: "btn small ghost",
            type: "button",
            onclick: async () => {
              await loadCode();
              showBanner(null);
              saveStatus.textContent = "Loaded their version; your changes were discarded";
            },
          },
          "Discard mine, load theirs",
        ),
      ),
    );
  }

  async function compareWithTheirs(): Promise<void> {
    const mine = editor.files();
    const [mod, theirs] = await Promise.all([import("./diff"), api.get<FunctionInfo>(`${gw(gateway)}/functions/dev/${pathOf(base)}?files=true`)]);
    const files: FileDiff[] = [...new Set([...Object.keys(theirs.files!), ...Object.keys(mine)])].sort().map((path) => {
      const a = theirs.files![path] ?? null;
      const b = mine[path] ?? null;
      return { path, a, b, status: a === null ? "added" : b === null ? "removed" : a === b ? "unchanged" : "modified" };
    });
    openSheet = new Sheet({ title: "Your changes vs theirs", subtitle: `dev/${base} version ${theirs.version} (saved by ${theirs.updated_by} ${timeAgo(theirs.updated_at)}) on the left, your unsaved text on the right.`, wide: true });
    openSheet.panel.classList.add("conflict-sheet");
    const box = h("div", { class: "diff" });
    openSheet.body.append(box);
    const destroy = mod.renderDiff(box, files, { a: `Theirs: version ${theirs.version}`, b: "Yours (unsaved)" });
    const s = openSheet;
    const close = () => {
      destroy();
      s.close();
    };
    s.footer.append(h("span"), h("button", { class: "btn", type: "button", onclick: close }, "Close"));
  }

  function openRelease(env: string, historyId?: number, target?: string): void {
    openSheet = openReleaseSheet({ gateway: gw0, base, cards, sourceEnv: cards[env] ? env : "dev", sourceHistoryId: historyId ?? null, target, onReleased: () => refreshCards() });
  }

  function openHistory(env: string): void {
    openSheet = openHistorySheet({
      gateway: gw0,
      base,
      env,
      cards,
      onRollback: (e: string, entry: HistoryEntry) => openRelease(e, entry.id, e),
    });
  }

  async function loadCode(): Promise<void> {
    let fn: FunctionInfo | null = null;
    try {
      fn = await api.get<FunctionInfo>(`${gw(gateway)}/functions/dev/${pathOf(base)}?files=true`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
    if (fn) {
      editor.load(fn.files!, fn.entrypoint);
      setBase(fn);
    } else {
      const other = ENVS.map((e) => cards[e]).find(Boolean);
      const source = other ? await api.get<FunctionInfo>(`${gw(gateway)}/functions/${other.env}/${pathOf(base)}?files=true`) : null;
      editor.load(source?.files ?? { "index.py": TEMPLATE }, source?.entrypoint ?? "index.py");
      baseVersion = 0;
      basedOn.textContent = source ? `not in dev: starting from ${source.env}'s code; Save creates it in dev` : "new function";
    }
    saveStatus.textContent = "";
    delete saveStatus.dataset.saved;
  }

  try {
    const [g] = await Promise.all([api.get<Gateway>(gw(gateway)), refreshCards()]);
    gw0 = g;
    await loadCode();
  } catch (err) {
    clear(cardsEl, h("p", { class: "error-text", role: "alert" }, (err as Error).message));
  }
  performance.mark("fnstage:function-page-ready");
  updateDirty();
}

start();
