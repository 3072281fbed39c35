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

/** Focus the element that opened a sheet; when the page re-rendered it meanwhile (a release redraws the
 * cards), its replacement, found by the same id or accessible name; else the page's main content. */
function returnFocusTo(el: Element | null): void {
  let target = el instanceof HTMLElement && el.isConnected ? el : null;
  if (!target && el instanceof HTMLElement) {
    const label = el.getAttribute("aria-label");
    const selector = el.id ? `#${CSS.escape(el.id)}` : label ? `${el.tagName.toLowerCase()}[aria-label="${CSS.escape(label)}"]` : null;
    target = selector ? document.querySelector<HTMLElement>(selector) : null;
  }
  (target ?? document.getElementById("main"))?.focus();
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
    // on the document, not the sheet: focus can fall to <body> (a focused button that gets disabled
    // loses it), and Escape and Tab must still act on the topmost sheet
    document.addEventListener("keydown", this.onKey);
    document.body.append(this.root);
    document.body.classList.add("sheet-open");
    requestAnimationFrame(() => this.root.classList.add("open"));
    this.panel.focus();
  }

  private onKey = (e: KeyboardEvent): void => {
    if ([...document.querySelectorAll(".sheet-root")].pop() !== this.root) return; // another sheet is on top
    if (e.key === "Escape" && !e.defaultPrevented) {
      e.preventDefault();
      this.close();
    } else if (e.key === "Tab") {
      if (!this.panel.contains(document.activeElement)) {
        e.preventDefault();
        this.panel.focus();
      } else {
        this.trapFocus(e);
      }
    }
  };

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
    document.removeEventListener("keydown", this.onKey);
    this.root.remove();
    if (!document.querySelector(".sheet-root")) document.body.classList.remove("sheet-open");
    this.options.onClose?.();
    returnFocusTo(this.returnFocus);
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
