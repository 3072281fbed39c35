// An environment's history: semver, when, who, kind, note; diff any entry against current; roll back.

import { api, type Card, type GatewaySettings, gw, type HistoryEntry, pathOf, type Schemas } from "./api";
import { type LockChange, lockChangesList } from "./dependencies";
import { Sheet } from "./sheet";
import { clear, ENV_LABEL, ENVS, formatTime, h, icon, keepFocusIn, timeAgo } from "./util";

export interface HistoryContext {
  gateway: GatewaySettings;
  base: string;
  env: string;
  cards: Record<string, Card | null>;
  onRollback: (env: string, entry: HistoryEntry) => void;
}

export function openHistorySheet(ctx: HistoryContext): Sheet {
  const sheet = new Sheet({ title: `History of ${ctx.base}`, subtitle: "Every deployment, newest first: who, when, what and why.", wide: true });
  sheet.panel.classList.add("history-sheet");
  let env = ctx.env;
  let destroyDiff: (() => void) | null = null;
  const tabs = h("div", { class: "segmented", role: "radiogroup", "aria-label": "Environment" });
  const list = h("div", { class: "history-list", "aria-live": "polite" });
  const diffSection = h("section", { class: "diff-section", hidden: true, "aria-label": "Diff against current" });
  sheet.body.append(tabs, list, diffSection);
  sheet.footer.append(h("span"), h("button", { class: "btn", type: "button", onclick: () => sheet.close() }, "Close"));

  function renderTabs(): void {
    const hadFocus = tabs.contains(document.activeElement);
    clear(
      tabs,
      ENVS.map((e) =>
        h(
          "label",
          { class: "seg" },
          h("input", { type: "radio", name: "history-env", value: e, checked: e === env, onchange: () => {
              env = e;
              load();
            },
          }),
          h("span", null, ENV_LABEL[e]),
        ),
      ),
    );
    if (hadFocus) keepFocusIn(tabs);
  }

  let loadToken = 0; // answers can arrive out of order: only the last environment asked for is shown

  async function load(): Promise<void> {
    const token = ++loadToken;
    renderTabs();
    destroyDiff?.();
    diffSection.hidden = true;
    clear(list, h("p", { class: "muted" }, "Loading…"));
    let entries: HistoryEntry[];
    try {
      entries = (await api.get<Schemas["History"]>(`${gw(ctx.gateway.id)}/history/${env}/${pathOf(ctx.base)}?limit=30`)).entries;
    } catch (err) {
      if (token === loadToken) clear(list, h("p", { class: "muted" }, (err as Error).message));
      return;
    }
    if (token !== loadToken) return;
    const card = ctx.cards[env];
    const rows = entries.map((e) => {
      const isCurrent = card?.history_id === e.id;
      const canRollBack = Boolean(card) && !isCurrent && e.kind !== "delete";
      return h(
        "tr",
        { "data-id": String(e.id), class: isCurrent ? "current" : "" },
        h("td", { class: "mono" }, `v${e.semver}`, isCurrent ? h("span", { class: "pill live" }, "current") : null),
        h(
          "td",
          { class: "num" },
          e.url
            ? h("a", { href: e.url, target: "_blank", rel: "noopener", "aria-label": `Open version ${e.version} at its own URL`, title: e.url }, String(e.version))
            : String(e.version),
        ),
        h("td", { title: formatTime(e.created_at) }, timeAgo(e.created_at)),
        h("td", null, e.actor),
        h("td", null, h("span", { class: `pill kind kind-${e.kind}` }, e.kind)),
        h("td", { class: "note" }, e.note ?? h("span", { class: "muted" }, "—")),
        h("td", { class: "mono small", title: e.lock_hash ?? "no dependencies" }, e.lock_hash ? e.lock_hash.slice(0, 8) : h("span", { class: "muted" }, "none")),
        h(
          "td",
          { class: "actions" },
          h(
            "button",
            { class: "btn small ghost", type: "button", disabled: !card, "aria-label": `Diff v${e.semver} (#${e.id}) against ${env} current`, onclick: () => showDiff(e) },
            "Diff",
          ),
          h(
            "button",
            {
              class: "btn small",
              type: "button",
              disabled: !canRollBack,
              title: isCurrent ? `${env} runs this now` : undefined,
              "aria-label": `Roll back ${env} to v${e.semver} (#${e.id})`,
              onclick: () => {
                sheet.close(true);
                ctx.onRollback(env, e);
              },
            },
            icon("history"),
            "Roll back",
          ),
        ),
      );
    });
    clear(
      list,
      entries.length
        ? h(
            "table",
            { class: "table" },
            h("caption", { class: "sr-only" }, `History of ${env}/${ctx.base}`),
            h("thead", null, h("tr", null, ["Semver", "Version", "When", "Who", "Kind", "Note", "Lock", h("span", { class: "sr-only" }, "Actions")].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", null, rows),
          )
        : h("p", { class: "empty" }, `Nothing was ever deployed to ${env}.`),
    );
  }

  async function showDiff(e: HistoryEntry): Promise<void> {
    destroyDiff?.();
    diffSection.hidden = false;
    const card = ctx.cards[env];
    const a = `v${e.semver} (#${e.id}, ${timeAgo(e.created_at)})`;
    const b = `${ENV_LABEL[env]} current (v${card?.semver})`;
    const box = h("div", { class: "diff" }, h("p", { class: "muted" }, "Loading the diff…"));
    clear(diffSection, h("h3", null, "Diff ", h("span", { class: "muted" }, `${a} → ${b}`)), box);
    diffSection.scrollIntoView({ block: "start", behavior: "smooth" });
    try {
      const [mod, data] = await Promise.all([
        import("./diff"),
        api.get<Schemas["Diff"]>(`${gw(ctx.gateway.id)}/diff?a=${encodeURIComponent(`#${e.id}`)}&b=${encodeURIComponent(`${env}/${ctx.base}`)}`),
      ]);
      const changes = lockChangesList(data.lock as LockChange[]);
      if (changes) box.before(changes);
      destroyDiff = mod.renderDiff(box, data.files, { a, b });
    } catch (err) {
      clear(box, h("p", { class: "error-text", role: "alert" }, (err as Error).message));
    }
  }

  load();
  return sheet;
}
