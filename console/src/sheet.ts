// A side sheet (a modal dialog sliding in from the right): labelled, Escape closes, focus comes back.

import { h, icon, uid } from "./util";

export interface SheetOptions {
  title: string;
  subtitle?: string;
  wide?: boolean;
  onClose?: () => void;
  /** return false to keep the sheet open (e.g. while a release is in flight) */
  canClose?: () => boolean;
}

export class Sheet {
  readonly body: HTMLElement;
  readonly footer: HTMLElement;
  readonly panel: HTMLElement;
  private root: HTMLElement;
  private returnFocus: Element | null;
  private closed = false;

  constructor(private options: SheetOptions) {
    this.returnFocus = document.activeElement;
    const titleId = uid("sheet-title");
    this.body = h("div", { class: "sheet-body" });
    this.footer = h("div", { class: "sheet-footer" });
    this.panel = h(
      "section",
      {
        class: `sheet${options.wide ? " wide" : ""}`,
        role: "dialog",
        "aria-modal": "true",
        "aria-labelledby": titleId,
        tabindex: "-1",
      },
      h(
        "div", // not <header>: a second banner landmark beside the page's
        { class: "sheet-header" },
        h("div", null, h("h2", { id: titleId }, options.title), options.subtitle ? h("p", { class: "muted" }, options.subtitle) : null),
        h("button", { class: "icon-btn", type: "button", "aria-label": "Close", onclick: () => this.close() }, icon("x")),
      ),
      this.body,
      this.footer,
    );
    this.root = h("div", { class: "sheet-root" }, h("div", { class: "scrim", onclick: () => this.close() }), this.panel);
    this.root.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !e.defaultPrevented) {
        e.preventDefault();
        this.close();
      } else if (e.key === "Tab") {
        this.trapFocus(e);
      }
    });
    document.body.append(this.root);
    document.body.classList.add("sheet-open");
    requestAnimationFrame(() => this.root.classList.add("open"));
    this.panel.focus();
  }

  private trapFocus(e: KeyboardEvent): void {
    const focusable = [...this.panel.querySelectorAll<HTMLElement>("button, input, select, textarea, summary, [tabindex='0'], .cm-content")].filter(
      (el) => !(el as HTMLButtonElement).disabled && el.offsetParent !== null,
    );
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (e.shiftKey && (document.activeElement === first || document.activeElement === this.panel)) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  }

  close(force = false): void {
    if (this.closed) return;
    if (!force && this.options.canClose && !this.options.canClose()) return;
    this.closed = true;
    this.root.remove();
    if (!document.querySelector(".sheet-root")) document.body.classList.remove("sheet-open");
    this.options.onClose?.();
    if (this.returnFocus instanceof HTMLElement) this.returnFocus.focus();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
