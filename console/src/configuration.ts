// The configuration page of one environment: plain settings (values shown to developers and above),
// secrets by name only (set-only: a value goes in and never comes back), and the version history with
// rollback. Everything goes through the same API as `fnstage config` and `fnstage secret`; the API
// decides who may change what (dev: developers, staging and prod: releasers) and words every refusal.

import { api, ApiError, type Configuration, type ConfigVersion, gw, type Schemas } from "./api";
import { clear, ENV_LABEL, ENVS, h, timeAgo } from "./util";

function fail(target: HTMLElement, err: unknown): void {
  target.textContent = err instanceof ApiError || err instanceof Error ? err.message : String(err);
}

/** Empty the fields of a form whose change has answered, unless the user has typed the next one since it
 * was sent (the answer can take a while): what they typed is theirs, and stays. */
function clearIfUnchanged(fields: HTMLInputElement[], sent: readonly string[]): void {
  if (fields.every((field, i) => field.value === sent[i])) for (const field of fields) field.value = "";
}

export function configHref(gatewayHref: string, env: string): string {
  return `${gatewayHref}/config/${encodeURIComponent(env)}`;
}

export function renderConfiguration(container: HTMLElement, gateway: string, env: string, hrefOf: (env: string) => string): void {
  const base = `${gw(gateway)}/config/${encodeURIComponent(env)}`;
  const summary = h("p", { class: "muted small", "aria-live": "polite" });
  const configBody = h("tbody");
  const secretsBody = h("tbody");
  const historyBody = h("tbody");
  const configError = h("p", { class: "error-text", role: "alert" });
  const secretsError = h("p", { class: "error-text", role: "alert" });
  const historyError = h("p", { class: "error-text", role: "alert" });
  const scope = (fn: string | null) => (fn ? h("span", { class: "mono" }, fn) : h("span", { class: "muted" }, "every function"));
  const scopeQuery = (fn: string | null) => (fn ? `?function=${encodeURIComponent(fn)}` : "");

  async function load(): Promise<void> {
    let view: Configuration;
    let versions: ConfigVersion[];
    try {
      [view, versions] = await Promise.all([api.get<Configuration>(base), api.get<Schemas["ConfigHistory"]>(`${base}/history`).then((d) => d.versions)]);
    } catch (err) {
      fail(configError, err);
      return;
    }
    summary.textContent = view.version
      ? `Version ${view.version}, ${timeAgo(view.updated_at)} by ${view.updated_by}. Changes are live without a restart; promotion never copies them.`
      : `${ENV_LABEL[env]} has no configuration yet.`;
    clear(
      configBody,
      view.config.length
        ? view.config.map((c) =>
            h(
              "tr",
              { "data-key": c.key },
              h("td", { class: "mono" }, c.key),
              h("td", null, scope(c.function)),
              h("td", { class: "mono" }, "value" in c ? JSON.stringify(c.value) : h("span", { class: "muted" }, "hidden from viewers")),
              h(
                "td",
                { class: "actions" },
                h(
                  "button",
                  {
                    class: "btn ghost small",
                    type: "button",
                    "aria-label": `Unset ${c.key}`,
                    onclick: async () => {
                      if (!window.confirm(`Unset ${c.key} in ${env}? Functions reading it fail from the next request.`)) return;
                      configError.textContent = "";
                      try {
                        await api.patch(base, { unset: [c.key], function: c.function });
                      } catch (err) {
                        fail(configError, err);
                      }
                      await load();
                    },
                  },
                  "Unset",
                ),
              ),
            ),
          )
        : h("tr", null, h("td", { colspan: "4", class: "muted" }, "No settings.")),
    );
    clear(
      secretsBody,
      view.secrets.length
        ? view.secrets.map((s) =>
            h(
              "tr",
              { "data-key": s.key },
              h("td", { class: "mono" }, s.key),
              h("td", null, scope(s.function)),
              h("td", { class: "mono", title: "The value is never shown: this fingerprint tells two values apart." }, `•••••••• ${s.fingerprint}`),
              h("td", { class: "muted" }, `${timeAgo(s.set_at)} by ${s.set_by}`),
              h(
                "td",
                { class: "actions" },
                h(
                  "button",
                  {
                    class: "btn ghost small",
                    type: "button",
                    "aria-label": `Remove the secret ${s.key}`,
                    onclick: async () => {
                      if (!window.confirm(`Remove the secret ${s.key} from ${env}?`)) return;
                      secretsError.textContent = "";
                      try {
                        await api.del(`${gw(gateway)}/secrets/${encodeURIComponent(env)}/${encodeURIComponent(s.key)}${scopeQuery(s.function)}`);
                      } catch (err) {
                        fail(secretsError, err);
                      }
                      await load();
                    },
                  },
                  "Remove",
                ),
              ),
            ),
          )
        : h("tr", null, h("td", { colspan: "5", class: "muted" }, "No secrets.")),
    );
    clear(
      historyBody,
      versions.map((v) =>
        h(
          "tr",
          { "data-version": String(v.version), class: v.version === view.version ? "current" : "" },
          h("td", { class: "num" }, String(v.version)),
          h("td", null, v.kind),
          h("td", { class: "muted" }, `${timeAgo(v.created_at)} by ${v.actor}`),
          h("td", { class: "mono small" }, v.changes.map((c) => `${c.op === "set" ? "+" : "−"}${c.type} ${c.key}${c.function ? ` (${c.function})` : ""}`).join(", ")),
          h("td", { class: "note" }, v.note ?? ""),
          h(
            "td",
            { class: "actions" },
            v.version === view.version
              ? null
              : h(
                  "button",
                  {
                    class: "btn ghost small",
                    type: "button",
                    "aria-label": `Roll back to version ${v.version}`,
                    onclick: async () => {
                      if (!window.confirm(`Restore ${env}'s configuration version ${v.version}, as a new version?`)) return;
                      historyError.textContent = "";
                      try {
                        await api.post(`${base}/rollback`, { to: v.version });
                      } catch (err) {
                        fail(historyError, err);
                      }
                      await load();
                    },
                  },
                  "Roll back",
                ),
          ),
        ),
      ),
    );
  }

  const keyInput = h("input", { id: "config-key", class: "mono", placeholder: "DATABASE_URL", autocomplete: "off", spellcheck: "false", required: true });
  const valueInput = h("input", { id: "config-value", class: "mono", placeholder: "postgresql://…", autocomplete: "off", spellcheck: "false" });
  const fnInput = h("input", { id: "config-function", class: "mono", placeholder: "every function", autocomplete: "off", spellcheck: "false" });
  const setConfig = h(
    "form",
    {
      class: "inline access-form config-form",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        configError.textContent = "";
        const sent = [keyInput.value, valueInput.value] as const;
        try {
          await api.patch(base, { set: { [sent[0].trim()]: sent[1] }, function: fnInput.value.trim() || null });
          clearIfUnchanged([keyInput, valueInput], sent);
        } catch (err) {
          fail(configError, err);
        }
        await load();
      },
    },
    h("label", { class: "label", for: "config-key" }, "Key"),
    keyInput,
    h("label", { class: "label", for: "config-value" }, "Value"),
    valueInput,
    h("label", { class: "label", for: "config-function" }, "Only for"),
    fnInput,
    h("button", { class: "btn", type: "submit" }, "Set"),
  );

  const secretKey = h("input", { id: "secret-key", class: "mono", placeholder: "STRIPE_KEY", autocomplete: "off", spellcheck: "false", required: true });
  const secretValue = h("input", { id: "secret-value", type: "password", autocomplete: "new-password", required: true });
  const secretFn = h("input", { id: "secret-function", class: "mono", placeholder: "every function", autocomplete: "off", spellcheck: "false" });
  const setSecret = h(
    "form",
    {
      class: "inline access-form config-form",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        secretsError.textContent = "";
        const value = secretValue.value;
        const key = secretKey.value;
        secretValue.value = ""; // out of the page at once, whatever the answer
        try {
          await api.put(`${gw(gateway)}/secrets/${encodeURIComponent(env)}/${encodeURIComponent(key.trim())}`, {
            value,
            function: secretFn.value.trim() || null,
          });
          clearIfUnchanged([secretKey, secretValue], [key, ""]); // a value typed since is kept with its key
        } catch (err) {
          fail(secretsError, err);
        }
        await load();
      },
    },
    h("label", { class: "label", for: "secret-key" }, "Key"),
    secretKey,
    h("label", { class: "label", for: "secret-value" }, "Value"),
    secretValue,
    h("label", { class: "label", for: "secret-function" }, "Only for"),
    secretFn,
    h("button", { class: "btn", type: "submit" }, "Set secret"),
  );

  const table = (headers: string[], body: HTMLElement) =>
    h("table", { class: "table" }, h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x || h("span", { class: "sr-only" }, "Actions"))))), body);

  clear(
    container,
    h(
      "nav",
      { class: "env-tabs", "aria-label": "Environment" },
      ENVS.map((e) => h("a", { href: hrefOf(e), class: `btn ghost small${e === env ? " selected" : ""}`, "aria-current": e === env ? "page" : undefined }, ENV_LABEL[e])),
    ),
    summary,
    h(
      "section",
      { class: "panel access", "aria-labelledby": "config-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "config-title" }, "Settings"), h("span", { class: "muted small" }, "ctx.config; a function's own value wins over every function's.")),
      h("div", { class: "panel-body" }, table(["Key", "For", "Value", ""], configBody), setConfig, configError),
    ),
    h(
      "section",
      { class: "panel access", "aria-labelledby": "secrets-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "secrets-title" }, "Secrets"), h("span", { class: "muted small" }, "ctx.secrets; encrypted, and never shown again once set.")),
      h("div", { class: "panel-body" }, table(["Key", "For", "Value", "Set", ""], secretsBody), setSecret, secretsError),
    ),
    h(
      "section",
      { class: "panel access", "aria-labelledby": "config-history-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "config-history-title" }, "History"), h("span", { class: "muted small" }, "Every change is a version; a rollback restores one as a new version.")),
      h("div", { class: "panel-body" }, table(["Version", "Kind", "Who", "Changes", "Note", ""], historyBody), historyError),
    ),
  );
  void load();
}
