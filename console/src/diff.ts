// Side-by-side diffs with CodeMirror's merge view: one pair of read-only panes per file, unchanged
// regions collapsed, changed lines and words marked. Loaded on demand (its own chunk).

import { MergeView } from "@codemirror/merge";
import type { FileDiff } from "./api";
import { readOnlySetup } from "./cm";
import { h } from "./util";

const STATUS_LABEL: Record<string, string> = {
  added: "added",
  removed: "removed",
  modified: "modified",
  unchanged: "unchanged",
};

function lineCounts(a: string | null, b: string | null): { plus: number; minus: number } {
  const left = (a ?? "").split("\n");
  const right = (b ?? "").split("\n");
  if (a === null) return { plus: b ? right.length : 0, minus: 0 };
  if (b === null) return { plus: 0, minus: left.length };
  // a cheap estimate (multiset difference) for the header; the panes show the exact diff
  const count = new Map<string, number>();
  for (const line of left) count.set(line, (count.get(line) ?? 0) + 1);
  let plus = 0;
  for (const line of right) {
    const n = count.get(line) ?? 0;
    if (n > 0) count.set(line, n - 1);
    else plus++;
  }
  let minus = 0;
  for (const n of count.values()) minus += n;
  return { plus, minus };
}

export interface DiffLabels {
  a: string;
  b: string;
}

/** Render every file of a diff into `container`; returns a function that destroys the views. */
export function renderDiff(container: HTMLElement, files: FileDiff[], labels: DiffLabels): () => void {
  const views: MergeView[] = [];
  const changed = files.filter((f) => f.status !== "unchanged");
  const summary = h(
    "p",
    { class: "diff-summary" },
    changed.length
      ? `${changed.length} of ${files.length} file${files.length === 1 ? "" : "s"} differ`
      : `No differences: all ${files.length} file${files.length === 1 ? "" : "s"} are identical`,
  );
  const header = h("div", { class: "diff-sides", "aria-hidden": "true" }, h("span", null, labels.a), h("span", null, labels.b));
  container.replaceChildren(summary, header);
  for (const file of files) {
    const { plus, minus } = lineCounts(file.a, file.b);
    const body = h("div", { class: "diff-body" });
    const section = h(
      "details",
      { class: `diff-file status-${file.status}`, open: file.status !== "unchanged", "data-path": file.path },
      h(
        "summary",
        null,
        h("span", { class: "diff-path" }, file.path),
        h("span", { class: `pill status ${file.status}` }, STATUS_LABEL[file.status]),
        file.status !== "unchanged" ? h("span", { class: "counts" }, h("span", { class: "plus" }, `+${plus}`), " ", h("span", { class: "minus" }, `−${minus}`)) : null,
      ),
      body,
    );
    container.append(section);
    const mount = () => {
      if (body.childElementCount) return;
      const view = new MergeView({
        parent: body,
        a: { doc: file.a ?? "", extensions: readOnlySetup() },
        b: { doc: file.b ?? "", extensions: readOnlySetup() },
        highlightChanges: true,
        gutter: true,
        collapseUnchanged: file.status === "modified" ? { margin: 3, minSize: 8 } : undefined,
      });
      view.a.contentDOM.setAttribute("aria-label", `${file.path}: ${labels.a}`);
      view.b.contentDOM.setAttribute("aria-label", `${file.path}: ${labels.b}`);
      views.push(view);
    };
    if (section.open) mount();
    else section.addEventListener("toggle", mount, { once: true });
  }
  return () => {
    for (const v of views) v.destroy();
  };
}
