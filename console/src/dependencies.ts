// A gateway's dependencies: its requirements, and the lock uv resolved them to (every package with its
// exact version, and the lock's text with hashes). Developers add, replace, remove or set them all; the
// API resolves and installs before it answers, so the page shows progress meanwhile, and a refusal shows
// the resolver's own words with nothing changed. The next save of each function picks the lock up.

import { api, ApiError, gw } from "./api";
import { clear, h } from "./util";

interface Lock {
  hash: string;
  packages: Record<string, string>;
  text: string;
}

interface Dependencies {
  dependencies: string[];
  lock: Lock | null;
}

/** A change of one package between two locks, as the API's diff names it. */
export interface LockChange {
  name: string;
  status: "added" | "removed" | "changed";
  a: string | null;
  b: string | null;
}

export function depsHref(gatewayHref: string): string {
  return `${gatewayHref}/deps`;
}

/** `Requests[socks]>=2` -> `requests`: the package a requirement names (PEP 503), as the CLI's `deps add`. */
export function requirementName(requirement: string): string {
  const match = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(requirement);
  return (match ? match[1] : requirement).toLowerCase().replace(/[-_.]+/g, "-");
}

/** The packages a release or a diff changes: "fnpkg 1.0 → 2.0", "+ humanize 4.9.0", "− six 1.16.0". */
export function lockChangesList(changes: LockChange[]): HTMLElement | null {
  if (!changes.length) return null;
  return h(
    "div",
    { class: "lock-changes" },
    h("h4", null, "Dependencies change"),
    h(
      "ul",
      null,
      changes.map((c) =>
        h(
          "li",
          { "data-package": c.name, class: `lock-${c.status}` },
          h("span", { class: "mono" }, c.name),
          " ",
          c.status === "added" ? `added at ${c.b}` : c.status === "removed" ? `removed (was ${c.a})` : `${c.a} → ${c.b}`,
        ),
      ),
    ),
  );
}

