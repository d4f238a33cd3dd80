// pyinstrument diff page: draws the comparison of two profiles (pyinstrument --diff -r html)
// from the JSON in #pyinstrument-diff. Every name from a profile is set as text, never as
// markup; the page loads nothing and runs no other script (its Content-Security-Policy).
(function () {
  "use strict";

  const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
  function visible(text) {
    return String(text).replace(CONTROL, (c) => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"));
  }
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function seconds(s) {
    return s.toFixed(3) + "s";
  }
  function signed(value, digits, unit) {
    return (value >= 0 ? "+" : "") + value.toFixed(digits) + unit;
  }
  function percent(share) {
    return (share * 100).toFixed(1) + "%";
  }

  const data = JSON.parse(document.getElementById("pyinstrument-diff").textContent);
  if (data.format !== "pyinstrument-diff" || data.version !== 1)
    throw new Error("its data is of another version than this page reads");
  const judged = data.verdict_test !== null;

  // slower, faster or unchanged: the verdict when both sides are repeat sets, else the sign
  function direction(node) {
    if (judged) return node.verdict || "";
    if (node.delta_share > 0.001 || node.status === "new") return "slower";
    if (node.delta_share < -0.001 || node.status === "gone") return "faster";
    return "";
  }
  function label(node) {
    return visible(node.function) + (node.file_path ? "  " + visible(node.file_path) + ":" + node.line_no : "");
  }
  function describe(node) {
    const marks = [node.status, node.verdict].filter((m) => m).map((m) => " [" + m + "]").join("");
    return (
      label(node) + marks + "\nbefore " + seconds(node.before) + " (" + percent(node.before_share) + ")" +
      "\nafter " + seconds(node.after) + " (" + percent(node.after_share) + ")" +
      "\nchange " + signed(node.delta, 3, "s") + ", " + signed(node.delta_share * 100, 1, " points") +
      (node.p_value !== null ? "\np = " + node.p_value.toPrecision(2) + " (adjusted)" : "")
    );
  }

  const page = el("div", "page");
  page.appendChild(el("h1", null, "pyinstrument diff"));
  const sides = el("dl", "sides");
  for (const key of ["before", "after"]) {
    const side = data[key];
    const parts = [visible(side.target || "?")];
    parts.push(side.runs > 1 ? side.runs + " runs, median " + seconds(side.median_duration) : seconds(side.duration));
    if (side.made_with) parts.push(visible(side.made_with));
    sides.appendChild(el("dt", null, key));
    sides.appendChild(el("dd", null, parts.join(" · ")));
  }
  page.appendChild(sides);
  if (data.metadata_changes.length)
    page.appendChild(el("p", "changes", "changed: " + data.metadata_changes.map(visible).join("; ")));
  page.appendChild(
    el(
      "p",
      "verdict",
      judged
        ? "verdicts: " + data.verdict_test
        : "no verdict: each side is one run, so the noise is unknown (use --repeat N on both); colours show the sign of the change"
    )
  );

  // -- the differential flame graph: each box as wide as the mean of its two shares (so a
  // branch only one side has still shows), coloured by the direction of its change
  page.appendChild(el("h2", null, "Differential flame graph"));
  const legend = el("p", "legend");
  for (const [cls, text] of [["slower", "slower"], ["faster", "faster"], ["same", "unchanged"]]) {
    const item = el("span", "box-legend", text);
    item.style.background = "var(--" + cls + "-bg)";
    legend.appendChild(item);
  }
  page.appendChild(legend);
  const flame = el("div", "flame");
  flame.id = "flame";
  const ROW = 18;
  let depthMax = 0;
  const stack = data.root.children.map((child) => [child, 0, 0]);
  // the root's children side by side from the left, each child's from its parent's left
  const width = (node) => (node.before_share + node.after_share) / 2;
  let left = 0;
  for (const entry of stack) {
    entry[2] = left;
    left += width(entry[0]);
  }
  while (stack.length) {
    const [node, depth, x] = stack.pop();
    const w = width(node);
    if (w < 0.002) continue; // too narrow to see: its row in the table below has it
    depthMax = Math.max(depthMax, depth);
    const box = el("div", "box " + (direction(node) || "same") + (node.status ? " " + node.status : ""));
    box.style.left = (x * 100).toFixed(4) + "%";
    box.style.width = (w * 100).toFixed(4) + "%";
    box.style.top = depth * ROW + "px";
    box.textContent = visible(node.function);
    box.title = describe(node);
    flame.appendChild(box);
    let childLeft = x;
    for (const child of node.children) {
      stack.push([child, depth + 1, childLeft]);
      childLeft += width(child);
    }
  }
  flame.style.height = (depthMax + 1) * ROW + 2 + "px";
  page.appendChild(flame);

  // -- the two sides, node by node
  page.appendChild(el("h2", null, "Before and after"));
  const table = el("table");
  table.id = "nodes";
  const head = el("tr");
  for (const title of ["function", "before", "share", "after", "share", "Δ time", "Δ share"])
    head.appendChild(el("th", null, title));
  table.appendChild(head);
  const rows = data.root.children.slice().reverse().map((child) => [child, 0]);
  while (rows.length) {
    const [node, depth] = rows.pop();
    if (Math.max(node.before_share, node.after_share) >= data.threshold || Math.abs(node.delta_share) >= data.threshold) {
      const row = el("tr", direction(node));
      const name = el("td", "name", "  ".repeat(depth) + visible(node.function));
      const marks = [node.status, node.verdict].filter((m) => m);
      if (marks.length) name.appendChild(el("span", "mark", " [" + marks.join("] [") + "]"));
      if (node.file_path) name.appendChild(el("span", "where", "  " + visible(node.file_path) + ":" + node.line_no));
      row.title = describe(node);
      row.appendChild(name);
      for (const text of [
        seconds(node.before), percent(node.before_share), seconds(node.after), percent(node.after_share),
      ])
        row.appendChild(el("td", null, text));
      row.appendChild(el("td", "delta", signed(node.delta, 3, "s")));
      row.appendChild(el("td", "delta", signed(node.delta_share * 100, 1, "")));
      table.appendChild(row);
    }
    for (let i = node.children.length - 1; i >= 0; i--) rows.push([node.children[i], depth + 1]);
  }
  page.appendChild(table);

  document.getElementById("app").appendChild(page);
  document.body.dataset.ready = "1";
})();
