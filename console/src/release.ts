// The release sheet: source environment and version (current or any history entry), target (forward
// only; a history entry may also go back into its own environment: a rollback), new semver, note, the
// side-by-side diff of source vs target, then progress until the runtimes confirm.

import { api, type ApiError, type Card, type FileDiff, type GatewaySettings, gw, type HistoryEntry, pathOf, type Rollout, type Schemas } from "./api";
import { type LockChange, lockChangesList } from "./dependencies";
import { Sheet } from "./sheet";
import { clear, ENV_LABEL, ENVS, h, icon, keepFocusIn, sleep, timeAgo, uid } from "./util";

export interface ReleaseContext {
  gateway: GatewaySettings;
  base: string;
  cards: Record<string, Card | null>;
  sourceEnv: string;
  sourceHistoryId?: number | null;
  target?: string;
  onReleased: (target: string) => void;
}

/** Where a source may be released, as the server's release policy answers it
 * (GET .../release-options/{base}); the sheet shows it and never applies the rules itself. */
type ReleaseOptions = Schemas["ReleaseOptions"];

export function entryLabel(e: HistoryEntry): string {
  return `v${e.semver} (${timeAgo(e.created_at)})${e.note ? ` - ${e.note}` : ""}`;
}

export function openReleaseSheet(ctx: ReleaseContext): Sheet {
  let inFlight = false;
  const sheet = new Sheet({
    title: `Release ${ctx.base}`,
    subtitle: `Gateway ${ctx.gateway.id}: code moves forward dev → staging → prod; every release carries a note and a greater semver.`,
    wide: true,
    canClose: () => !inFlight,
  });
  sheet.panel.classList.add("release-sheet");

  let sourceEnv = ctx.sourceEnv;
  let source: "current" | number = ctx.sourceHistoryId ?? "current";
  let target = "";
  let entries: HistoryEntry[] = [];
  let semverTouched = false;
  let options: ReleaseOptions | null = null; // where the current source may go, per the server
  let optionsToken = 0;
  let checked: { value: string; problems: Record<string, string | null> } | null = null; // the last semver the server checked
  let checkTimer = 0;
  let checkToken = 0;
  let diffToken = 0;
  let destroyDiff: (() => void) | null = null;

  const ids = { semver: uid("semver"), note: uid("note"), version: uid("version"), semverHint: uid("hint"), noteHint: uid("hint") };
  const sourceEnvGroup = h("div", { class: "segmented", role: "radiogroup", "aria-label": "Source environment" });
  const versionSelect = h("select", { id: ids.version, onchange: () => {
    source = versionSelect.value === "current" ? "current" : Number(versionSelect.value);
    if (target === sourceEnv && source === "current") target = "";
    void loadOptions();
    loadDiff();
  } });
  const targetGroup = h("div", { class: "targets", role: "radiogroup", "aria-label": "Target environment" });
  const semverInput = h("input", {
    id: ids.semver,
    class: "mono",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": ids.semverHint,
    oninput: () => {
      semverTouched = true;
      checkSemver();
    },
  });
  const semverHint = h("p", { class: "hint", id: ids.semverHint });
  const noteInput = h("textarea", {
    id: ids.note,
    rows: "3",
    placeholder: "What changes for users, and why",
    "aria-describedby": ids.noteHint,
    required: true,
    oninput: () => validate(),
  });
  const noteHint = h("p", { class: "hint", id: ids.noteHint }, "Required. Shown on the environment card and in its history.");
  // a canary release (issue 14): the target serves the new version to a share of requests first
  const canaryIds = { on: uid("canary"), share: uid("share"), bake: uid("bake"), hint: uid("canary-hint") };
  const canaryShare = h("input", { id: canaryIds.share, type: "number", min: "1", max: "99", value: "10", class: "mono short", disabled: true, "aria-describedby": canaryIds.hint });
  const canaryBake = h("input", { id: canaryIds.bake, value: "10m", class: "mono short", autocomplete: "off", spellcheck: "false", disabled: true, "aria-describedby": canaryIds.hint });
  const canaryOn = h("input", {
    id: canaryIds.on,
    type: "checkbox",
    onchange: () => {
      canaryShare.disabled = canaryBake.disabled = !canaryOn.checked;
    },
  });
  const canaryHint = h(
    "p",
    { class: "hint", id: canaryIds.hint },
    "The target serves the new version to this share of requests for the bake time (30s, 10m, 1h), then all of them; it is rolled back by itself if it fails more, or is slower, than the current version.",
  );
  const requiredBox = h("div", { class: "required-keys", "aria-live": "polite" });
  const diffTitle = h("h3", null, "Changes");
  const diffBox = h("div", { class: "diff", "aria-live": "polite" });
  const status = h("div", { class: "release-status", role: "status", "aria-live": "polite" });
  const releaseBtn = h("button", { class: "btn primary", type: "button", disabled: true, onclick: () => submit() }, icon("rocket"), "Release");
  const cancelBtn = h("button", { class: "btn", type: "button", onclick: () => sheet.close() }, "Cancel");

  sheet.body.append(
    h(
      "div",
      { class: "release-form" },
      h("div", { class: "field" }, h("span", { class: "label", id: uid("l") }, "Source environment"), sourceEnvGroup),
      h("div", { class: "field" }, h("label", { class: "label", for: ids.version }, "Source version"), versionSelect),
      h("div", { class: "field span2" }, h("span", { class: "label" }, "Target environment"), targetGroup),
      h("div", { class: "field" }, h("label", { class: "label", for: ids.semver }, "New semver"), semverInput, semverHint),
      h("div", { class: "field" }, h("label", { class: "label", for: ids.note }, "Release note"), noteInput, noteHint),
      h(
        "div",
        { class: "field span2 canary-field" },
        h("label", { class: "check", for: canaryIds.on }, canaryOn, " Canary release"),
        h("label", { class: "label", for: canaryIds.share }, "Share (%)"),
        canaryShare,
        h("label", { class: "label", for: canaryIds.bake }, "Bake time"),
        canaryBake,
        canaryHint,
      ),
    ),
    requiredBox,
    h("section", { class: "diff-section", "aria-label": "Differences between source and target" }, diffTitle, diffBox),
  );
  sheet.footer.append(status, h("div", { class: "footer-buttons" }, cancelBtn, releaseBtn));

  function targetOption(env: string): Schemas["TargetOption"] | null {
    return options?.targets.find((o) => o.env === env) ?? null;
  }

  function targetRefusal(env: string): string | null {
    if (!options) return "checking where this code may go…";
    return targetOption(env)?.refusal ?? null;
  }

  function optionsUrl(semverValue?: string): string {
    const query = new URLSearchParams(source === "current" ? { source_env: sourceEnv } : { source_history_id: String(source) });
    if (semverValue) query.set("semver", semverValue);
    return `${gw(ctx.gateway.id)}/release-options/${pathOf(ctx.base)}?${query}`;
  }

  /** Ask the server where the chosen source may go, why not elsewhere, and which semver to suggest. */
  async function loadOptions(): Promise<void> {
    const token = ++optionsToken;
    options = null;
    checked = null;
    renderTargets();
    try {
      const answer = await api.get<ReleaseOptions>(optionsUrl());
      if (token !== optionsToken) return;
      options = answer;
    } catch (err) {
      if (token === optionsToken) status.textContent = `Could not load where this code may go: ${(err as Error).message}`;
      return;
    }
    renderTargets();
    loadDiff();
  }

  /** The server checks the typed semver against every target (debounced); until it answers, Release waits. */
  function checkSemver(): void {
    window.clearTimeout(checkTimer);
    const value = semverInput.value.trim();
    if (value && checked?.value !== value) {
      checkTimer = window.setTimeout(async () => {
        const token = ++checkToken;
        try {
          const answer = await api.get<ReleaseOptions>(optionsUrl(value));
          if (token !== checkToken || semverInput.value.trim() !== value) return;
          checked = { value, problems: Object.fromEntries(answer.targets.map((o) => [o.env, o.semver_problem])) };
        } catch (err) {
          if (token === checkToken) status.textContent = `Could not check the semver: ${(err as Error).message}`;
          return;
        }
        validate();
      }, 150);
    }
    validate();
  }

  function renderSourceEnvs(): void {
    const hadFocus = sourceEnvGroup.contains(document.activeElement);
    clear(
      sourceEnvGroup,
      ENVS.map((env) => {
        const card = ctx.cards[env];
        const input = h("input", {
          type: "radio",
          name: "source-env",
          value: env,
          checked: env === sourceEnv,
          disabled: !card,
          onchange: () => {
            sourceEnv = env;
            source = "current";
            target = "";
            semverTouched = false;
            loadHistory();
          },
        });
        return h("label", { class: "seg", title: card ? undefined : `nothing is deployed in ${env}` }, input, h("span", null, ENV_LABEL[env]));
      }),
    );
    if (hadFocus) keepFocusIn(sourceEnvGroup);
  }

  async function loadHistory(): Promise<void> {
    renderSourceEnvs();
    void loadOptions();
    const card = ctx.cards[sourceEnv];
    clear(versionSelect, h("option", { value: "current" }, card ? `Current: v${card.semver} (version ${card.version})` : "Current"));
    entries = [];
    renderTargets();
    loadDiff();
    try {
      const data = await api.get<Schemas["History"]>(`${gw(ctx.gateway.id)}/history/${sourceEnv}/${pathOf(ctx.base)}?limit=30`);
      entries = data.entries;
    } catch (err) {
      status.textContent = `Could not load ${sourceEnv}'s history: ${(err as Error).message}`;
    }
    for (const e of entries) {
      if (e.kind === "delete") continue;
      versionSelect.append(h("option", { value: String(e.id), selected: source === e.id }, `${entryLabel(e)} · #${e.id}`));
    }
    versionSelect.value = String(source);
    if (versionSelect.value !== String(source)) {
      source = "current";
      versionSelect.value = "current";
    }
    renderTargets();
  }

  function renderTargets(): void {
    const hadFocus = targetGroup.contains(document.activeElement);
    const allowed = ENVS.filter((env) => !targetRefusal(env));
    if (options && (!target || targetRefusal(target))) {
      target = ctx.target && !targetRefusal(ctx.target) ? ctx.target : options.default_target ?? allowed[0] ?? "";
      ctx.target = undefined;
      semverTouched = false;
    }
    clear(
      targetGroup,
      ENVS.map((env) => {
        const refusal = targetRefusal(env);
        const current = ctx.cards[env];
        const reasonId = uid("reason");
        const nameId = uid("target-name");
        return h(
          "label",
          { class: `target${refusal ? " disabled" : ""}${env === target ? " selected" : ""}`, "data-env": env },
          h("input", {
            type: "radio",
            name: "target-env",
            value: env,
            checked: env === target,
            disabled: Boolean(refusal),
            "aria-labelledby": nameId,
            "aria-describedby": reasonId,
            onchange: () => {
              target = env;
              semverTouched = false;
              renderTargets();
              loadDiff();
            },
          }),
          h(
            "span",
            { class: "target-text" },
            h("span", { class: `env-name env-${env}`, id: nameId }, ENV_LABEL[env], targetOption(env)?.is_rollback ? " (roll back)" : ""),
            h("span", { class: "reason", id: reasonId }, refusal ?? (current ? `now v${current.semver}` : "nothing deployed yet")),
          ),
        );
      }),
    );
    if (hadFocus) keepFocusIn(targetGroup);
    if (!semverTouched) semverInput.value = (target && targetOption(target)?.suggested_semver) || "";
    checkSemver();
  }

  function sourceSemver(): string | null {
    if (source === "current") return ctx.cards[sourceEnv]?.semver ?? null;
    return entries.find((e) => e.id === source)?.semver ?? null;
  }

  /** What the server said is wrong with the typed semver for the chosen target (null: fine, or not checked yet). */
  function semverProblem(): string | null {
    const value = semverInput.value.trim();
    if (!target) return null;
    if (!value) return "enter a new semver";
    return checked?.value === value ? checked.problems[target] ?? null : null;
  }

  function problems(): string[] {
    const out: string[] = [];
    if (!target) out.push("choose a target environment");
    const problem = semverProblem();
    if (problem) out.push(problem);
    else if (target && checked?.value !== semverInput.value.trim()) out.push("wait while the server checks the semver");
    if (!noteInput.value.trim()) out.push("write a release note");
    return out;
  }

  function validate(): boolean {
    const list = problems();
    const current = target ? targetOption(target)?.current_semver : null;
    const problem = semverProblem();
    semverHint.textContent = problem ? problem : current ? `Must be greater than ${current} (${target} now).` : "The first release of this function here.";
    semverHint.classList.toggle("field-error", Boolean(problem && semverInput.value.trim()));
    semverInput.setAttribute("aria-invalid", String(Boolean(problem && semverInput.value.trim())));
    releaseBtn.disabled = inFlight || list.length > 0;
    if (!inFlight && !status.dataset.sticky) status.textContent = list.length ? `To release: ${list.join("; ")}.` : "Ready to release.";
    return list.length === 0;
  }

  /** The keys the code declares (CONFIG, SECRETS) and whether the target has each: a release missing one
   * is refused by the server, so the sheet says so before. */
  async function loadRequired(token: number): Promise<void> {
    clear(requiredBox);
    if (!target) return;
    const query = source === "current" ? `source=${encodeURIComponent(sourceEnv)}` : `history_id=${source}`;
    let data: Schemas["RequiredKeys"];
    try {
      data = await api.get<Schemas["RequiredKeys"]>(`${gw(ctx.gateway.id)}/config/${encodeURIComponent(target)}/required/${pathOf(ctx.base)}?${query}`);
    } catch (err) {
      if (token === diffToken) clear(requiredBox, h("p", { class: "error-text", role: "alert" }, (err as Error).message));
      return;
    }
    if (token !== diffToken) return;
    const items = [...data.config.map((c) => ({ ...c, kind: "config" })), ...data.secrets.map((c) => ({ ...c, kind: "secret" }))];
    if (!items.length) return;
    const configPage = `#/g/${encodeURIComponent(ctx.gateway.id)}/config/${encodeURIComponent(target)}`;
    clear(
      requiredBox,
      h("h3", null, `Configuration ${ENV_LABEL[target]} needs`),
      h(
        "ul",
        { class: "required-list" },
        items.map((i) =>
          h("li", { "data-key": i.key, class: i.present ? "present" : "missing" }, icon(i.present ? "check" : "alert"), h("span", { class: "mono" }, `${i.kind} ${i.key}`), i.present ? ` set in ${target}` : ` missing in ${target}`),
        ),
      ),
      data.missing.length
        ? h("p", { class: "error-text", role: "alert" }, `${ENV_LABEL[target]} lacks ${data.missing.join(", ")}: the release will be refused. `, h("a", { href: configPage }, `Set them on ${target}'s configuration page`), ".")
        : null,
    );
  }

  async function loadDiff(): Promise<void> {
    const token = ++diffToken;
    void loadRequired(token);
    destroyDiff?.();
    destroyDiff = null;
    if (!target) {
      clear(diffBox, h("p", { class: "muted" }, "Choose a target to see what changes."));
      return;
    }
    const sourceRef = source === "current" ? `${sourceEnv}/${ctx.base}` : `#${source}`;
    const sourceName = source === "current" ? `${ENV_LABEL[sourceEnv]} current (v${ctx.cards[sourceEnv]?.semver})` : `${ENV_LABEL[sourceEnv]} #${source} (v${sourceSemver()})`;
    const targetCard = ctx.cards[target];
    const targetName = targetCard ? `${ENV_LABEL[target]} now (v${targetCard.semver})` : `${ENV_LABEL[target]} (nothing yet)`;
    clear(diffTitle, "Changes ", h("span", { class: "muted" }, `${targetName} → ${sourceName}`));
    clear(diffBox, h("p", { class: "muted loading" }, "Loading the diff…"));
    try {
      const [mod, data] = await Promise.all([
        import("./diff"),
        targetCard
          ? api.get(`${gw(ctx.gateway.id)}/diff?a=${encodeURIComponent(`${target}/${ctx.base}`)}&b=${encodeURIComponent(sourceRef)}`)
          : source === "current"
            ? api.get(`${gw(ctx.gateway.id)}/functions/${sourceEnv}/${pathOf(ctx.base)}?files=true`)
            : api.get(`${gw(ctx.gateway.id)}/history-entries/${source}?files=true`),
      ]);
      if (token !== diffToken) return;
      const files: FileDiff[] = targetCard
        ? (data.files as FileDiff[])
        : Object.entries(data.files as Record<string, string>).map(([path, b]) => ({ path, status: "added" as const, a: null, b }));
      diffBox.parentElement?.querySelector(".lock-changes")?.remove();
      const changes = targetCard ? lockChangesList(data.lock as LockChange[]) : null;
      if (changes) diffBox.before(changes);
      destroyDiff = mod.renderDiff(diffBox, files, { a: targetName, b: sourceName });
    } catch (err) {
      if (token === diffToken) clear(diffBox, h("p", { class: "error-text", role: "alert" }, (err as Error).message));
    }
  }

  async function submit(): Promise<void> {
    if (!validate() || inFlight) return;
    inFlight = true;
    releaseBtn.disabled = true;
    cancelBtn.disabled = true;
    status.dataset.sticky = "1";
    const body: Record<string, unknown> = {
      target,
      semver: semverInput.value.trim(),
      note: noteInput.value.trim(),
    };
    if (canaryOn.checked) body.canary = { steps: [Number(canaryShare.value)], bake_s: bakeSeconds(canaryBake.value) };
    clear(status, h("span", { class: "spinner", "aria-hidden": "true" }), `Releasing to ${target}…`);
    try {
      const result =
        source === "current"
          ? await api.post<Schemas["Deployed"]>(`${gw(ctx.gateway.id)}/promote`, { name: `${sourceEnv}/${ctx.base}`, ...body })
          : await api.post<Schemas["Deployed"]>(`${gw(ctx.gateway.id)}/release`, { base: ctx.base, source_env: sourceEnv, source_history_id: source, ...body });
      const fn = result.function;
      if (result.canary) {
        const c = result.canary;
        inFlight = false;
        ctx.onReleased(target);
        clear(status, icon("check"), `Canary v${c.canary.semver} started: ${c.share}% of ${target}'s requests, ${Math.round(c.time_left_s)} s of baking.`);
        status.className = "release-status ok";
        cancelBtn.disabled = false;
        cancelBtn.textContent = "Close";
        if (!sheet.panel.contains(document.activeElement)) cancelBtn.focus();
        return;
      }
      const rollout = await waitForRuntimes(fn.env, fn.version, (r) =>
        clear(status, h("span", { class: "spinner", "aria-hidden": "true" }), `Released ${fn.name} v${fn.semver} (version ${fn.version}). Waiting for the runtimes: ${r.summary}`),
      );
      inFlight = false;
      ctx.onReleased(target);
      const confirmed = rollout?.done && rollout.failed === 0;
      clear(
        status,
        icon(confirmed ? "check" : "alert"),
        confirmed
          ? `Released ${fn.name} v${fn.semver}: ${rollout!.summary}${rollout!.latency_ms != null ? ` in ${Math.round(rollout!.latency_ms)} ms` : ""}.`
          : `Released ${fn.name} v${fn.semver} (version ${fn.version}); runtimes: ${rollout?.summary ?? "unknown"}.`,
      );
      status.className = `release-status ${confirmed ? "ok" : rollout?.failed ? "bad" : "warn"}`;
      cancelBtn.disabled = false;
      cancelBtn.textContent = "Close";
      if (!sheet.panel.contains(document.activeElement)) cancelBtn.focus(); // the disabled Release button lost it
      if (confirmed) setTimeout(() => sheet.close(), 900);
    } catch (err) {
      inFlight = false;
      cancelBtn.disabled = false;
      delete status.dataset.sticky;
      const e = err as ApiError;
      clear(status, h("span", { class: "error-text", role: "alert" }, icon("alert"), `Refused: ${e.message}`));
      status.className = "release-status bad";
      releaseBtn.disabled = false;
      if (!sheet.panel.contains(document.activeElement)) releaseBtn.focus();
      status.dataset.sticky = "1";
      const clearSticky = () => {
        delete status.dataset.sticky;
        status.className = "release-status";
        validate();
      };
      semverInput.addEventListener("input", clearSticky, { once: true });
      noteInput.addEventListener("input", clearSticky, { once: true });
    }
  }

  async function waitForRuntimes(env: string, version: number, progress: (r: Rollout) => void): Promise<Rollout | null> {
    const started = Date.now();
    let last: Rollout | null = null;
    while (Date.now() - started < 15000) {
      try {
        last = await api.get<Rollout>(`${gw(ctx.gateway.id)}/rollout/${env}/${pathOf(ctx.base)}?version=${version}`);
      } catch {
        return last;
      }
      progress(last);
      if (last.done) return last;
      if (last.runtimes.length === 0 && Date.now() - started > 2000) return last; // nothing will confirm
      await sleep(250);
    }
    return last;
  }

  sheet.panel.addEventListener("keydown", (e) => {
    if ((e.metaKey || e.ctrlKey) && e.key === "Enter") submit();
  });
  loadHistory();
  queueMicrotask(() => noteInput.focus());
  return sheet;
}

/** `30s`, `10m`, `1h` or a number of seconds -> seconds (the server checks the range and says so). */
function bakeSeconds(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$/.exec(text);
  if (!m) return Number.NaN;
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 } as Record<string, number>)[m[2] ?? "s"];
}
