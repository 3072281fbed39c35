// A function's invocations, live: status, duration, version and request id, newest first; a request id
// opens its ctx.log lines and traceback. Read from the durable log (/logs, then `after` its cursor).

import { api, type GatewaySettings, gw, type Invocation, type Invocations, pathOf } from "./api";
import { Sheet } from "./sheet";
import { clear, ENV_LABEL, ENVS, formatTime, h, keepFocusIn } from "./util";

export interface LogsContext {
  gateway: GatewaySettings;
  base: string;
  env: string;
}

const POLL_MS = 1000;
const KEEP = 200;

export function openLogsSheet(ctx: LogsContext): Sheet {
  let timer: number | undefined;
  let generation = 0;
  const stop = (): void => window.clearTimeout(timer);
  const sheet = new Sheet({
    title: `Logs of ${ctx.base}`,
    subtitle: "Every invocation, live: open a request id for its lines and traceback.",
    wide: true,
    onClose: () => {
      generation++;
      stop();
    },
  });
  sheet.panel.classList.add("logs-sheet");
  let env = ctx.env;
  let shown: Invocation[] = [];
  let cursor = 0;
  const tabs = h("div", { class: "segmented", role: "radiogroup", "aria-label": "Environment" });
  const errorsOnly = h("input", { type: "checkbox", onchange: () => load() }) as HTMLInputElement;
  const list = h("div", { class: "logs-list", "aria-live": "polite" });
  let window_: "hour" | "day" = "hour";
  const charts = h("section", { class: "charts", "aria-label": "Charts" });
  const spans = h(
    "div",
    { class: "segmented", role: "radiogroup", "aria-label": "Chart window" },
    (["hour", "day"] as const).map((w) =>
      h("label", { class: "seg" }, h("input", { type: "radio", name: "chart-window", value: w, checked: w === window_, onchange: () => { window_ = w; drawCharts(); } }), h("span", null, w === "hour" ? "Last hour" : "Last day")),
    ),
  );
  sheet.body.append(h("div", { class: "logs-bar" }, tabs, spans, h("label", { class: "check" }, errorsOnly, " Errors only")), charts, list);

  async function drawCharts(): Promise<void> {
    const mod = await import("./charts");
    await mod.renderCharts(charts, ctx.gateway, env, ctx.base, window_);
  }
  sheet.footer.append(h("span", { class: "muted" }, "Updates every second"), h("button", { class: "btn", type: "button", onclick: () => sheet.close() }, "Close"));

  function renderTabs(): void {
    const hadFocus = tabs.contains(document.activeElement);
    clear(
      tabs,
      ENVS.map((e) =>
        h("label", { class: "seg" }, h("input", { type: "radio", name: "logs-env", value: e, checked: e === env, onchange: () => { env = e; load(); } }), h("span", null, ENV_LABEL[e])),
      ),
    );
    if (hadFocus) keepFocusIn(tabs);
  }

  function path(): string {
    return `${gw(ctx.gateway.id)}/logs/${env}/${pathOf(ctx.base)}?limit=${KEEP}${errorsOnly.checked ? "&status=error" : ""}`;
  }

  function row(e: Invocation): HTMLElement {
    const failed = e.status >= 500;
    const details = h("pre", { class: "try-logs", hidden: true, tabindex: "0", "aria-label": `Lines of ${e.request_id}` }, [...e.lines, e.error ?? ""].filter(Boolean).join("\n") || "(nothing logged)");
    const open = h(
      "button",
      { class: "btn small ghost mono", type: "button", "aria-expanded": "false", "data-request-id": e.request_id, onclick: () => {
          details.hidden = !details.hidden;
          open.setAttribute("aria-expanded", String(!details.hidden));
        },
      },
      e.request_id,
    );
    return h(
      "div",
      { class: `logs-entry${failed ? " failed" : ""}`, "data-request-id": e.request_id },
      h("span", { class: `pill ${failed ? "kind-delete" : "live"}` }, String(e.status)),
      h("span", { class: "muted", title: formatTime(new Date(e.time * 1000).toISOString()) }, new Date(e.time * 1000).toLocaleTimeString()),
      h("span", { class: "num" }, `${e.duration_ms.toFixed(1)} ms`),
      h("span", { class: "mono" }, `v${e.version}`),
      e.trigger ? h("span", { class: "pill" }, `trigger ${e.trigger}`) : null,
      open,
      details,
    );
  }

  function render(): void {
    clear(list, shown.length ? shown.map(row) : h("p", { class: "empty" }, `No invocations of ${env}/${ctx.base} recorded yet.`));
  }

  async function poll(mine: number): Promise<void> {
    try {
      const data = await api.get<Invocations>(`${path()}&after=${cursor}`);
      if (mine !== generation) return;
      const fresh = data.invocations.reverse();
      if (fresh.length) {
        shown = [...fresh, ...shown].slice(0, KEEP);
        render();
      }
      cursor = Math.max(cursor, data.cursor);
    } catch {
      // a poll that fails (the API restarting) is simply tried again
    }
    if (mine === generation && sheet.panel.isConnected) timer = window.setTimeout(() => poll(mine), POLL_MS);
  }

  async function load(): Promise<void> {
    const mine = ++generation;
    stop();
    renderTabs();
    clear(list, h("p", { class: "muted" }, "Loading…"));
    try {
      const data = await api.get<Invocations>(path());
      if (mine !== generation) return;
      shown = data.invocations;
      cursor = data.cursor;
      render();
      drawCharts();
    } catch (err) {
      clear(list, h("p", { class: "muted" }, (err as Error).message));
    }
    if (mine === generation) timer = window.setTimeout(() => poll(mine), POLL_MS);
  }

  load();
  return sheet;
}
