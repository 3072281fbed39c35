// Try the function: method, query, body; the response and its ctx.log lines. The API process forwards
// the request to the runtime (`POST /console/try`): the runtime is another origin without CORS.

import { type ApiError, request } from "./api";
import { clear, ENV_LABEL, ENVS, h, icon, uid } from "./util";

export interface TryContext {
  gateway: string;
  base: string;
  runtimeUrl: string | null;
  envs: () => string[];
}

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

export function tryPanel(ctx: TryContext): HTMLElement {
  const ids = { env: uid("env"), method: uid("method"), query: uid("query"), body: uid("body") };
  const envSelect = h("select", { id: ids.env }, ENVS.map((e) => h("option", { value: e }, ENV_LABEL[e])));
  const methodSelect = h("select", { id: ids.method, onchange: () => toggleBody() }, METHODS.map((m) => h("option", { value: m }, m)));
  const queryInput = h("input", { id: ids.query, class: "mono", placeholder: "name=world", autocomplete: "off", spellcheck: "false" });
  const bodyInput = h("textarea", { id: ids.body, class: "mono", rows: "4", placeholder: '{"name": "world"}', spellcheck: "false" });
  const bodyField = h("div", { class: "field", hidden: true }, h("label", { class: "label", for: ids.body }, "Body (JSON or text)"), bodyInput);
  const url = h("code", { class: "url" });
  const output = h("div", { class: "try-output", "aria-live": "polite" }, h("p", { class: "muted" }, "Send a request to see the status, the response body and its ctx.log lines."));
  const sendBtn = h("button", { class: "btn primary", type: "submit" }, icon("play"), "Send");

  function toggleBody(): void {
    bodyField.hidden = !["POST", "PUT", "PATCH", "DELETE"].includes(methodSelect.value);
  }

  function updateUrl(): void {
    const port = ctx.runtimeUrl ? new URL(ctx.runtimeUrl).port : "";
    const q = queryInput.value.trim().replace(/^\?/, "");
    url.textContent = `http://${ctx.gateway}.${envSelect.value}.localhost${port ? `:${port}` : ""}/${ctx.base}${q ? `?${q}` : ""}`;
  }
  envSelect.addEventListener("change", updateUrl);
  queryInput.addEventListener("input", updateUrl);

  async function send(e: Event): Promise<void> {
    e.preventDefault();
    sendBtn.disabled = true;
    clear(output, h("p", { class: "muted" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Calling…"));
    const body = bodyField.hidden ? "" : bodyInput.value;
    let contentType: string | null = null;
    if (body.trim()) {
      try {
        JSON.parse(body);
        contentType = "application/json";
      } catch {
        contentType = "text/plain; charset=utf-8";
      }
    }
    try {
      const r = await request("POST", "/console/try", {
        gateway: ctx.gateway,
        name: `${envSelect.value}/${ctx.base}`,
        method: methodSelect.value,
        query: queryInput.value.trim().replace(/^\?/, ""),
        body,
        content_type: contentType,
      });
      if (!r.reached) {
        clear(output, h("p", { class: "error-text", role: "alert" }, icon("alert"), r.error), h("p", { class: "muted" }, "The runtime may not be running yet."));
        return;
      }
      let shown = r.body as string;
      try {
        shown = JSON.stringify(JSON.parse(shown), null, 2);
      } catch {
        /* not JSON: show as is */
      }
      const ok = r.status < 400;
      clear(
        output,
        h(
          "div",
          { class: "try-meta" },
          h("span", { class: `pill ${ok ? "live" : "failed"}`, "data-testid": "try-status" }, `${r.status}`),
          r.version ? h("span", { class: "muted" }, `version ${r.version}`) : null,
          h("span", { class: "muted" }, `${r.elapsed_ms} ms`),
        ),
        h("pre", { class: "try-body", "aria-label": "Response body", tabindex: "0" }, shown || "(empty body)"),
        h("h4", null, "ctx.log"),
        r.logs
          ? r.logs.lines.length || r.logs.error
            ? h("pre", { class: "try-logs", "aria-label": "Log lines", tabindex: "0" }, [...r.logs.lines, r.logs.error ?? ""].filter(Boolean).join("\n"))
            : h("p", { class: "muted" }, "No log lines.")
          : h("p", { class: "muted" }, "logs not available yet"),
      );
    } catch (err) {
      clear(output, h("p", { class: "error-text", role: "alert" }, icon("alert"), (err as ApiError).message));
    } finally {
      sendBtn.disabled = false;
    }
  }

  updateUrl();
  return h(
    "form",
    { class: "panel try", "aria-labelledby": "try-title", onsubmit: send },
    h("div", { class: "panel-head" }, h("h2", { id: "try-title" }, "Try it"), url),
    h(
      "div",
      { class: "try-row" },
      h("div", { class: "field" }, h("label", { class: "label", for: ids.env }, "Environment"), envSelect),
      h("div", { class: "field" }, h("label", { class: "label", for: ids.method }, "Method"), methodSelect),
    ),
    h("div", { class: "field" }, h("label", { class: "label", for: ids.query }, "Query"), queryInput),
    bodyField,
    h("div", { class: "form-actions" }, sendBtn),
    output,
  );
}
