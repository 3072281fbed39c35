// The CodeMirror pieces every editor here shares: a light setup (no search/autocomplete, to stay small).

import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { bracketMatching, HighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from "@codemirror/language";
import { type Extension } from "@codemirror/state";
import {
  drawSelection,
  EditorView,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { tags as t } from "@lezer/highlight";

const highlight = HighlightStyle.define([
  { tag: [t.keyword, t.controlKeyword, t.definitionKeyword, t.moduleKeyword], color: "#7c3aed" },
  { tag: [t.string, t.special(t.string)], color: "#0f766e" },
  { tag: [t.number, t.bool, t.null], color: "#b45309" },
  { tag: t.comment, color: "#64748b", fontStyle: "italic" },
  { tag: [t.function(t.variableName), t.function(t.definition(t.variableName))], color: "#1d4ed8" },
  { tag: t.definition(t.className), color: "#be185d" },
  { tag: [t.self, t.special(t.variableName)], color: "#c2410c" },
  { tag: [t.operator, t.punctuation], color: "#475569" },
  { tag: t.propertyName, color: "#0e7490" },
  { tag: t.invalid, color: "#dc2626" },
]);

export const theme = EditorView.theme({
  "&": { fontSize: "13.5px", height: "100%" },
  ".cm-content": { fontFamily: "var(--mono)", padding: "10px 0" },
  ".cm-gutters": { background: "#f8fafc", color: "#94a3b8", borderRight: "1px solid #e2e8f0" },
  ".cm-activeLine": { background: "#f1f5f980" },
  ".cm-activeLineGutter": { background: "#eef2ff", color: "#4338ca" },
  "&.cm-focused": { outline: "none" },
  ".cm-scroller": { lineHeight: "1.6" },
});

export function pythonSetup(): Extension[] {
  return [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    indentOnInput(),
    indentUnit.of("    "),
    bracketMatching(),
    highlightActiveLine(),
    syntaxHighlighting(highlight),
    python(),
    theme,
    keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
  ];
}

/** For diff panes: highlighted, read-only. */
export function readOnlySetup(): Extension[] {
  return [
    lineNumbers(),
    highlightSpecialChars(),
    syntaxHighlighting(highlight),
    python(),
    theme,
    EditorView.editable.of(false),
    EditorView.contentAttributes.of({ "aria-readonly": "true" }),
  ];
}
