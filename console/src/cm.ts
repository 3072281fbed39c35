// The CodeMirror pieces every editor here shares: a light setup (no search/autocomplete, to stay small).

import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { bracketMatching, HighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from "@codemirror/language";
import type { Extension } from "@codemirror/state";
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

// Colours are the stylesheet's variables, so the light and the dark theme (the system setting) both apply.
const highlight = HighlightStyle.define([
  { tag: [t.keyword, t.controlKeyword, t.definitionKeyword, t.moduleKeyword], color: "var(--hl-keyword)" },
  { tag: [t.string, t.special(t.string)], color: "var(--hl-string)" },
  { tag: [t.number, t.bool, t.null], color: "var(--hl-number)" },
  { tag: t.comment, color: "var(--hl-comment)", fontStyle: "italic" },
  { tag: [t.function(t.variableName), t.function(t.definition(t.variableName))], color: "var(--hl-function)" },
  { tag: t.definition(t.className), color: "var(--hl-class)" },
  { tag: [t.self, t.special(t.variableName)], color: "var(--hl-self)" },
  { tag: [t.operator, t.punctuation], color: "var(--hl-operator)" },
  { tag: t.propertyName, color: "var(--hl-property)" },
  { tag: t.invalid, color: "var(--hl-invalid)" },
]);

export const theme = EditorView.theme({
  "&": { fontSize: "13.5px", height: "100%", color: "var(--text)", backgroundColor: "var(--panel)" },
  ".cm-content": { fontFamily: "var(--mono)", padding: "10px 0", caretColor: "var(--text)" },
  ".cm-cursor, .cm-dropCursor": { borderLeftColor: "var(--text)" },
  ".cm-gutters": { background: "var(--cm-gutter)", color: "var(--cm-gutter-text)", borderRight: "1px solid var(--border)" },
  ".cm-activeLine": { background: "var(--cm-active-line)" },
  ".cm-activeLineGutter": { background: "var(--accent-soft)", color: "var(--accent-2)" },
  "&.cm-focused .cm-selectionBackground, .cm-selectionBackground": { background: "var(--accent-ring)" },
  // keyboard users must see where focus is: the editor is outlined like every focused control
  "&.cm-focused": { outline: "2px solid var(--accent)", outlineOffset: "-2px" },
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
    // focusable, so a keyboard can scroll a long diff (axe: scrollable-region-focusable)
    EditorView.contentAttributes.of({ "aria-readonly": "true", tabindex: "0" }),
  ];
}
