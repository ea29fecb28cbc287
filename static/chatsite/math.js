// Typesets the math in sanitised message HTML with the vendored KaTeX (static/vendor/katex).
// The server renders `$…$`, `$$…$$`, `\(…\)` and `\[…\]` as `.math` elements whose only content
// is the TeX source as text (conversations/rendering.py); that stays readable if KaTeX is
// missing or cannot parse it. KaTeX runs with trust off: no \href to javascript:, no \htmlId,
// no raw HTML. It is loaded only on pages that show math.

import { watchThreads } from "./watch.js";

const KATEX_JS = new URL("../vendor/katex/katex.min.js", import.meta.url).href;
const KATEX_CSS = new URL("../vendor/katex/katex.min.css", import.meta.url).href;
const OPTIONS = { throwOnError: true, trust: false, strict: "ignore", maxExpand: 500, maxSize: 20, output: "htmlAndMathml" };

let loading = null;
function loadKatex() {
  if (window.katex) return Promise.resolve(window.katex);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = KATEX_CSS;
      document.head.append(link);
      const script = document.createElement("script");
      script.src = KATEX_JS;
      script.onload = () => (window.katex ? resolve(window.katex) : reject(new Error("KaTeX did not load")));
      script.onerror = () => reject(new Error("KaTeX did not load"));
      document.head.append(script);
    }).catch((error) => {
      loading = null;
      throw error;
    });
  }
  return loading;
}

function pending(root) {
  return [...root.querySelectorAll(".markdown .math:not([data-tex])")];
}

export async function typeset(root) {
  const nodes = pending(root);
  if (!nodes.length) return;
  let katex;
  try {
    katex = await loadKatex();
  } catch {
    return; // the TeX stays readable as it is
  }
  for (const node of nodes) {
    if (node.dataset.tex !== undefined || !node.isConnected) continue;
    const tex = node.textContent;
    node.dataset.tex = tex;
    try {
      katex.render(tex, node, { ...OPTIONS, displayMode: node.classList.contains("math-display") });
      node.classList.add("math-rendered");
    } catch (error) {
      node.textContent = tex;
      node.classList.add("math-error");
      node.title = `Could not typeset this formula: ${error?.message || error}`;
    }
  }
}

watchThreads(typeset);