export function renderDependencies(container: HTMLElement, gateway: string): void {
  const path = `${gw(gateway)}/dependencies`;
  let current: string[] = [];
  // What the "Set all" box held when the page last wrote it (or sent it): an answer rewrites the box only
  // while it still holds that, so text the user is typing survives any change's answer.
  let allWritten = "";
  const summary = h("p", { class: "muted small", "aria-live": "polite" });
  const requirementsBody = h("tbody");
  const lockBody = h("tbody");
  const lockText = h("pre", { class: "mono small lock-text", tabindex: "0" });
  const lockDetails = h("details", { class: "lock-details", hidden: true }, h("summary", null, "The lock, with hashes"), lockText);
  const error = h("div", { class: "error-text deps-error", role: "alert" });
  const progress = h("div", { class: "installing", role: "status", hidden: true }, h("progress", { "aria-label": "Resolving and installing" }), h("span", null, "Resolving and installing the dependencies…"));
  const buttons: HTMLButtonElement[] = [];

  function show(view: Dependencies): void {
    current = view.dependencies;
    const packages = Object.entries(view.lock?.packages ?? {});
    summary.textContent = view.lock
      ? `${current.length} requirement(s), locked to ${packages.length} package(s) (lock ${view.lock.hash.slice(0, 12)}). Saves from now on run with this lock; live versions keep theirs until their next save.`
      : "No dependencies: functions import only the standard library and their own files.";
    clear(
      requirementsBody,
      current.length
        ? current.map((r) =>
            h(
              "tr",
              { "data-requirement": requirementName(r) },
              h("td", { class: "mono" }, r),
              h(
                "td",
                { class: "actions" },
                button({ class: "btn ghost small", "aria-label": `Remove ${r}` }, "Remove", () => change(current.filter((x) => x !== r))),
              ),
            ),
          )
        : h("tr", null, h("td", { colspan: "2", class: "muted" }, "No requirements.")),
    );
    clear(
      lockBody,
      packages.length
        ? packages.map(([name, version]) => h("tr", { "data-package": name }, h("td", { class: "mono" }, name), h("td", { class: "mono" }, version)))
        : h("tr", null, h("td", { colspan: "2", class: "muted" }, "Nothing locked.")),
    );
    lockText.textContent = view.lock?.text ?? "";
    lockDetails.hidden = !view.lock;
    if (allInput.value === allWritten) {
      allWritten = current.join("\n");
      allInput.value = allWritten;
    }
  }

  function button(attrs: Record<string, unknown>, label: string, onclick: () => void): HTMLButtonElement {
    const b = h("button", { type: "button", ...attrs, onclick }, label);
    buttons.push(b);
    return b;
  }

  function busy(on: boolean): void {
    progress.hidden = !on;
    for (const b of buttons) if (b.isConnected) b.disabled = on;
  }

  function refusal(err: unknown): void {
    if (!(err instanceof ApiError)) {
      clear(error, (err as Error).message);
      return;
    }
    const details = err.details as { resolver?: string } | undefined;
    if (details?.resolver) {
      // the resolver's own text, as it wrote it, says which requirement conflicts with what
      clear(error, h("p", null, "The requirements cannot be resolved, and nothing changed. uv says:"), h("pre", { class: "mono small resolver", tabindex: "0" }, details.resolver));
    } else {
      clear(error, h("p", null, err.message));
    }
  }

  /** Send the whole list; true once the server has set it (false: refused, its words shown). */
  async function change(requirements: string[]): Promise<boolean> {
    clear(error);
    busy(true);
    try {
      show(await api.put(path, { dependencies: requirements }));
      return true;
    } catch (err) {
      refusal(err);
      return false;
    } finally {
      busy(false);
    }
  }

  async function load(): Promise<void> {
    try {
      show(await api.get(path));
    } catch (err) {
      refusal(err);
    }
  }

  const addInput = h("input", { id: "deps-add", class: "mono", placeholder: "requests==2.32.3", autocomplete: "off", spellcheck: "false", required: true });
  const addForm = h(
    "form",
    {
      class: "inline access-form",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const added = addInput.value.trim();
        if (!added) return;
        const name = requirementName(added);
        const before = current;
        await change([...current.filter((r) => requirementName(r) !== name), added]);
        // cleared once added, unless the user has typed the next one meanwhile (the change took a while)
        if (current !== before && addInput.value.trim() === added) addInput.value = "";
      },
    },
    h("label", { class: "label", for: "deps-add" }, "Requirement"),
    addInput,
    h("button", { class: "btn", type: "submit" }, "Add"),
  );
  buttons.push(addForm.querySelector("button")!);

  const allInput = h("textarea", { id: "deps-all", class: "mono", rows: "4", spellcheck: "false" });
  const setForm = h(
    "form",
    {
      class: "stack",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const sent = allInput.value;
        const before = allWritten;
        allWritten = sent; // its answer may replace it with the requirements as set
        const set = await change(
          sent
            .split("\n")
            .map((line) => line.trim())
            .filter(Boolean),
        );
        if (!set && allWritten === sent) allWritten = before; // refused: the text stays the user's
      },
    },
    h("label", { class: "label", for: "deps-all" }, "All requirements, one a line"),
    allInput,
    h("div", null, h("button", { class: "btn", type: "submit" }, "Set all")),
  );
  buttons.push(setForm.querySelector("button")!);

  const table = (headers: string[], body: HTMLElement) =>
    h("table", { class: "table" }, h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x || h("span", { class: "sr-only" }, "Actions"))))), body);

  clear(
    container,
    summary,
    h(
      "section",
      { class: "panel access", "aria-labelledby": "deps-requirements-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "deps-requirements-title" }, "Requirements"), h("span", { class: "muted small" }, "Names with version ranges, as pip writes them; resolved by uv.")),
      h("div", { class: "panel-body" }, table(["Requirement", ""], requirementsBody), addForm, setForm, progress, error),
    ),
    h(
      "section",
      { class: "panel access", "aria-labelledby": "deps-lock-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "deps-lock-title" }, "Lock"), h("span", { class: "muted small" }, "What every function saved from now on runs with: exact versions and hashes.")),
      h("div", { class: "panel-body" }, table(["Package", "Version"], lockBody), lockDetails),
    ),
  );
  void load();
}
