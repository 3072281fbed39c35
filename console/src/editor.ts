// The function's files in one CodeMirror view: a tab per file (each with its own undo history),
// add/rename/delete, build problems shown as lint diagnostics at their file and line.

import { type Diagnostic, lintGutter, setDiagnostics } from "@codemirror/lint";
import { EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import type { Problem } from "./api";
import { pythonSetup } from "./cm";
import { append, clear, h, icon } from "./util";

export interface EditorCallbacks {
  onSave: () => void;
  onChange: () => void;
}

const FILE_RE = /^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$/;

export class FileEditor {
  readonly el: HTMLElement;
  private tabs: HTMLElement;
  private host: HTMLElement;
  private problemsEl: HTMLElement;
  private view: EditorView;
  private states = new Map<string, EditorState>();
  private loaded: Record<string, string> = {};
  private problems: Problem[] = [];
  private active = "";
  private naming: { mode: "add" | "rename"; error?: string } | null = null;
  entrypoint = "index.py";

  constructor(private callbacks: EditorCallbacks) {
    this.tabs = h("div", { class: "tabs" });
    this.problemsEl = h("div", { class: "problems", role: "alert", hidden: true });
    this.host = h("div", { class: "editor-host", id: "editor-panel", role: "tabpanel" });
    this.el = h("div", { class: "editor" }, this.tabs, this.problemsEl, this.host);
    this.view = new EditorView({ parent: this.host, state: EditorState.create({ doc: "" }) });
  }

  private extensions() {
    return [
      Prec.highest(
        keymap.of([
          {
            key: "Mod-s",
            preventDefault: true,
            run: () => {
              this.callbacks.onSave();
              return true;
            },
          },
        ]),
      ),
      ...pythonSetup(),
      lintGutter(),
      // tabindex: axe counts a scroller's contenteditable as not focusable (a long line scrolls sideways)
      EditorView.contentAttributes.of({ "aria-label": "Code editor", tabindex: "0" }),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) {
          this.callbacks.onChange();
          this.renderTabs();
        }
      }),
    ];
  }

  load(files: Record<string, string>, entrypoint: string): void {
    this.loaded = { ...files };
    this.entrypoint = entrypoint;
    this.states.clear();
    for (const [path, text] of Object.entries(files)) this.states.set(path, this.newState(text));
    this.problems = [];
    const first = files[entrypoint] !== undefined ? entrypoint : Object.keys(files).sort()[0];
    this.active = "";
    if (first) this.select(first);
    this.renderTabs();
    this.renderProblems();
  }

  private newState(text: string): EditorState {
    return EditorState.create({ doc: text, extensions: this.extensions() });
  }

  /** Current text of every file. */
  files(): Record<string, string> {
    this.stash();
    const out: Record<string, string> = {};
    for (const [path, state] of [...this.states.entries()].sort()) out[path] = state.doc.toString();
    return out;
  }

  paths(): string[] {
    return [...this.states.keys()].sort((a, b) => (a === this.entrypoint ? -1 : b === this.entrypoint ? 1 : a.localeCompare(b)));
  }

  dirty(): boolean {
    const now = this.files();
    const a = Object.keys(now);
    const b = Object.keys(this.loaded);
    return a.length !== b.length || a.some((p) => now[p] !== this.loaded[p]);
  }

  private fileDirty(path: string): boolean {
    const state = path === this.active ? this.view.state : this.states.get(path);
    return this.loaded[path] === undefined || state?.doc.toString() !== this.loaded[path];
  }

  /** After a save: what was sent is now the base. */
  markSaved(files: Record<string, string>): void {
    this.loaded = { ...files };
    this.setProblems([]);
    this.renderTabs();
  }

  private stash(): void {
    if (this.active && this.states.has(this.active)) this.states.set(this.active, this.view.state);
  }

  select(path: string, focus = false): void {
    if (!this.states.has(path)) return;
    this.stash();
    this.active = path;
    this.view.setState(this.states.get(path)!);
    this.applyDiagnostics();
    this.host.setAttribute("aria-label", `Editing ${path}`);
    this.renderTabs();
    if (focus) this.view.focus();
  }

  activePath(): string {
    return this.active;
  }

  focus(): void {
    this.view.focus();
  }

  setProblems(problems: Problem[]): void {
    this.problems = problems;
    this.stash();
    this.applyDiagnostics();
    this.renderProblems();
    this.renderTabs();
  }

  private diagnosticsFor(path: string, state: EditorState): Diagnostic[] {
    return this.problems
      .filter((p) => p.file === path)
      .map((p) => {
        const lineNo = Math.min(Math.max(p.line ?? 1, 1), state.doc.lines);
        const line = state.doc.line(lineNo);
        const from = Math.min(line.from + Math.max((p.col ?? 1) - 1, 0), line.to);
        const to = from < line.to ? line.to : Math.min(from + 1, state.doc.length);
        return { from, to: Math.max(to, from), severity: "error" as const, message: p.message, source: "build" };
      });
  }

  private applyDiagnostics(): void {
    for (const [path, state] of this.states) {
      if (path === this.active) continue;
      this.states.set(path, state.update(setDiagnostics(state, this.diagnosticsFor(path, state))).state);
    }
    if (this.active) this.view.dispatch(setDiagnostics(this.view.state, this.diagnosticsFor(this.active, this.view.state)));
  }

  goTo(problem: Problem): void {
    this.select(problem.file);
    const doc = this.view.state.doc;
    const line = doc.line(Math.min(Math.max(problem.line ?? 1, 1), doc.lines));
    const pos = Math.min(line.from + Math.max((problem.col ?? 1) - 1, 0), line.to);
    this.view.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
    this.view.focus();
  }

  private renderProblems(): void {
    this.problemsEl.hidden = this.problems.length === 0;
    clear(
      this.problemsEl,
      h("div", { class: "problems-title" }, icon("alert"), "Build failed: nothing was saved. Your text is kept."),
      h(
        "ul",
        null,
        this.problems.map((p) =>
          h(
            "li",
            null,
            h(
              "button",
              { class: "link problem", type: "button", onclick: () => this.goTo(p) },
              h("span", { class: "where" }, `${p.file}${p.line ? `:${p.line}` : ""}${p.col ? `:${p.col}` : ""}`),
              " ",
              p.message,
            ),
          ),
        ),
      ),
    );
  }

  private renderTabs(): void {
    const paths = this.paths();
    const tabs = paths.map((path) => {
      const hasProblem = this.problems.some((p) => p.file === path);
      const selected = path === this.active;
      return h(
        "button",
        {
          class: `tab${selected ? " selected" : ""}${hasProblem ? " has-problem" : ""}`,
          role: "tab",
          type: "button",
          "aria-selected": String(selected),
          "aria-controls": "editor-panel",
          tabindex: selected ? "0" : "-1",
          "data-path": path,
          title: path === this.entrypoint ? `${path} (entrypoint)` : path,
          onclick: () => this.select(path, true),
          onkeydown: (e: KeyboardEvent) => {
            const i = paths.indexOf(path);
            const next = e.key === "ArrowRight" ? paths[(i + 1) % paths.length] : e.key === "ArrowLeft" ? paths[(i - 1 + paths.length) % paths.length] : null;
            if (next) {
              e.preventDefault();
              this.select(next);
              (this.tabs.querySelector(`[data-path="${CSS.escape(next)}"]`) as HTMLElement | null)?.focus();
            }
          },
        },
        path,
        path === this.entrypoint ? h("span", { class: "entry-badge", "aria-label": "entrypoint" }, "main") : null,
        this.fileDirty(path) ? h("span", { class: "dot", title: "unsaved changes", "aria-label": "unsaved changes" }) : null,
      );
    });
    const actions = h("div", { class: "tab-actions" });
    if (this.naming) {
      const input = h("input", {
        class: "name-input",
        "aria-label": this.naming.mode === "add" ? "New file name" : `New name for ${this.active}`,
        placeholder: "helpers.py",
        value: this.naming.mode === "rename" ? this.active : "",
        onkeydown: (e: KeyboardEvent) => {
          if (e.key === "Enter") {
            e.preventDefault();
            this.commitName(input.value);
          } else if (e.key === "Escape") {
            this.naming = null;
            this.renderTabs();
          }
        },
      });
      append(actions, [
        input,
        h("button", { class: "btn small", type: "button", onclick: () => this.commitName(input.value) }, this.naming.mode === "add" ? "Add" : "Rename"),
        h("button", { class: "btn small ghost", type: "button", onclick: () => {
              this.naming = null;
              this.renderTabs();
            },
          }, "Cancel"),
        this.naming.error ? h("span", { class: "field-error", role: "alert" }, this.naming.error) : null,
      ]);
      queueMicrotask(() => {
        input.focus();
        if (this.naming?.mode === "rename") input.setSelectionRange(0, input.value.replace(/\.py$/, "").length);
      });
    } else {
      actions.append(
        h("button", { class: "btn small ghost", type: "button", onclick: () => this.startNaming("add") }, icon("plus"), "Add file"),
        h("button", { class: "btn small ghost", type: "button", "aria-label": `Rename ${this.active}`, disabled: !this.active, onclick: () => this.startNaming("rename") }, "Rename"),
        h(
          "button",
          {
            class: "btn small ghost danger",
            type: "button",
            "aria-label": `Delete ${this.active}`,
            disabled: !this.active || paths.length < 2,
            title: paths.length < 2 ? "a function needs at least one file" : undefined,
            onclick: () => this.deleteFile(this.active),
          },
          "Delete",
        ),
      );
    }
    clear(this.tabs, h("div", { class: "tab-list", role: "tablist", "aria-label": "Files of this function" }, tabs), actions);
  }

  private startNaming(mode: "add" | "rename"): void {
    this.naming = { mode };
    this.renderTabs();
  }

  private commitName(raw: string): void {
    const name = raw.trim();
    const mode = this.naming?.mode;
    const error = !name
      ? "enter a file name"
      : !FILE_RE.test(name) || name.includes("..")
        ? "use letters, digits, '_', '-', '.' and '/' (e.g. helpers.py)"
        : this.states.has(name) && !(mode === "rename" && name === this.active)
          ? `${name} already exists`
          : null;
    if (error) {
      this.naming = { mode: mode ?? "add", error };
      this.renderTabs();
      return;
    }
    this.naming = null;
    if (mode === "add") {
      this.states.set(name, this.newState(""));
      this.select(name, true);
    } else if (mode === "rename" && name !== this.active) {
      this.stash();
      const state = this.states.get(this.active)!;
      this.states.delete(this.active);
      this.states.set(name, state);
      if (this.entrypoint === this.active) this.entrypoint = name;
      this.active = "";
      this.select(name, true);
    }
    this.callbacks.onChange();
    this.renderTabs();
  }

  private deleteFile(path: string): void {
    if (this.states.size < 2) return;
    this.states.delete(path);
    if (path === this.active) {
      this.active = "";
      const next = this.paths()[0];
      if (next) this.select(next);
    }
    this.callbacks.onChange();
    this.renderTabs();
  }
}
