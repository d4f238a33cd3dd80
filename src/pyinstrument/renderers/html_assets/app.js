/* pyinstrument HTML report: the page's program.
 *
 * Reads the session data from the page's JSON data element (id "pyinstrument-data")
 * and builds the page: header, call tree, flame graph, timeline and lines views.
 * Every name and path in the data comes from the profiled program and is shown with
 * textContent or canvas text only, never parsed as markup.
 *
 * Plain JavaScript, no dependencies, no build step.
 */
"use strict";

(function () {
  // A report that cannot be shown says why instead of staying blank.
  window.addEventListener("error", (event) => {
    if (document.body.dataset.ready) return;
    const app = document.getElementById("app");
    app.textContent = "";
    const message = document.createElement("p");
    message.className = "empty";
    message.textContent = "This report could not be shown: " + (event.message || "an error in the page");
    app.appendChild(message);
  });

  // -- small helpers ------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function append(parent, ...children) {
    for (const child of children) if (child) parent.appendChild(child);
    return parent;
  }

  // Control characters would be invisible or break lines: show them as escapes.
  const CONTROL = /[\x00-\x1f\x7f]/g;
  const CONTROL_NAMES = { "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0" };
  // A lone surrogate (a path's undecodable byte) as the replacement character, which
  // is what a browser shows for it anyway.
  const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
  function visible(text) {
    return String(text)
      .replace(LONE_SURROGATE, "\uFFFD")
      .replace(CONTROL, (c) => CONTROL_NAMES[c] || "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"));
  }

  function plural(count, word) {
    return count.toLocaleString() + " " + word + (count === 1 ? "" : "s");
  }

  function clamp(x, lo, hi) {
    return x < lo ? lo : x > hi ? hi : x;
  }

  // a glob as in --hide/--show (fnmatch): * ? [seq] [!seq], matched against the whole path
  function globToRegExp(glob) {
    let out = "";
    for (let i = 0; i < glob.length; i++) {
      const c = glob[i];
      if (c === "*") out += "[\\s\\S]*";
      else if (c === "?") out += "[\\s\\S]";
      else if (c === "[") {
        const end = glob.indexOf("]", i + 2);
        if (end < 0) out += "\\[";
        else {
          let body = glob.slice(i + 1, end);
          const negate = body[0] === "!";
          if (negate) body = body.slice(1);
          body = body.replace(/[\\\]^]/g, "\\$&");
          out += "[" + (negate ? "^" : "") + body + "]";
          i = end;
        }
      } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    }
    return new RegExp("^(?:" + out + ")$");
  }

  function hashString(text) {
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }

  // -- the data -----------------------------------------------------------------------

  // the run's phases (Profiler.phase): the page shows the whole run, or the phase that
  // its address names (#phase=N, set by the header's selector)
  const phasesElement = document.getElementById("pyinstrument-phases");
  const phases = phasesElement ? JSON.parse(phasesElement.textContent) : [];
  const phaseMatch = /^#phase=(\d+)$/.exec(window.location.hash);
  const phaseShown = phaseMatch && Number(phaseMatch[1]) <= phases.length ? Number(phaseMatch[1]) : 0;
  const dataElement = document.getElementById(
    phaseShown ? "pyinstrument-data-phase-" + phaseShown : "pyinstrument-data"
  );
  const data = JSON.parse(dataElement.textContent);
  if (data.format !== "pyinstrument-html" || data.version !== 1)
    throw new Error("its data is of another version (" + data.version + ") than this page reads");
  const meta = data.meta;
  const frames = data.frames;
  const frameCount = frames.name.length;
  const frameName = frames.name.map(visible);
  const frameShort = frames.short.map(visible);
  const frameFile = frames.file.map(visible);
  const frameLib = frames.lib.map(visible);
  const frameIsApp = frames.app;
  function frameLocation(f) {
    if (f < 0 || !frameShort[f]) return "";
    return frameShort[f] + (frames.line[f] ? ":" + frames.line[f] : "");
  }

  const threads = data.threads;
  const threadCount = threads.length;
  // a thread's name; threads that share one are numbered #1, #2... in the order of
  // their idents (as in the text report): the idents themselves are noise
  const threadLabel = threads.map((t, i) => {
    const name = visible(t.name || "thread " + i);
    const namesakes = threads
      .filter((u) => u.name === t.name)
      .map((u) => (u.ident === null ? 0 : u.ident))
      .sort((a, b) => a - b);
    if (namesakes.length < 2) return name;
    return name + " #" + (namesakes.indexOf(t.ident === null ? 0 : t.ident) + 1);
  });

  // The call tree: the data's nodes, then one node per thread, then the root (all
  // threads). Parents come before children among the data's nodes.
  const tree = data.tree;
  const dataNodes = tree.frame.length;
  const nodeCount = dataNodes + threadCount + 1;
  const ROOT = nodeCount - 1;
  const THREAD_FRAME = -2;
  const ROOT_FRAME = -3;
  const threadNode = (t) => dataNodes + t;
  const parentOf = new Int32Array(nodeCount);
  const frameOf = new Int32Array(nodeCount);
  const threadOf = new Int32Array(nodeCount);
  const wallOf = new Float64Array(nodeCount);
  const cpuOf = new Float64Array(nodeCount);
  for (let i = 0; i < dataNodes; i++) {
    const p = tree.parent[i];
    parentOf[i] = p < 0 ? threadNode(tree.thread[i]) : p;
    frameOf[i] = tree.frame[i];
    threadOf[i] = tree.thread[i];
    wallOf[i] = tree.wall[i] / 1e6;
    cpuOf[i] = tree.cpu[i] / 1e6;
  }
  for (let t = 0; t < threadCount; t++) {
    const n = threadNode(t);
    parentOf[n] = ROOT;
    frameOf[n] = THREAD_FRAME;
    threadOf[n] = t;
  }
  parentOf[ROOT] = -1;
  frameOf[ROOT] = ROOT_FRAME;
  threadOf[ROOT] = -1;
  for (let i = 0; i < dataNodes; i++) {
    if (tree.parent[i] < 0) {
      wallOf[parentOf[i]] += wallOf[i];
      cpuOf[parentOf[i]] += cpuOf[i];
    }
  }
  for (let t = 0; t < threadCount; t++) {
    wallOf[ROOT] += wallOf[threadNode(t)];
    cpuOf[ROOT] += cpuOf[threadNode(t)];
  }

  // children as one array of runs (CSR), in the data's order
  const childStart = new Int32Array(nodeCount + 1);
  const childList = new Int32Array(Math.max(nodeCount - 1, 0));
  (function () {
    const counts = new Int32Array(nodeCount);
    for (let i = 0; i < nodeCount; i++) if (parentOf[i] >= 0) counts[parentOf[i]]++;
    for (let i = 0; i < nodeCount; i++) childStart[i + 1] = childStart[i] + counts[i];
    const fill = childStart.slice(0, nodeCount);
    for (let i = 0; i < nodeCount; i++) if (parentOf[i] >= 0) childList[fill[parentOf[i]]++] = i;
  })();

  // A chronological tree (rendered with timeline=True) keeps its calls in the order
  // they happened, its own time in [self] nodes where it was spent.
  const chronological = !!data.options.chronological_tree;

  function isSelfNode(n) {
    const f = frameOf[n];
    return f >= 0 && frames.file[f] === "" && frames.name[f] === "[self]";
  }

  // children sorted by a metric, most first (built once per metric)
  const sortedChildren = {};
  function childrenBy(metric) {
    if (chronological) return childList;
    let list = sortedChildren[metric.name];
    if (!list) {
      list = sortedChildren[metric.name] = childList.slice();
      const values = metric.values;
      for (let n = 0; n < nodeCount; n++) {
        const a = childStart[n], b = childStart[n + 1];
        if (b - a > 1) {
          const part = Array.from(list.subarray(a, b)).sort((x, y) => values[y] - values[x] || x - y);
          list.set(part, a);
        }
      }
    }
    return list;
  }

  const METRICS = {
    wall: { name: "wall", label: "Wall", values: wallOf },
    cpu: { name: "cpu", label: "CPU", values: cpuOf },
  };

  function nodeName(n) {
    const f = frameOf[n];
    if (f >= 0) return frameName[f];
    if (f === THREAD_FRAME) return threadLabel[threadOf[n]];
    return "All threads";
  }

  // per-line times: frame -> thread -> [line, µs, ...]
  const lineTimes = new Map();
  for (const [f, t, flat] of data.lines) {
    let byThread = lineTimes.get(f);
    if (!byThread) lineTimes.set(f, (byThread = new Map()));
    byThread.set(t, flat);
  }

  const decimals = (function () {
    const interval = meta.interval;
    if (!(interval > 0)) return 3;
    return clamp(Math.ceil(Math.round(-Math.log10(interval) * 1e6) / 1e6), 3, 6);
  })();

  function formatSeconds(s) {
    return s.toFixed(decimals);
  }

  function formatDuration(s) {
    if (s === 0) return "0 s";
    if (s >= 100) return formatClock(s, 1);
    if (s >= 1) return s.toFixed(s >= 10 ? 1 : 2) + " s";
    if (s >= 1e-3) return (s * 1e3).toFixed(s >= 0.1 ? 0 : s >= 0.01 ? 1 : 2) + " ms";
    return (s * 1e6).toFixed(0) + " µs";
  }

  function formatClock(s, step) {
    // a time axis label: enough decimals for the tick step; minutes past 100 s
    if (step >= 1 && s >= 100) {
      let m = Math.floor(s / 60 + 1e-9), rest = Math.round(s - m * 60);
      if (rest === 60) {
        m += 1;
        rest = 0;
      }
      const h = Math.floor(m / 60);
      const minutes = h ? h + "h" + String(m % 60).padStart(2, "0") + "m" : m + "m";
      return minutes + (rest ? String(rest).padStart(2, "0") + "s" : "");
    }
    const digits = clamp(Math.ceil(-Math.log10(step) + 0.0001), 0, 6);
    return s.toFixed(digits) + " s";
  }

  function percent(part, whole) {
    return whole > 0 ? ((part / whole) * 100).toFixed(1) + "%" : "–";
  }

  // -- settings (remembered in localStorage) ---------------------------------------------
  //
  // Two kinds: display preferences (wall or CPU, seconds or percent, how the lines
  // view sorts), which every report on this computer shares, and what was being looked
  // at in one report (view, thread, threshold, folding, patterns), remembered for that
  // report only: another report opens as a new one does, on the call tree.

  const PREFERENCES_KEY = "pyinstrument.report.preferences.v2";
  const REPORTS_KEY = "pyinstrument.report.views.v2";
  const REMEMBERED_REPORTS = 50;
  const OLD_SETTINGS_KEY = "pyinstrument.report.settings.v1"; // both kinds together: dropped
  const PREFERENCES = ["metric", "timeFormat", "linesSort"];
  const options = data.options;
  const defaults = {
    view: "tree",
    metric: "wall",
    timeFormat: "seconds",
    threshold: (options.default_threshold || 0.01) * 100,
    foldLibrary: true,
    hidePattern: "",
    showPattern: "",
    thread: null, // a thread's name, or null for all threads
    linesSort: "own",
  };
  // this report: where it is and which recording it shows
  const reportId = [window.location.pathname, meta.start_time, meta.duration, meta.sample_count, meta.target].join("|");

  function readStored(key) {
    try {
      const value = JSON.parse(window.localStorage.getItem(key) || "{}");
      return value && typeof value === "object" ? value : {};
    } catch (e) {
      return {}; // no storage (private mode, file:// restrictions) or a damaged entry
    }
  }

  const settings = Object.assign({}, defaults);
  {
    const stored = Object.assign({}, readStored(REPORTS_KEY)[reportId], readStored(PREFERENCES_KEY));
    for (const key of Object.keys(defaults)) {
      if (key in stored && typeof stored[key] === typeof defaults[key]) settings[key] = stored[key];
      else if (key === "thread" && typeof stored[key] === "string") settings[key] = stored[key];
    }
  }
  // options given when the report was written win over remembered settings
  if (options.show_all) settings.foldLibrary = false;
  if (typeof options.threshold === "number") settings.threshold = options.threshold * 100;
  if (!meta.has_cpu) settings.metric = "wall";
  if (!["tree", "flame", "timeline", "lines"].includes(settings.view)) settings.view = "tree";
  if (!["own", "total"].includes(settings.linesSort)) settings.linesSort = "own";

  function saveSettings() {
    try {
      const preferences = {};
      const thisReport = { used: Date.now() };
      for (const key of Object.keys(defaults)) {
        if (PREFERENCES.includes(key)) preferences[key] = settings[key];
        else thisReport[key] = settings[key];
      }
      const reports = readStored(REPORTS_KEY);
      reports[reportId] = thisReport;
      // forget the reports used longest ago
      const ids = Object.keys(reports).filter((id) => reports[id] && typeof reports[id] === "object");
      ids.sort((a, b) => (Number(reports[b].used) || 0) - (Number(reports[a].used) || 0));
      const kept = {};
      for (const id of ids.slice(0, REMEMBERED_REPORTS)) kept[id] = reports[id];
      window.localStorage.setItem(REPORTS_KEY, JSON.stringify(kept));
      window.localStorage.setItem(PREFERENCES_KEY, JSON.stringify(preferences));
      window.localStorage.removeItem(OLD_SETTINGS_KEY);
    } catch (e) {
      /* not remembered */
    }
  }

  // -- shared state -------------------------------------------------------------------

  const state = {
    search: "",
    selectedFrame: -1, // the function shown in the lines view, highlighted elsewhere
  };

  function selectedThread() {
    if (threadCount <= 1) return threadCount === 1 ? 0 : -1;
    if (settings.thread === null) return -1;
    const index = threads.findIndex((t) => t.name === settings.thread);
    return index;
  }

  // the node the views start from: one thread, or all of them
  function viewRoot() {
    const t = selectedThread();
    return t >= 0 ? threadNode(t) : ROOT;
  }

  function metric() {
    return METRICS[settings.metric] || METRICS.wall;
  }

  // -- library folding, as the console folds it -------------------------------------------
  //
  // The same rules as pyinstrument.processors.group_library_frames_processor: a group
  // starts at a library frame called from visible code (it stays visible) and takes in
  // the library frames below it; of those, the ones that call back into visible code
  // and the ones spending a large share of the total time themselves stay visible, the
  // others are hidden. show/hide patterns override what counts as library code.

  const VISIBLE = 0, HIDEABLE = 1, FOLLOW = 2;
  let frameKindCache = null;

  function frameKinds() {
    if (frameKindCache) return frameKindCache;
    // a pattern that is not a valid glob is ignored (its box is marked)
    const compile = (glob) => {
      try {
        return glob.trim() ? globToRegExp(glob.trim()) : null;
      } catch (e) {
        return null;
      }
    };
    const hideRe = compile(settings.hidePattern), showRe = compile(settings.showPattern);
    const kinds = new Uint8Array(frameCount);
    for (let f = 0; f < frameCount; f++) {
      const path = frames.file[f];
      if (!path) kinds[f] = FOLLOW;
      else if (frames.flag[f] === 1 || (showRe && showRe.test(path))) kinds[f] = VISIBLE;
      else if (frames.flag[f] === 2 || (hideRe && hideRe.test(path))) kinds[f] = HIDEABLE;
      else kinds[f] = frameIsApp[f] ? VISIBLE : HIDEABLE;
    }
    frameKindCache = kinds;
    return kinds;
  }

  function kindOf(n, kinds) {
    const f = frameOf[n];
    return f >= 0 ? kinds[f] : VISIBLE;
  }

  // Returns {hidden: Uint8Array, groupRoot: Int32Array} for the nodes below `root`
  // whose metric is at least `limit`.
  function computeFolding(root, values, limit) {
    const kinds = frameKinds();
    const hidden = new Uint8Array(nodeCount);
    const groupOf = new Int32Array(nodeCount).fill(-1);
    const groupRoot = new Int32Array(nodeCount).fill(-1);
    const exits = new Uint8Array(nodeCount);
    const groupRoots = [];
    const groupMembers = [];
    const large = values[root] * (options.large_self_time_share || 0.2);
    // state of a parent: -1 visible; >= 0 a hideable node without a group yet; <= -2 group -2-g
    const stackNode = [root], stackState = [-1];
    while (stackNode.length) {
      const n = stackNode.pop();
      const parentState = stackState.pop();
      const kind = n === root ? VISIBLE : kindOf(n, kinds);
      let nodeState = -1;
      if (kind === FOLLOW) {
        if (parentState <= -2) {
          const g = -2 - parentState;
          groupOf[n] = g;
          groupMembers[g].push(n);
          nodeState = parentState;
        }
      } else if (kind === HIDEABLE) {
        if (parentState === -1) nodeState = n;
        else {
          let g;
          if (parentState <= -2) g = -2 - parentState;
          else {
            g = groupOf[parentState];
            if (g < 0) {
              g = groupRoots.length;
              groupRoots.push(parentState);
              groupMembers.push([parentState]);
              groupOf[parentState] = g;
            }
          }
          groupOf[n] = g;
          groupMembers[g].push(n);
          nodeState = -2 - g;
        }
      } else if (parentState !== -1) {
        exits[parentOf[n]] = 1;
      }
      for (let i = childStart[n + 1] - 1; i >= childStart[n]; i--) {
        const c = childList[i];
        if (values[c] >= limit && values[c] > 0) {
          stackNode.push(c);
          stackState.push(nodeState);
        }
      }
    }
    const kept = (c) => values[c] >= limit && values[c] > 0;
    for (let g = 0; g < groupRoots.length; g++) {
      const root = groupRoots[g];
      const members = groupMembers[g];
      const shown = new Set();
      let anyHidden = false;
      const hide = [];
      for (const m of members) {
        if (m === root || kindOf(m, kinds) === FOLLOW) continue;
        if (exits[m]) shown.add(m);
        else {
          let self = values[m];
          for (let i = childStart[m]; i < childStart[m + 1]; i++) {
            const c = childList[i];
            if (kept(c) && kindOf(c, kinds) !== FOLLOW) self -= values[c];
          }
          if (values[m] > large && self > large) shown.add(m);
          else {
            hide.push(m);
            anyHidden = true;
          }
        }
      }
      if (!anyHidden) continue;
      for (const m of members) {
        if (kindOf(m, kinds) === FOLLOW) {
          const p = parentOf[m];
          if (p !== root && !shown.has(p)) hide.push(m);
        }
      }
      for (const m of members) groupRoot[m] = root;
      for (const m of hide) hidden[m] = 1;
    }
    return { hidden, groupRoot };
  }

  // libraries of hidden frames, most own time first (own time counting the calls left
  // out by the threshold, as the console counts it)
  function librariesOf(nodes, values, limit) {
    const times = new Map();
    for (const n of nodes) {
      const f = frameOf[n];
      if (f < 0 || !frameLib[f]) continue;
      let self = values[n];
      for (let i = childStart[n]; i < childStart[n + 1]; i++) {
        const c = childList[i];
        if (values[c] >= limit && values[c] > 0) self -= values[c];
      }
      times.set(frameLib[f], (times.get(frameLib[f]) || 0) + Math.max(self, 0));
    }
    return Array.from(times.keys()).sort((a, b) => times.get(b) - times.get(a) || (a < b ? -1 : 1));
  }

  // -- search -------------------------------------------------------------------------

  let searchCache = { query: null, matches: null, count: 0 };
  function frameMatches() {
    const query = state.search.trim().toLowerCase();
    if (!query) return null;
    if (searchCache.query === query) return searchCache.matches;
    const matches = new Uint8Array(frameCount);
    let count = 0;
    for (let f = 0; f < frameCount; f++) {
      if (
        frames.name[f].toLowerCase().includes(query) ||
        frames.file[f].toLowerCase().includes(query) ||
        frameName[f].toLowerCase().includes(query)
      ) {
        matches[f] = 1;
        count++;
      }
    }
    searchCache = { query, matches, count };
    return matches;
  }

  // text with the search query marked
  function markedText(parent, text) {
    const query = state.search.trim().toLowerCase();
    if (!query) {
      parent.textContent = text;
      return parent;
    }
    const lower = text.toLowerCase();
    let at = 0;
    for (;;) {
      const i = lower.indexOf(query, at);
      if (i < 0 || !query) break;
      if (i > at) parent.appendChild(document.createTextNode(text.slice(at, i)));
      parent.appendChild(el("mark", null, text.slice(i, i + query.length)));
      at = i + query.length;
    }
    if (at < text.length) parent.appendChild(document.createTextNode(text.slice(at)));
    return parent;
  }

  // -- page skeleton ------------------------------------------------------------------

  const app = document.getElementById("app");
  document.title = (meta.target ? visible(meta.target) + " – " : "") + "pyinstrument";

  function buildHeader() {
    const head = el("header", "head");
    const title = el("div", "head-title");
    const brand = el("span", "brand", "pyinstrument");
    brand.appendChild(el("small", null, "v" + (meta.pyinstrument_version || "?")));
    const target = el("h1", "target", meta.target ? visible(meta.target) : "Profile");
    target.title = meta.target || "";
    append(title, brand, target);
    head.appendChild(title);

    const facts = el("dl", "facts");
    function fact(label, value, tip) {
      const item = el("div", "fact");
      append(item, el("dt", null, label), el("dd", null, value));
      if (tip) item.title = tip;
      facts.appendChild(item);
    }
    const started = new Date(meta.start_time * 1000);
    fact("Recorded", isNaN(started) ? "?" : started.toLocaleString(), started.toString());
    fact("Duration", formatDuration(meta.duration));
    fact("Samples", Number(meta.sample_count).toLocaleString());
    if (meta.cpu_time > 0 || meta.has_cpu) {
      fact("CPU time", formatDuration(meta.cpu_time));
      fact(
        "CPU utilisation",
        percent(meta.cpu_time, meta.duration),
        "CPU time of the process over the wall-clock duration (above 100% when several threads ran at once)"
      );
    }
    fact("Interval", formatDuration(meta.interval));
    const dropped = meta.dropped_samples || 0;
    const attempts = meta.sample_count + dropped;
    fact(
      "Dropped",
      dropped ? percent(dropped, attempts) + " (" + dropped.toLocaleString() + ")" : "0%",
      "thread samples the sampler could not take, over all samples attempted"
    );
    if (meta.truncated_samples)
      fact(
        "Truncated",
        meta.truncated_samples.toLocaleString(),
        "samples of stacks deeper than 8,192 frames, kept with their outermost and innermost frames"
      );
    if (threadCount > 1) fact("Threads", String(threadCount));
    fact(
      "Python",
      meta.python_version || "unknown",
      meta.python_version ? "the profiled interpreter, from its paths" : "the session does not record it"
    );
    head.appendChild(facts);
    if (meta.made_with) head.appendChild(el("p", "made-with", visible(meta.made_with)));
    const gil = gilTable(meta.gil);
    if (gil) head.appendChild(gil);
    if (phases.length) head.appendChild(phaseSelector());

    if (data.notes && data.notes.length) {
      const notes = el("ul", "notes");
      for (const note of data.notes) notes.appendChild(el("li", null, note));
      head.appendChild(notes);
    }
    return head;
  }

  // Each thread's share of its time holding, waiting for and outside the GIL, when one of
  // them waited for it (1% of its time or more); those that waited longest first.
  function gilTable(gil) {
    if (!gil) return null;
    const rows = Object.entries(gil)
      .map(([name, times]) => {
        const total = times[0] + times[1] + times[2];
        return { name, shares: times.map((t) => (total > 0 ? t / total : 0)) };
      })
      .filter((row) => row.shares.some((s) => s > 0))
      .sort((a, b) => b.shares[1] - a.shares[1]);
    if (!rows.some((row) => row.shares[1] >= 0.01)) return null;
    const table = el("table", "gil");
    table.title = "where each thread's sampled time went: running Python (holding the GIL), waiting for it, or in C code that let it go (sleeping, I/O, hashing...)";
    const head = el("tr");
    for (const label of ["GIL", "held", "waiting", "outside"]) head.appendChild(el("th", null, label));
    table.appendChild(head);
    for (const row of rows) {
      const tr = el("tr");
      tr.appendChild(el("td", null, visible(row.name)));
      row.shares.forEach((share, k) => {
        const td = el("td", k === 1 ? "gil-wait" : null, Math.round(share * 100) + "%");
        tr.appendChild(td);
      });
      table.appendChild(tr);
    }
    return table;
  }

  function phaseSelector() {
    const wrap = el("label", "phases", "Phase ");
    const select = el("select");
    select.id = "phase";
    const whole = el("option", null, "the whole run");
    whole.value = "0";
    select.appendChild(whole);
    phases.forEach((phase, i) => {
      const option = el("option", null, visible(phase.name) + " (" + formatDuration(phase.seconds) + ")");
      option.value = String(i + 1);
      select.appendChild(option);
    });
    select.value = String(phaseShown);
    select.addEventListener("change", () => {
      window.location.hash = select.value === "0" ? "" : "phase=" + select.value;
      window.location.reload();
    });
    wrap.appendChild(select);
    return wrap;
  }

  const views = {};
  const tabs = {};
  const toolbar = el("nav", "toolbar");
  const subbar = el("div", "toolbar sub");
  const main = el("main", "main");
  const statusbar = el("div", "statusbar");
  const tooltip = el("div", "tooltip");
  tooltip.hidden = true;
  tooltip.setAttribute("role", "tooltip");

  function segmented(label, choices, current, onChange) {
    const wrap = el("span", "control");
    if (label) wrap.appendChild(el("span", null, label));
    const seg = el("span", "seg");
    seg.setAttribute("role", "group");
    if (label) seg.setAttribute("aria-label", label);
    const buttons = {};
    for (const [value, text, disabled] of choices) {
      const b = el("button", null, text);
      b.type = "button";
      b.dataset.value = value;
      if (disabled) {
        b.disabled = true;
        b.title = disabled;
      }
      b.addEventListener("click", () => onChange(value));
      buttons[value] = b;
      seg.appendChild(b);
    }
    const update = (value) => {
      for (const key of Object.keys(buttons)) buttons[key].setAttribute("aria-pressed", String(key === value));
    };
    update(current);
    wrap.appendChild(seg);
    return { element: wrap, update };
  }

  let controls = {};

  function buildToolbar() {
    const tabList = el("div", "tabs");
    tabList.setAttribute("role", "tablist");
    for (const [key, label, shortcut] of [
      ["tree", "Call tree", "1"],
      ["flame", "Flame graph", "2"],
      ["timeline", "Timeline", "3"],
      ["lines", "Lines", "4"],
    ]) {
      const tab = el("button", "tab", label);
      tab.type = "button";
      tab.id = "tab-" + key;
      tab.setAttribute("role", "tab");
      tab.title = label + " (" + shortcut + ")";
      tab.addEventListener("click", () => showView(key));
      tabs[key] = tab;
      tabList.appendChild(tab);
    }
    toolbar.appendChild(tabList);

    if (threadCount > 1) {
      const wrap = el("label", "control");
      wrap.appendChild(el("span", null, "Thread"));
      const select = el("select");
      select.id = "thread-select";
      const all = el("option", null, "All threads (" + threadCount + ")");
      all.value = "";
      select.appendChild(all);
      threads.forEach((t, i) => {
        const option = el("option", null, threadLabel[i] + " – " + formatDuration(wallOf[threadNode(i)]));
        option.value = String(i);
        select.appendChild(option);
      });
      const current = selectedThread();
      select.value = current >= 0 ? String(current) : "";
      select.addEventListener("change", () => {
        settings.thread = select.value === "" ? null : threads[Number(select.value)].name;
        saveSettings();
        refresh();
      });
      wrap.appendChild(select);
      toolbar.appendChild(wrap);
      controls.thread = select;
    }

    controls.metric = segmented(
      "Time",
      [
        ["wall", "Wall"],
        ["cpu", "CPU", meta.has_cpu ? null : "this session has no CPU times"],
      ],
      settings.metric,
      (value) => {
        settings.metric = value;
        controls.metric.update(value);
        saveSettings();
        refresh();
      }
    );
    toolbar.appendChild(controls.metric.element);

    controls.format = segmented(
      "As",
      [
        ["seconds", "Seconds"],
        ["percent", "Percent"],
      ],
      settings.timeFormat,
      (value) => {
        settings.timeFormat = value;
        controls.format.update(value);
        saveSettings();
        refresh();
      }
    );
    toolbar.appendChild(controls.format.element);

    toolbar.appendChild(el("span", "spacer"));
    const searchWrap = el("label", "control");
    searchWrap.appendChild(el("span", null, "Search"));
    const search = el("input", "search");
    search.type = "search";
    search.id = "search";
    search.placeholder = "function or file  ( / )";
    search.setAttribute("aria-label", "Search functions and files");
    search.addEventListener("input", () => {
      state.search = search.value;
      refresh();
    });
    search.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        search.value = "";
        state.search = "";
        refresh();
        activeFocusTarget().focus();
      } else if (event.key === "Enter") {
        activeFocusTarget().focus();
      }
    });
    searchWrap.appendChild(search);
    const count = el("span", "count");
    count.id = "search-count";
    searchWrap.appendChild(count);
    toolbar.appendChild(searchWrap);
    controls.search = search;
    controls.searchCount = count;
  }

  function buildSubbar() {
    // view options for the tree and flame graph
    const fold = el("label", "control");
    const box = el("input");
    box.type = "checkbox";
    box.id = "fold-library";
    box.checked = settings.foldLibrary;
    box.addEventListener("change", () => {
      settings.foldLibrary = box.checked;
      saveSettings();
      refresh();
    });
    append(fold, box, el("span", null, "Fold library code"));
    fold.title = "Hide library frames the way the console report does (--show-all turns this off)";
    subbar.appendChild(fold);

    const patterns = el("span", "control");
    const hide = el("input", "pattern");
    hide.type = "text";
    hide.id = "hide-pattern";
    hide.placeholder = "*/requests/*";
    hide.value = settings.hidePattern;
    hide.title = "Files whose path matches this glob are folded like library code (--hide)";
    const show = el("input", "pattern");
    show.type = "text";
    show.id = "show-pattern";
    show.placeholder = "*/mylib/*";
    show.value = settings.showPattern;
    show.title = "Files whose path matches this glob are never folded (--show)";
    const onPattern = () => {
      for (const input of [hide, show]) {
        let valid = true;
        try {
          globToRegExp(input.value.trim());
        } catch (e) {
          valid = false;
        }
        input.setAttribute("aria-invalid", String(!valid));
      }
      settings.hidePattern = hide.value;
      settings.showPattern = show.value;
      frameKindCache = null;
      saveSettings();
      refresh();
    };
    hide.addEventListener("change", onPattern);
    show.addEventListener("change", onPattern);
    append(patterns, el("span", null, "Hide paths"), hide, el("span", null, "Show paths"), show);
    if (options.hide_regex || options.show_regex) {
      const cli = el("span", "cli-pattern");
      cli.textContent =
        "command line:" +
        (options.hide_regex ? " hide " + visible(options.hide_regex) : "") +
        (options.show_regex ? " show " + visible(options.show_regex) : "");
      patterns.appendChild(cli);
    }
    subbar.appendChild(patterns);
    controls.fold = box;
    controls.foldWrap = fold;
    controls.patterns = patterns;

    const thresholdWrap = el("label", "control");
    thresholdWrap.title = "Calls below this share of the total are folded into their caller (call tree only)";
    const threshold = el("input");
    threshold.type = "number";
    threshold.id = "threshold";
    threshold.min = "0";
    threshold.max = "100";
    threshold.step = "0.1";
    threshold.value = String(settings.threshold);
    threshold.addEventListener("change", () => {
      const value = parseFloat(threshold.value);
      settings.threshold = isFinite(value) ? clamp(value, 0, 100) : defaults.threshold;
      threshold.value = String(settings.threshold);
      saveSettings();
      refresh();
    });
    append(thresholdWrap, el("span", null, "Hide calls under"), threshold, el("span", null, "%"));
    subbar.appendChild(thresholdWrap);
    controls.threshold = threshold;
    controls.thresholdWrap = thresholdWrap;

    const expand = el("button", "btn", "Expand all");
    expand.type = "button";
    expand.id = "expand-all";
    expand.addEventListener("click", () => treeView.expandAll(true));
    const collapse = el("button", "btn", "Collapse all");
    collapse.type = "button";
    collapse.id = "collapse-all";
    collapse.addEventListener("click", () => treeView.expandAll(false));
    const treeButtons = el("span", "control");
    append(treeButtons, expand, collapse);
    subbar.appendChild(treeButtons);
    controls.treeButtons = treeButtons;

    const zoom = el("span", "control");
    for (const [text, title, action] of [
      ["−", "Zoom out (-)", () => activeCanvasView().zoomBy(2)],
      ["+", "Zoom in (+)", () => activeCanvasView().zoomBy(0.5)],
      ["Reset", "Show everything (0 or Esc)", () => activeCanvasView().reset()],
    ]) {
      const b = el("button", "btn", text);
      b.type = "button";
      b.title = title;
      b.addEventListener("click", action);
      zoom.appendChild(b);
    }
    const range = el("span", "range");
    range.id = "range";
    zoom.appendChild(range);
    subbar.appendChild(zoom);
    controls.zoom = zoom;
    controls.range = range;
  }

  const HELP = {
    tree: [
      ["↑ ↓", "move"],
      ["← →", "collapse / expand"],
      ["Shift+→ / Shift+←", "whole subtree"],
      ["Enter", "toggle"],
      ["L", "lines of the function"],
      ["/", "search"],
    ],
    flame: [
      ["Click", "focus"],
      ["Ctrl+wheel or + −", "zoom"],
      ["Drag, Shift+wheel, ← →", "pan"],
      ["Wheel, ↑ ↓", "scroll"],
      ["Esc / 0 / double-click", "reset"],
    ],
    timeline: [
      ["Click", "focus"],
      ["Ctrl+wheel or + −", "zoom"],
      ["Drag, Shift+wheel, ← →", "pan"],
      ["Wheel, ↑ ↓", "scroll"],
      ["Esc / 0 / double-click", "reset"],
    ],
    lines: [["Click a function", "its time per line"]],
  };

  function updateStatusbar(view) {
    statusbar.textContent = "";
    for (const [keys, what] of HELP[view] || []) {
      const item = el("span");
      append(item, el("kbd", null, keys), document.createTextNode(" " + what));
      statusbar.appendChild(item);
    }
  }

  // -- the call tree view ---------------------------------------------------------------

  const ROW_HEIGHT = 22;

  const treeView = (function () {
    const container = el("div", "tree");
    container.id = "tree";
    container.tabIndex = 0;
    container.setAttribute("role", "tree");
    container.setAttribute("aria-label", "Call tree");
    const rowsElement = el("div", "tree-rows");
    container.appendChild(rowsElement);

    let model = null; // the visible tree for the current settings
    let rows = { key: [], depth: [], parent: [] };
    let rowIndex = new Map();
    let selectedKey = null;
    const expanded = new Map(); // key -> explicitly expanded or not
    let searchExpanded = new Map();
    let searchQuery = "";
    const revealed = new Set(); // group roots whose hidden frames are shown

    // keys: node ids (>= 0) and hidden-frames rows (-2 - the node they are below)
    const groupKey = (n) => -2 - n;
    const groupParent = (key) => -2 - key;

    function buildModel() {
      const root = viewRoot();
      const m = metric();
      const values = m.values;
      const total = values[root];
      const limit = Math.max((settings.threshold / 100) * total, 0);
      const folding = settings.foldLibrary ? computeFolding(root, values, limit) : null;
      const sorted = childrenBy(m);
      const matches = frameMatches();
      const kept = (c) => values[c] >= limit && values[c] > 0;
      // with a search: which nodes have a match in their subtree
      let subtreeMatch = null;
      let matchCount = 0;
      if (matches) {
        subtreeMatch = new Uint8Array(nodeCount);
        const order = [];
        const stack = [root];
        while (stack.length) {
          const n = stack.pop();
          order.push(n);
          for (let i = childStart[n]; i < childStart[n + 1]; i++) if (kept(childList[i])) stack.push(childList[i]);
        }
        for (let k = order.length - 1; k >= 0; k--) {
          const n = order[k];
          if (n !== root && frameOf[n] >= 0 && matches[frameOf[n]]) {
            subtreeMatch[n] = 1;
            matchCount++;
          }
          if (subtreeMatch[n] && parentOf[n] >= 0) subtreeMatch[parentOf[n]] = 1;
        }
      }
      return { root, metric: m, values, total, limit, folding, sorted, matches, subtreeMatch, matchCount, kept };
    }

    function keptChildren(n) {
      const out = [];
      for (let i = childStart[n]; i < childStart[n + 1]; i++) {
        const c = model.sorted[i];
        if (model.kept(c)) out.push(c);
      }
      // a [self] node alone says what its parent's row says (as in the console)
      if (chronological && out.length === 1 && isSelfNode(out[0])) out.pop();
      return out;
    }

    function isRevealed(groupRootNode) {
      return revealed.has(groupRootNode);
    }

    // a function's own time (not in any callee) gets a row of its own when it has callees
    const SELF_ROWS = nodeCount;
    const selfKey = (n) => SELF_ROWS + n;
    function selfValue(n) {
      let own = model.values[n];
      for (let i = childStart[n]; i < childStart[n + 1]; i++) own -= model.values[childList[i]];
      return own > 1e-9 ? own : 0;
    }
    function rowValue(key) {
      return key >= SELF_ROWS ? selfValue(key - SELF_ROWS) : model.values[key];
    }
    function withSelf(n, list, evenAlone) {
      if (chronological || frameOf[n] < 0 || (!list.length && !evenAlone)) return list;
      const own = selfValue(n);
      if (!(own > 0 && own >= model.limit)) return list;
      if (model.matches && !model.matches[frameOf[n]]) return list;
      const out = list.concat([selfKey(n)]);
      out.sort((a, b) => rowValue(b) - rowValue(a) || (a >= SELF_ROWS) - (b >= SELF_ROWS) || a - b);
      return out;
    }

    // the rows below a row, in display order
    function displayChildren(key) {
      let out;
      if (key >= SELF_ROWS) return [];
      if (key >= 0) {
        const kids = keptChildren(key);
        out = withSelf(key, kids, false);
        const folding = model.folding;
        if (folding) {
          let hiddenKid = -1;
          for (const c of kids)
            if (folding.hidden[c]) {
              hiddenKid = c;
              break;
            }
          if (hiddenKid >= 0) {
            const g = folding.groupRoot[hiddenKid];
            let reveal = isRevealed(g);
            if (!reveal && model.subtreeMatch) {
              // a match inside hidden frames: show them while searching
              for (const c of kids) if (folding.hidden[c] && subtreeHasHiddenMatch(c)) reveal = true;
            }
            if (!reveal) out = [groupKey(key)];
          }
        }
      } else {
        const n = groupParent(key);
        out = surfaced(n).nodes;
        if (!chronological) out.sort((a, b) => model.values[b] - model.values[a] || a - b);
        out = withSelf(n, out, true);
      }
      if (model.subtreeMatch)
        out = out.filter((k) => (k >= SELF_ROWS ? true : k >= 0 ? model.subtreeMatch[k] : groupHasMatch(k)));
      return out;
    }

    function subtreeHasHiddenMatch(n) {
      // is there a match among hidden frames reached from n through hidden frames?
      const stack = [n];
      while (stack.length) {
        const c = stack.pop();
        if (!model.folding.hidden[c]) continue;
        if (model.matches[frameOf[c]]) return true;
        for (const k of keptChildren(c)) stack.push(k);
      }
      return false;
    }

    function groupHasMatch(key) {
      return surfaced(groupParent(key)).nodes.some((n) => model.subtreeMatch[n]);
    }

    // below n: the first visible frames reached through hidden ones, and the hidden ones
    function surfaced(n) {
      const nodes = [];
      const hiddenNodes = [];
      const stack = keptChildren(n).reverse();
      while (stack.length) {
        const c = stack.pop();
        if (model.folding.hidden[c]) {
          hiddenNodes.push(c);
          const kids = keptChildren(c);
          for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
        } else nodes.push(c);
      }
      return { nodes, hidden: hiddenNodes };
    }

    function hasChildren(key) {
      return displayChildren(key).length > 0;
    }

    const AUTO_EXPAND_SHARE = 0.05;

    function isExpanded(key) {
      if (model.subtreeMatch) {
        if (searchExpanded.has(key)) return searchExpanded.get(key);
        // expanded when a match lies below
        if (key >= SELF_ROWS) return false;
        if (key < 0) return true;
        // open when a match lies below
        return displayChildren(key).some((c) => (c >= SELF_ROWS ? false : c >= 0 ? model.subtreeMatch[c] : true));
      }
      if (expanded.has(key)) return expanded.get(key);
      if (key >= SELF_ROWS) return false;
      if (key < 0) return true;
      if (key === model.root) return true;
      return model.values[key] >= AUTO_EXPAND_SHARE * model.total && parentOf[key] >= 0;
    }

    function setExpanded(key, value) {
      (model.subtreeMatch ? searchExpanded : expanded).set(key, value);
    }

    function flatten() {
      const key = [], depth = [], parent = [];
      const stackKey = [], stackDepth = [], stackParent = [];
      const top = displayChildren(model.root);
      for (let i = top.length - 1; i >= 0; i--) {
        stackKey.push(top[i]);
        stackDepth.push(0);
        stackParent.push(-1);
      }
      while (stackKey.length) {
        const k = stackKey.pop(), d = stackDepth.pop(), p = stackParent.pop();
        const index = key.length;
        key.push(k);
        depth.push(d);
        parent.push(p);
        if (isExpanded(k)) {
          const kids = displayChildren(k);
          for (let i = kids.length - 1; i >= 0; i--) {
            stackKey.push(kids[i]);
            stackDepth.push(d + 1);
            stackParent.push(index);
          }
        }
      }
      rows = { key, depth, parent };
      rowIndex = new Map();
      for (let i = 0; i < key.length; i++) rowIndex.set(key[i], i);
    }

    function update() {
      const query = state.search.trim().toLowerCase();
      if (query !== searchQuery) {
        searchQuery = query;
        searchExpanded = new Map();
      }
      model = buildModel();
      flatten();
      if (selectedKey === null || !rowIndex.has(selectedKey)) selectedKey = rows.key.length ? rows.key[0] : null;
      rowsElement.style.height = rows.key.length * ROW_HEIGHT + "px";
      draw();
      if (controls.searchCount && settings.view === "tree") {
        controls.searchCount.textContent = model.matches ? plural(model.matchCount, "call") : "";
      }
      if (!rows.key.length) {
        rowsElement.textContent = "";
        const message = el("div", "empty", dataNodes ? (model.matches ? "No call matches the search." : "Nothing above the threshold.") : "No samples were recorded.");
        rowsElement.appendChild(message);
      }
    }

    function timeClass(share) {
      if (share > 0.6) return "t-red";
      if (share > 0.2) return "t-yellow";
      if (share > 0.05) return "t-green";
      return "t-dim";
    }

    function formatValue(value) {
      return settings.timeFormat === "percent" ? percent(value, model.total) : formatSeconds(value);
    }

    function rowElement(i) {
      const key = rows.key[i];
      const row = el("div", "row");
      row.setAttribute("role", "treeitem");
      row.setAttribute("aria-level", String(rows.depth[i] + 1));
      row.dataset.row = String(i);
      row.style.top = i * ROW_HEIGHT + "px";
      row.style.paddingLeft = 6 + rows.depth[i] * 16 + "px";
      if (model.metric.name === "cpu") row.classList.add("cpu");
      const children = hasChildren(key);
      const open = children && isExpanded(key);
      if (children) row.setAttribute("aria-expanded", String(open));
      if (key === selectedKey) {
        row.classList.add("selected");
        row.setAttribute("aria-selected", "true");
        row.id = "tree-selected-row";
      }
      const caret = el("span", "caret", children ? (open ? "▾" : "▸") : "");
      caret.dataset.toggle = "1";
      row.appendChild(caret);

      if (key < 0) {
        // hidden library frames
        const info = surfaced(groupParent(key));
        const count = info.hidden.filter((n) => frameOf[n] >= 0 && frameShort[frameOf[n]] !== "").length;
        row.classList.add("group");
        row.appendChild(el("span", "time", ""));
        row.appendChild(el("span", "bar")).style.visibility = "hidden";
        row.appendChild(el("span", "name", count + " frame" + (count === 1 ? "" : "s") + " hidden"));
        let libs = librariesOf(info.hidden, model.values, model.limit);
        if (libs.length > 6) libs = libs.slice(0, 6).concat(["…"]);
        if (libs.length) row.appendChild(el("span", "libs", libs.join(", ")));
        const show = el("button", "linkish", "show");
        show.type = "button";
        show.dataset.reveal = "1";
        show.title = "Show the library frames hidden here";
        row.appendChild(show);
        row.title = count + " library frames hidden: " + libs.join(", ");
        return row;
      }

      if (key >= SELF_ROWS) {
        // the caller's own time
        const n = key - SELF_ROWS;
        const value = selfValue(n);
        const share = model.total > 0 ? value / model.total : 0;
        row.classList.add("self");
        row.appendChild(el("span", "time " + timeClass(share), formatValue(value)));
        const bar = el("span", "bar");
        bar.appendChild(el("span")).style.width = (share * 100).toFixed(1) + "%";
        row.appendChild(bar);
        // below a "frames hidden" row it would read as the hidden frames' time: say whose
        const underGroup = displayChildren(n).some((k) => k < 0);
        row.appendChild(el("span", "name", underGroup ? "[self] (in " + nodeName(n) + ")" : "[self]"));
        row.appendChild(el("span", "loc", frameShort[frameOf[n]]));
        row.title = "time spent in " + nodeName(n) + " itself, not in a function it called";
        return row;
      }

      const value = model.values[key];
      const share = model.total > 0 ? value / model.total : 0;
      const f = frameOf[key];
      const time = el("span", "time " + timeClass(share), formatValue(value));
      row.appendChild(time);
      const bar = el("span", "bar");
      bar.appendChild(el("span")).style.width = (share * 100).toFixed(1) + "%";
      row.appendChild(bar);
      const name = el("span", "name");
      markedText(name, nodeName(key));
      row.appendChild(name);
      if (f >= 0) {
        row.classList.add(frameIsApp[f] ? "is-app" : "is-lib");
        if (model.folding && model.folding.hidden[key]) row.classList.add("revealed");
        const loc = el("span", "loc");
        markedText(loc, frameLocation(f));
        row.appendChild(loc);
        if (!frameIsApp[f] && frameLib[f] && frameLib[f][0] !== "<") row.appendChild(el("span", "libtag", frameLib[f]));
        if (model.folding && model.folding.groupRoot[key] === key && isRevealed(key)) {
          const fold = el("button", "linkish", "fold");
          fold.type = "button";
          fold.dataset.fold = "1";
          fold.title = "Fold the library frames below this call again";
          row.appendChild(fold);
        }
        row.title = tooltipText(key, model.metric);
      } else {
        row.classList.add("thread");
      }
      return row;
    }

    function draw() {
      const total = rows.key.length;
      if (!total) return;
      const top = container.scrollTop;
      const height = container.clientHeight || 600;
      const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - 10);
      const last = Math.min(total, Math.ceil((top + height) / ROW_HEIGHT) + 10);
      const fragment = document.createDocumentFragment();
      for (let i = first; i < last; i++) fragment.appendChild(rowElement(i));
      rowsElement.textContent = "";
      rowsElement.appendChild(fragment);
      if (rowsElement.querySelector("#tree-selected-row")) container.setAttribute("aria-activedescendant", "tree-selected-row");
      else container.removeAttribute("aria-activedescendant");
    }

    let drawPending = false;
    container.addEventListener("scroll", () => {
      if (drawPending) return;
      drawPending = true;
      requestAnimationFrame(() => {
        drawPending = false;
        draw();
      });
    });

    function toggle(key, value) {
      const now = isExpanded(key);
      setExpanded(key, value === undefined ? !now : value);
    }

    // expand or collapse a whole subtree (the displayed one)
    function setSubtree(key, value) {
      const stack = [key];
      let count = 0;
      while (stack.length && count < 200000) {
        const k = stack.pop();
        count++;
        const kids = displayChildren(k);
        if (!kids.length) continue;
        setExpanded(k, value);
        for (const c of kids) stack.push(c);
      }
    }

    function expandAll(value) {
      for (const k of displayChildren(model.root)) setSubtree(k, value);
      rerender();
    }

    function rerender() {
      flatten();
      rowsElement.style.height = rows.key.length * ROW_HEIGHT + "px";
      draw();
    }

    function select(key, scroll) {
      selectedKey = key;
      const node = key !== null && key >= SELF_ROWS ? key - SELF_ROWS : key;
      if (node !== null && node >= 0 && frameOf[node] >= 0) {
        state.selectedFrame = frameOf[node];
      }
      if (scroll) scrollToSelected();
      draw();
    }

    function scrollToSelected() {
      const i = rowIndex.get(selectedKey);
      if (i === undefined) return;
      const top = i * ROW_HEIGHT;
      if (top < container.scrollTop) container.scrollTop = top;
      else if (top + ROW_HEIGHT > container.scrollTop + container.clientHeight)
        container.scrollTop = top + ROW_HEIGHT - container.clientHeight;
    }

    container.addEventListener("click", (event) => {
      const rowEl = event.target.closest(".row");
      if (!rowEl) return;
      const i = Number(rowEl.dataset.row);
      const key = rows.key[i];
      if (event.target.dataset.reveal) {
        const first = surfaced(groupParent(key)).hidden[0];
        if (first !== undefined) revealed.add(model.folding.groupRoot[first]);
        select(groupParent(key), false);
        update();
        return;
      }
      if (event.target.dataset.fold) {
        revealed.delete(key);
        update();
        return;
      }
      select(key, false);
      if (event.target.dataset.toggle || event.detail === 2) {
        if (event.shiftKey || event.altKey) setSubtree(key, !isExpanded(key));
        else toggle(key);
        rerender();
      }
    });
    container.addEventListener("dblclick", (event) => event.preventDefault());

    container.addEventListener("keydown", (event) => {
      if (!rows.key.length) return;
      let i = rowIndex.get(selectedKey);
      if (i === undefined) i = 0;
      const key = rows.key[i];
      const page = Math.max(1, Math.floor(container.clientHeight / ROW_HEIGHT) - 1);
      let handled = true;
      switch (event.key) {
        case "ArrowDown":
          select(rows.key[Math.min(i + 1, rows.key.length - 1)], true);
          break;
        case "ArrowUp":
          select(rows.key[Math.max(i - 1, 0)], true);
          break;
        case "PageDown":
          select(rows.key[Math.min(i + page, rows.key.length - 1)], true);
          break;
        case "PageUp":
          select(rows.key[Math.max(i - page, 0)], true);
          break;
        case "Home":
          select(rows.key[0], true);
          break;
        case "End":
          select(rows.key[rows.key.length - 1], true);
          break;
        case "ArrowRight":
          if (event.shiftKey || event.altKey) {
            setSubtree(key, true);
            rerender();
          } else if (hasChildren(key) && !isExpanded(key)) {
            toggle(key, true);
            rerender();
          } else if (hasChildren(key) && i + 1 < rows.key.length) select(rows.key[i + 1], true);
          break;
        case "ArrowLeft":
          if (event.shiftKey || event.altKey) {
            setSubtree(key, false);
            rerender();
          } else if (hasChildren(key) && isExpanded(key)) {
            toggle(key, false);
            rerender();
          } else if (rows.parent[i] >= 0) select(rows.key[rows.parent[i]], true);
          break;
        case "Enter":
        case " ":
          if (hasChildren(key)) {
            toggle(key);
            rerender();
          }
          break;
        case "*":
          setSubtree(key, true);
          rerender();
          break;
        case "l":
        case "L": {
          const node = key >= SELF_ROWS ? key - SELF_ROWS : key;
          if (node >= 0 && frameOf[node] >= 0) {
            state.selectedFrame = frameOf[node];
            showView("lines");
          }
          break;
        }
        default:
          handled = false;
      }
      if (handled) {
        event.preventDefault();
        event.stopPropagation();
      }
    });

    function tooltipText(n, m) {
      const f = frameOf[n];
      const lines = [nodeName(n)];
      if (f >= 0 && frameFile[f]) lines.push(frameFile[f] + (frames.line[f] ? ":" + frames.line[f] : ""));
      if (f >= 0 && !frameIsApp[f] && frameLib[f]) lines.push("library: " + frameLib[f]);
      lines.push("wall " + formatSeconds(wallOf[n]) + " s (" + percent(wallOf[n], wallOf[model.root]) + ")");
      if (meta.has_cpu) lines.push("CPU " + formatSeconds(cpuOf[n]) + " s (" + percent(cpuOf[n], cpuOf[model.root]) + ")");
      return lines.join("\n");
    }

    // the row of the selected function (from another view), if it is in the tree
    function revealFrame(f) {
      if (f < 0) return;
      const current = selectedKey !== null && selectedKey >= 0 && selectedKey < SELF_ROWS ? frameOf[selectedKey] : -1;
      if (current === f) return;
      for (let i = 0; i < rows.key.length; i++) {
        if (rows.key[i] >= 0 && rows.key[i] < SELF_ROWS && frameOf[rows.key[i]] === f) {
          selectedKey = rows.key[i];
          scrollToSelected();
          draw();
          return;
        }
      }
    }

    return {
      element: container,
      update,
      draw,
      expandAll,
      revealFrame,
      focusTarget: container,
      rowCount: () => rows.key.length,
    };
  })();

  // -- canvas views: shared zoom, pan and drawing --------------------------------------

  function cssColor(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  let palette = null;
  function colors() {
    if (palette) return palette;
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    palette = {
      dark,
      bg: cssColor("--canvas-bg") || "#fff",
      text: cssColor("--canvas-text") || "#000",
      grid: cssColor("--canvas-grid") || "#ddd",
      gap: cssColor("--canvas-gap") || "#eee",
      muted: cssColor("--muted") || "#666",
      accent: cssColor("--accent") || "#06c",
      dim: parseFloat(cssColor("--canvas-dim")) || 0.25,
      frameColor: new Map(),
    };
    return palette;
  }
  if (window.matchMedia) {
    const query = window.matchMedia("(prefers-color-scheme: dark)");
    const reset = () => {
      palette = null;
      refresh();
    };
    if (query.addEventListener) query.addEventListener("change", reset);
  }

  // application code in warm colours, libraries in cool greys tinted by library
  function frameColor(f) {
    const p = colors();
    let c = p.frameColor.get(f);
    if (c) return c;
    if (f < 0) c = p.dark ? "#30363d" : "#d8dee4";
    else if (frames.name[f] === "[GIL wait]") c = p.dark ? "#8e1519" : "#ff8182"; // time lost to the GIL
    else if (frameIsApp[f]) {
      const h = 18 + (hashString(frames.file[f] + "\0" + frames.name[f]) % 36);
      c = p.dark ? "hsl(" + h + ",62%,38%)" : "hsl(" + h + ",85%,68%)";
    } else {
      const h = 195 + (hashString(frames.lib[f] || frames.file[f]) % 60);
      c = p.dark ? "hsl(" + h + ",16%,30%)" : "hsl(" + h + ",22%,80%)";
    }
    p.frameColor.set(f, c);
    return c;
  }

  function textColorFor() {
    return colors().dark ? "#f0f3f6" : "#1f2328";
  }

  function truncate(ctx, text, width, cache) {
    const full = cache.get(text);
    let w = full;
    if (w === undefined) {
      w = ctx.measureText(text).width;
      cache.set(text, w);
    }
    if (w <= width) return text;
    // shorten by proportion, then fix
    let n = Math.floor((text.length * width) / w) - 1;
    while (n > 0) {
      const candidate = text.slice(0, n) + "…";
      if (ctx.measureText(candidate).width <= width) return candidate;
      n--;
    }
    return "";
  }

  function showTooltip(x, y, build) {
    tooltip.textContent = "";
    build(tooltip);
    tooltip.hidden = false;
    const pad = 14;
    const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    let left = x + pad, top = y + pad;
    if (left + w > window.innerWidth - 4) left = Math.max(4, x - w - pad);
    if (top + h > window.innerHeight - 4) top = Math.max(4, y - h - pad);
    tooltip.style.left = left + "px";
    tooltip.style.top = top + "px";
  }

  function hideTooltip() {
    tooltip.hidden = true;
  }

  function frameTooltip(box, f, fallbackName, rows) {
    const name = el("div", "tt-name" + (f >= 0 && frameIsApp[f] ? " is-app" : ""), f >= 0 ? frameName[f] : fallbackName);
    box.appendChild(name);
    if (f >= 0 && frameFile[f]) box.appendChild(el("div", "tt-loc", frameFile[f] + (frames.line[f] ? ":" + frames.line[f] : "")));
    const table = el("table");
    if (f >= 0 && !frameIsApp[f] && frameLib[f] && frameLib[f][0] !== "<") rows = [["library", frameLib[f]]].concat(rows);
    for (const [k, v] of rows) {
      const tr = el("tr");
      append(tr, el("td", null, k), el("td", null, v));
      table.appendChild(tr);
    }
    box.appendChild(table);
  }

  // A horizontally zoomable, vertically scrollable canvas; subclasses give content.
  function CanvasView(id, label) {
    const wrap = el("div", "canvas-wrap");
    const canvas = el("canvas");
    canvas.id = id;
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", label);
    wrap.appendChild(canvas);
    const view = {
      wrap,
      canvas,
      focusTarget: canvas,
      x0: 0,
      x1: 1,
      scrollY: 0,
      extent: 1, // the full x range is [0, extent]
      contentHeight: 0,
      top: 0, // pixels above the scrolled content (axis)
      width: 0,
      height: 0,
      animation: null,
      pending: false,
    };

    view.resize = function () {
      const ratio = window.devicePixelRatio || 1;
      const rect = wrap.getBoundingClientRect();
      view.width = Math.max(1, Math.floor(rect.width));
      view.height = Math.max(1, Math.floor(rect.height));
      canvas.width = Math.floor(view.width * ratio);
      canvas.height = Math.floor(view.height * ratio);
      view.ratio = ratio;
    };

    view.requestDraw = function () {
      if (view.pending) return;
      view.pending = true;
      requestAnimationFrame(() => {
        view.pending = false;
        view.draw();
      });
    };

    view.clampView = function () {
      let span = view.x1 - view.x0;
      const minSpan = view.extent * 1e-7 || 1e-9;
      if (span < minSpan) {
        const mid = (view.x0 + view.x1) / 2;
        view.x0 = mid - minSpan / 2;
        view.x1 = mid + minSpan / 2;
        span = minSpan;
      }
      if (span > view.extent) {
        view.x0 = 0;
        view.x1 = view.extent;
      }
      if (view.x0 < 0) {
        view.x1 -= view.x0;
        view.x0 = 0;
      }
      if (view.x1 > view.extent) {
        view.x0 -= view.x1 - view.extent;
        view.x1 = view.extent;
      }
      const maxScroll = Math.max(0, view.contentHeight - (view.height - view.top) + 20);
      view.scrollY = clamp(view.scrollY, 0, maxScroll);
    };

    view.setRange = function (a, b, animate) {
      if (view.animation) cancelAnimationFrame(view.animation);
      view.animation = null;
      view.target = [a, b];
      if (!animate) {
        view.x0 = a;
        view.x1 = b;
        view.clampView();
        view.draw();
        return;
      }
      const from0 = view.x0, from1 = view.x1;
      const start = performance.now();
      const step = (now) => {
        const t = clamp((now - start) / 220, 0, 1);
        const e = t < 0.5 ? 2 * t * t : 1 - Math.pow(-2 * t + 2, 2) / 2;
        view.x0 = from0 + (a - from0) * e;
        view.x1 = from1 + (b - from1) * e;
        view.clampView();
        view.draw();
        view.animation = t < 1 ? requestAnimationFrame(step) : null;
        if (!view.animation) view.target = null;
      };
      view.animation = requestAnimationFrame(step);
    };

    // where the view is, or is going to when it is moving
    view.current = function () {
      return view.animation && view.target ? view.target : [view.x0, view.x1];
    };

    view.zoomBy = function (factor, atX) {
      const [x0, x1] = view.current();
      const span = x1 - x0;
      const anchor = atX === undefined ? 0.5 : clamp(atX / view.width, 0, 1);
      const center = x0 + span * anchor;
      const next = span * factor;
      view.setRange(center - next * anchor, center - next * anchor + next, atX === undefined);
    };

    view.reset = function () {
      view.scrollY = 0;
      view.setRange(0, view.extent, true);
    };

    view.panBy = function (dxPixels) {
      const span = view.x1 - view.x0;
      const dx = (dxPixels / view.width) * span;
      view.x0 += dx;
      view.x1 += dx;
      view.clampView();
      view.requestDraw();
    };

    view.xToTime = (x) => view.x0 + (x / view.width) * (view.x1 - view.x0);
    view.timeToX = (t) => ((t - view.x0) / (view.x1 - view.x0)) * view.width;

    canvas.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        hideTooltip();
        const rect = canvas.getBoundingClientRect();
        const dy = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
        const dx = event.deltaMode === 1 ? event.deltaX * 16 : event.deltaX;
        if (event.ctrlKey || event.metaKey) {
          view.zoomBy(Math.pow(1.0025, dy), event.clientX - rect.left);
        } else if (event.shiftKey) {
          view.panBy(dy || dx);
        } else {
          if (dx) view.panBy(dx);
          if (dy) {
            view.scrollY += dy;
            view.clampView();
            view.requestDraw();
          }
        }
      },
      { passive: false }
    );

    let drag = null;
    canvas.addEventListener("mousedown", (event) => {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, moved: false };
    });
    window.addEventListener("mousemove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      canvas.classList.add("dragging");
      hideTooltip();
      drag.x = event.clientX;
      drag.y = event.clientY;
      view.panBy(-dx);
      view.scrollY -= dy;
      view.clampView();
      view.requestDraw();
    });
    window.addEventListener("mouseup", () => {
      if (drag && drag.moved) view.justDragged = true;
      drag = null;
      canvas.classList.remove("dragging");
    });
    canvas.addEventListener("mousemove", (event) => {
      if (drag && drag.moved) return;
      const rect = canvas.getBoundingClientRect();
      view.hover(event.clientX - rect.left, event.clientY - rect.top, event.clientX, event.clientY);
    });
    canvas.addEventListener("mouseleave", () => {
      hideTooltip();
      if (view.hovered !== undefined && view.hovered !== null) {
        view.hovered = null;
        view.requestDraw();
      }
    });
    canvas.addEventListener("click", (event) => {
      if (view.justDragged) {
        view.justDragged = false;
        return;
      }
      const rect = canvas.getBoundingClientRect();
      view.click(event.clientX - rect.left, event.clientY - rect.top);
    });
    canvas.addEventListener("dblclick", () => view.reset());
    canvas.addEventListener("keydown", (event) => {
      const [x0, x1] = view.current();
      const span = x1 - x0;
      let handled = true;
      switch (event.key) {
        case "+":
        case "=":
          view.zoomBy(0.5);
          break;
        case "-":
        case "_":
          view.zoomBy(2);
          break;
        case "0":
        case "Escape":
          view.reset();
          break;
        case "ArrowLeft":
          view.setRange(x0 - span * 0.2, x1 - span * 0.2, true);
          break;
        case "ArrowRight":
          view.setRange(x0 + span * 0.2, x1 + span * 0.2, true);
          break;
        case "ArrowUp":
          view.scrollY -= 60;
          view.clampView();
          view.requestDraw();
          break;
        case "ArrowDown":
          view.scrollY += 60;
          view.clampView();
          view.requestDraw();
          break;
        default:
          handled = false;
      }
      if (handled) event.preventDefault();
    });

    view.beginDraw = function () {
      if (!view.width || canvas.width !== Math.floor(view.width * (window.devicePixelRatio || 1))) view.resize();
      const rect = wrap.getBoundingClientRect();
      if (Math.floor(rect.width) !== view.width || Math.floor(rect.height) !== view.height) view.resize();
      const ctx = canvas.getContext("2d");
      ctx.setTransform(view.ratio, 0, 0, view.ratio, 0, 0);
      const p = colors();
      ctx.fillStyle = p.bg;
      ctx.fillRect(0, 0, view.width, view.height);
      ctx.font = "12px " + (getComputedStyle(document.body).fontFamily || "sans-serif");
      ctx.textBaseline = "middle";
      return ctx;
    };

    return view;
  }

  // nice tick steps for a time axis: 1-2-5 below a second, clock steps above
  const CLOCK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
  function tickStep(span, pixels) {
    const target = span / Math.max(pixels / 110, 1);
    if (target > 1) {
      for (const step of CLOCK_STEPS) if (step >= target) return step;
      return Math.ceil(target / 86400) * 86400;
    }
    const power = Math.pow(10, Math.floor(Math.log10(target)));
    for (const m of [1, 2, 5, 10]) if (m * power >= target) return m * power;
    return 10 * power;
  }

  const BAR_HEIGHT = 18;
  const textCache = new Map();

  // -- flame graph --------------------------------------------------------------------

  const flameView = (function () {
    const view = CanvasView("flamegraph", "Flame graph");
    let layout = null; // {root, metric, x: Float64Array, level: Int32Array, drawn: Uint8Array, maxLevel, key}
    let hits = []; // [x, y, w, node] of the bars drawn

    function layoutKey() {
      return [viewRoot(), settings.metric, settings.foldLibrary, settings.hidePattern, settings.showPattern].join("|");
    }

    function build() {
      const key = layoutKey();
      if (layout && layout.key === key) return;
      const root = viewRoot();
      const m = metric();
      const values = m.values;
      const sorted = childrenBy(m);
      const folding = settings.foldLibrary ? computeFolding(root, values, 0) : null;
      const x = new Float64Array(nodeCount);
      const level = new Int32Array(nodeCount).fill(-1);
      const drawn = new Uint8Array(nodeCount);
      let maxLevel = 0;
      const stack = [root];
      level[root] = 0;
      drawn[root] = 1;
      while (stack.length) {
        const n = stack.pop();
        let offset = x[n];
        // a hidden node passes its level to its children
        const base = drawn[n] ? level[n] : level[n];
        for (let i = childStart[n]; i < childStart[n + 1]; i++) {
          const c = sorted[i];
          if (!(values[c] > 0)) continue;
          x[c] = offset;
          offset += values[c];
          if (folding && folding.hidden[c]) {
            level[c] = base;
          } else {
            level[c] = base + 1;
            drawn[c] = 1;
            if (level[c] > maxLevel) maxLevel = level[c];
          }
          stack.push(c);
        }
      }
      const previousRoot = layout ? layout.root : -1;
      layout = { key, root, values, x, level, drawn, maxLevel };
      view.extent = values[root] || 1;
      view.contentHeight = (maxLevel + 1) * BAR_HEIGHT;
      if (previousRoot !== root || view.x1 > view.extent || view.x1 - view.x0 <= 0) {
        view.x0 = 0;
        view.x1 = view.extent;
      }
      view.clampView();
    }

    view.draw = function () {
      if (settings.view !== "flame") return;
      build();
      const ctx = view.beginDraw();
      const p = colors();
      const values = layout.values;
      const matches = frameMatches();
      const scale = view.width / (view.x1 - view.x0);
      const top = view.top - view.scrollY;
      hits = [];
      const stack = [layout.root];
      let drawnCount = 0;
      while (stack.length) {
        const n = stack.pop();
        const w = values[n] * scale;
        if (w < 0.35) continue;
        const x = (layout.x[n] - view.x0) * scale;
        if (x > view.width || x + w < 0) continue;
        if (layout.drawn[n]) {
          const y = top + layout.level[n] * BAR_HEIGHT;
          if (y > -BAR_HEIGHT && y < view.height) {
            const f = frameOf[n];
            const left = Math.max(x, -1), right = Math.min(x + w, view.width + 1);
            const dim = matches && !(f >= 0 && matches[f]);
            ctx.globalAlpha = dim ? p.dim : 1;
            ctx.fillStyle = f >= 0 ? frameColor(f) : frameColor(-1);
            ctx.fillRect(left, y, Math.max(right - left - (w > 3 ? 1 : 0), 0.5), BAR_HEIGHT - 1);
            if (f >= 0 && f === state.selectedFrame) {
              ctx.strokeStyle = p.accent;
              ctx.lineWidth = 2;
              ctx.strokeRect(left + 1, y + 1, Math.max(right - left - 3, 0), BAR_HEIGHT - 3);
            }
            if (right - left > 28) {
              ctx.fillStyle = textColorFor();
              const label = truncate(ctx, nodeName(n), right - left - 8, textCache);
              if (label) ctx.fillText(label, left + 4, y + BAR_HEIGHT / 2);
            }
            ctx.globalAlpha = 1;
            hits.push([left, y, right - left, n]);
            drawnCount++;
          }
        }
        for (let i = childStart[n + 1] - 1; i >= childStart[n]; i--) stack.push(childList[i]);
      }
      updateRange();
      view.canvas.dataset.bars = String(drawnCount);
    };

    function updateRange() {
      if (settings.view !== "flame") return;
      const span = view.x1 - view.x0;
      const zoomed = span < view.extent * 0.999;
      const focus = focused >= 0 && Math.abs(layout.x[focused] - view.x0) < span * 1e-6 && Math.abs(layout.values[focused] - span) < span * 1e-6;
      // with several threads the whole is their times added up, not the run's duration
      const whole =
        layout.root === ROOT && threadCount > 1
          ? formatDuration(view.extent) + " of " + metric().label.toLowerCase() + " time, " + threadCount + " threads added up"
          : formatDuration(view.extent) + " " + metric().label.toLowerCase() + " time";
      controls.range.textContent = zoomed
        ? (focus ? "Focused on " + nodeName(focused) + ": " : "Zoomed: ") + percent(span, view.extent) + " of " + whole
        : whole;
    }

    function hitAt(x, y) {
      for (let i = hits.length - 1; i >= 0; i--) {
        const [hx, hy, hw, n] = hits[i];
        if (x >= hx && x < hx + Math.max(hw, 1) && y >= hy && y < hy + BAR_HEIGHT) return n;
      }
      return -1;
    }

    view.hover = function (x, y, clientX, clientY) {
      const n = hitAt(x, y);
      if (n < 0) {
        hideTooltip();
        return;
      }
      const f = frameOf[n];
      const values = layout.values;
      let self = values[n];
      for (let i = childStart[n]; i < childStart[n + 1]; i++) self -= values[childList[i]];
      const rows = [
        ["total", formatSeconds(values[n]) + " s (" + percent(values[n], values[layout.root]) + ")"],
        ["self", formatSeconds(Math.max(self, 0)) + " s"],
      ];
      if (meta.has_cpu && settings.metric === "wall") rows.push(["CPU", formatSeconds(cpuOf[n]) + " s"]);
      if (settings.metric === "cpu") rows.push(["wall", formatSeconds(wallOf[n]) + " s"]);
      showTooltip(clientX, clientY, (box) => frameTooltip(box, f, nodeName(n), rows));
    };

    let focused = -1;
    view.click = function (x, y) {
      const n = hitAt(x, y);
      if (n < 0) return;
      if (frameOf[n] >= 0) state.selectedFrame = frameOf[n];
      focused = n;
      view.setRange(layout.x[n], layout.x[n] + layout.values[n], true);
    };

    view.update = function () {
      focused = -1;
      layout = null;
      view.requestDraw();
    };
    return view;
  })();

  // -- timeline -----------------------------------------------------------------------

  const timelineView = (function () {
    const view = CanvasView("timeline", "Timeline");
    view.top = 26; // the time axis
    const timeline = data.timeline;
    const stacks = timeline ? timeline.stacks : { parent: [], frame: [] };
    const trieCount = stacks.parent.length;
    const trieDepth = new Int32Array(trieCount);
    for (let i = 0; i < trieCount; i++) trieDepth[i] = stacks.parent[i] < 0 ? 0 : trieDepth[stacks.parent[i]] + 1;
    const lanes = []; // per thread: {start, end, node: per depth typed arrays, maxDepth, total}
    let laneLayout = []; // [{thread, y, height}]
    let hovered = null;

    // Bars per depth: consecutive runs that share the call at a depth make one bar.
    function lane(t) {
      if (lanes[t]) return lanes[t];
      const runs = timeline.threads[t];
      const durations = runs.duration, leaves = runs.stack;
      const starts = [], ends = [], nodes = [];
      const open = [], openStart = [];
      const path = [];
      let clock = 0;
      let maxDepth = -1;
      const close = (fromDepth, at) => {
        for (let d = open.length - 1; d >= fromDepth; d--) {
          if (!starts[d]) {
            starts[d] = [];
            ends[d] = [];
            nodes[d] = [];
          }
          starts[d].push(openStart[d]);
          ends[d].push(at);
          nodes[d].push(open[d]);
          if (d > maxDepth) maxDepth = d;
        }
        open.length = Math.min(open.length, fromDepth);
        openStart.length = open.length;
      };
      for (let r = 0; r < durations.length; r++) {
        const leaf = leaves[r];
        const duration = durations[r] / 1e6;
        if (leaf < 0) {
          close(0, clock);
          clock += duration;
          continue;
        }
        const depth = trieDepth[leaf];
        path.length = depth + 1;
        for (let n = leaf, d = depth; n >= 0; n = stacks.parent[n], d--) path[d] = n;
        let k = 0;
        while (k < open.length && k <= depth && open[k] === path[k]) k++;
        close(k, clock);
        for (let d = k; d <= depth; d++) {
          open.push(path[d]);
          openStart.push(clock);
        }
        clock += duration;
      }
      close(0, clock);
      const result = { starts: [], ends: [], nodes: [], maxDepth, total: clock };
      for (let d = 0; d <= maxDepth; d++) {
        result.starts.push(Float64Array.from(starts[d] || []));
        result.ends.push(Float64Array.from(ends[d] || []));
        result.nodes.push(Int32Array.from(nodes[d] || []));
      }
      lanes[t] = result;
      return result;
    }

    const LANE_HEADER = 22;
    const LANE_GAP = 10;

    function build() {
      const t = selectedThread();
      const shown = t >= 0 ? [t] : threads.map((_, i) => i);
      laneLayout = [];
      let y = 0;
      let extent = 0;
      for (const thread of shown) {
        const l = lane(thread);
        const height = LANE_HEADER + (l.maxDepth + 1) * BAR_HEIGHT;
        laneLayout.push({ thread, y, height, lane: l });
        y += height + LANE_GAP;
        extent = Math.max(extent, l.total);
      }
      view.contentHeight = y;
      const previous = view.extent;
      view.extent = extent || meta.duration || 1;
      if (previous !== view.extent && view.x1 - view.x0 >= previous * 0.999) {
        view.x0 = 0;
        view.x1 = view.extent;
      }
      view.clampView();
    }

    // first index whose end is after t
    function firstEndingAfter(ends, t) {
      let lo = 0, hi = ends.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (ends[mid] <= t) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }

    view.draw = function () {
      if (settings.view !== "timeline") return;
      const ctx = view.beginDraw();
      const p = colors();
      if (!timeline) {
        ctx.fillStyle = p.muted;
        ctx.fillText("This session has no timeline.", 16, 40);
        controls.range.textContent = "";
        return;
      }
      build();
      const matches = frameMatches();
      const scale = view.width / (view.x1 - view.x0);
      let bars = 0;
      for (const entry of laneLayout) {
        const laneTop = view.top + entry.y - view.scrollY;
        if (laneTop > view.height || laneTop + entry.height < view.top) continue;
        const l = entry.lane;
        // lane header
        ctx.fillStyle = p.gap;
        ctx.fillRect(0, laneTop, view.width, LANE_HEADER - 2);
        ctx.fillStyle = p.text;
        ctx.font = "600 12px " + (getComputedStyle(document.body).fontFamily || "sans-serif");
        ctx.fillText(threadLabel[entry.thread], 8, laneTop + LANE_HEADER / 2 - 1);
        ctx.font = "12px " + (getComputedStyle(document.body).fontFamily || "sans-serif");
        for (let d = 0; d <= l.maxDepth; d++) {
          const y = laneTop + LANE_HEADER + d * BAR_HEIGHT;
          if (y > view.height || y + BAR_HEIGHT < view.top) continue;
          const starts = l.starts[d], ends = l.ends[d], nodes = l.nodes[d];
          let i = firstEndingAfter(ends, view.x0);
          let lastPixel = -Infinity;
          for (; i < starts.length && starts[i] < view.x1; i++) {
            const x = (starts[i] - view.x0) * scale;
            const w = (ends[i] - starts[i]) * scale;
            const right = x + w;
            if (right < lastPixel + 0.5 && w < 1) continue; // a pixel already painted
            const f = stacks.frame[nodes[i]];
            const left = Math.max(x, -1);
            const width = Math.min(right, view.width + 1) - left;
            ctx.globalAlpha = matches && !matches[f] ? p.dim : 1;
            ctx.fillStyle = frameColor(f);
            ctx.fillRect(left, y, Math.max(width - (width > 3 ? 1 : 0), 0.6), BAR_HEIGHT - 1);
            if (f === state.selectedFrame) {
              ctx.strokeStyle = p.accent;
              ctx.lineWidth = 2;
              ctx.strokeRect(left + 1, y + 1, Math.max(width - 3, 0), BAR_HEIGHT - 3);
            }
            if (width > 28) {
              ctx.fillStyle = textColorFor();
              const label = truncate(ctx, frameName[f], width - 8, textCache);
              if (label) ctx.fillText(label, left + 4, y + BAR_HEIGHT / 2);
            }
            ctx.globalAlpha = 1;
            lastPixel = Math.max(right, lastPixel + 1);
            bars++;
          }
        }
      }
      if (hovered) {
        const { entry, depth, index } = hovered;
        const l = entry.lane;
        const y = view.top + entry.y - view.scrollY + LANE_HEADER + depth * BAR_HEIGHT;
        const x = (l.starts[depth][index] - view.x0) * scale;
        const w = (l.ends[depth][index] - l.starts[depth][index]) * scale;
        ctx.strokeStyle = p.text;
        ctx.lineWidth = 1;
        ctx.strokeRect(Math.max(x, 0) + 0.5, y + 0.5, Math.max(Math.min(w, view.width) - 1, 1), BAR_HEIGHT - 2);
      }
      drawAxis(ctx, p);
      view.canvas.dataset.bars = String(bars);
      updateRange();
    };

    function drawAxis(ctx, p) {
      ctx.fillStyle = p.bg;
      ctx.fillRect(0, 0, view.width, view.top);
      ctx.strokeStyle = p.grid;
      ctx.beginPath();
      ctx.moveTo(0, view.top - 0.5);
      ctx.lineTo(view.width, view.top - 0.5);
      ctx.stroke();
      const span = view.x1 - view.x0;
      const step = tickStep(span, view.width);
      ctx.fillStyle = p.muted;
      for (let t = Math.ceil(view.x0 / step) * step; t <= view.x1; t += step) {
        const x = Math.round(view.timeToX(t)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(x, view.top - 6);
        ctx.lineTo(x, view.top);
        ctx.stroke();
        ctx.fillText(formatClock(t, step), x + 3, view.top / 2);
      }
    }

    function updateRange() {
      if (settings.view !== "timeline") return;
      controls.range.textContent =
        formatClock(view.x0, tickStep(view.x1 - view.x0, view.width)) +
        " – " +
        formatClock(view.x1, tickStep(view.x1 - view.x0, view.width)) +
        " of " +
        formatDuration(view.extent) +
        " (wall-clock)";
    }

    function hitAt(x, y) {
      if (!timeline || y < view.top) return null;
      const time = view.xToTime(x);
      const tolerance = (view.x1 - view.x0) / view.width; // a pixel
      for (const entry of laneLayout) {
        const top = view.top + entry.y - view.scrollY + LANE_HEADER;
        const depth = Math.floor((y - top) / BAR_HEIGHT);
        if (depth < 0 || depth > entry.lane.maxDepth) continue;
        const l = entry.lane;
        const ends = l.ends[depth], starts = l.starts[depth];
        let i = firstEndingAfter(ends, time - tolerance);
        if (i < starts.length && starts[i] <= time + tolerance) return { entry, depth, index: i };
      }
      return null;
    }

    view.hover = function (x, y, clientX, clientY) {
      const hit = hitAt(x, y);
      const same = hit && hovered && hit.entry === hovered.entry && hit.depth === hovered.depth && hit.index === hovered.index;
      if (!same) {
        hovered = hit;
        view.requestDraw();
      }
      if (!hit) {
        hideTooltip();
        return;
      }
      const l = hit.entry.lane;
      const node = l.nodes[hit.depth][hit.index];
      const f = stacks.frame[node];
      const start = l.starts[hit.depth][hit.index], end = l.ends[hit.depth][hit.index];
      const rows = [
        ["duration", formatDuration(end - start)],
        ["from", start.toFixed(decimals) + " s"],
        ["to", end.toFixed(decimals) + " s"],
        ["thread", threadLabel[hit.entry.thread]],
      ];
      if (timeline.resample_interval > 0 && end - start < timeline.resample_interval * 4)
        rows.push(["note", "resampled: approximate at this scale"]);
      showTooltip(clientX, clientY, (box) => frameTooltip(box, f, "", rows));
    };

    view.click = function (x, y) {
      const hit = hitAt(x, y);
      if (!hit) return;
      const l = hit.entry.lane;
      const start = l.starts[hit.depth][hit.index], end = l.ends[hit.depth][hit.index];
      state.selectedFrame = stacks.frame[l.nodes[hit.depth][hit.index]];
      const pad = (end - start) * 0.04;
      view.setRange(start - pad, end + pad, true);
    };

    view.update = function () {
      view.requestDraw();
    };
    return view;
  })();

  // -- lines --------------------------------------------------------------------------

  // wall time each function spent in its own code, in the shown threads
  function selfTimeByFrame() {
    const own = new Float64Array(frameCount);
    const t = selectedThread();
    for (let n = 0; n < dataNodes; n++) {
      if (t >= 0 && threadOf[n] !== t) continue;
      let self = wallOf[n];
      for (let i = childStart[n]; i < childStart[n + 1]; i++) self -= wallOf[childList[i]];
      if (self > 0) own[frameOf[n]] += self;
    }
    return own;
  }

  const linesView = (function () {
    const wrap = el("div", "lines");
    const panel = el("div", "fnpanel");
    const head = el("div", "fnhead");
    const sortControl = segmented(
      "Functions by",
      [
        ["own", "Own time"],
        ["total", "Total time"],
      ],
      settings.linesSort,
      (value) => {
        settings.linesSort = value;
        saveSettings();
        update();
      }
    );
    sortControl.element.title = "Own time: in the function's own code; total: with the functions it called";
    head.appendChild(sortControl.element);
    const list = el("div", "fnlist");
    list.id = "functions";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Functions");
    list.tabIndex = 0;
    append(panel, head, list);
    const source = el("div", "source");
    source.id = "lines";
    append(wrap, panel, source);
    let entries = [];

    // line -> seconds for a frame in the shown threads
    function linesOf(f) {
      const byThread = lineTimes.get(f);
      const result = new Map();
      if (!byThread) return result;
      const t = selectedThread();
      for (const [thread, flat] of byThread) {
        if (t >= 0 && thread !== t) continue;
        for (let i = 0; i < flat.length; i += 2) result.set(flat[i], (result.get(flat[i]) || 0) + flat[i + 1] / 1e6);
      }
      return result;
    }

    function update() {
      const matches = frameMatches();
      const own = selfTimeByFrame();
      entries = [];
      for (const f of lineTimes.keys()) {
        if (matches && !matches[f]) continue;
        const lines = linesOf(f);
        let total = 0;
        for (const v of lines.values()) total += v;
        if (total > 0) entries.push([f, total, own[f]]);
      }
      const key = settings.linesSort === "total" ? 1 : 2;
      entries.sort((a, b) => b[key] - a[key] || b[1] - a[1] || a[0] - b[0]);
      sortControl.update(settings.linesSort);
      if (settings.view === "lines" && controls.searchCount)
        controls.searchCount.textContent = matches ? plural(entries.length, "function") : "";
      if (matches && entries.length && !entries.some(([f]) => f === state.selectedFrame)) {
        // searching: the best match rather than a function the list no longer shows
        state.selectedFrame = entries[0][0];
      } else if ((state.selectedFrame < 0 || !lineTimes.has(state.selectedFrame)) && entries.length) {
        // the application function with the most time of its own, else any function
        let best = -1;
        for (const [f] of entries) {
          if (best < 0 || (frameIsApp[f] && !frameIsApp[best]) || (frameIsApp[f] === frameIsApp[best] && own[f] > own[best])) best = f;
        }
        state.selectedFrame = best;
      }
      drawList();
      drawSource();
    }

    function drawList() {
      list.textContent = "";
      const whole = wallOf[viewRoot()];
      const shown = entries.slice(0, 2000);
      const key = settings.linesSort === "total" ? 1 : 2;
      for (const entry of shown) {
        const f = entry[0], value = entry[key];
        const item = el("div", "fnitem" + (frameIsApp[f] ? " is-app" : "") + (f === state.selectedFrame ? " selected" : ""));
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", String(f === state.selectedFrame));
        item.dataset.frame = String(f);
        item.appendChild(el("span", "time", settings.timeFormat === "percent" ? percent(value, whole) : formatSeconds(value)));
        const name = el("span", "name");
        markedText(name, frameName[f]);
        item.appendChild(name);
        item.title = frameName[f] + "\n" + frameFile[f] + (frames.line[f] ? ":" + frames.line[f] : "");
        list.appendChild(item);
      }
      if (!shown.length) list.appendChild(el("div", "empty", state.search ? "No function matches the search." : "No line times recorded."));
    }

    function drawSource() {
      source.textContent = "";
      const f = state.selectedFrame;
      if (f < 0 || !lineTimes.has(f)) {
        source.appendChild(el("div", "empty", "Choose a function to see the time spent on each of its lines."));
        return;
      }
      const lines = linesOf(f);
      let total = 0, most = 0;
      for (const v of lines.values()) {
        total += v;
        most = Math.max(most, v);
      }
      const title = el("h2");
      markedText(title, frameName[f]);
      source.appendChild(title);
      source.appendChild(
        el(
          "div",
          "sub",
          (frameFile[f] || "(no file)") +
            (frames.line[f] ? ":" + frames.line[f] : "") +
            " · " +
            formatSeconds(total) +
            " s wall time on its lines" +
            (selectedThread() >= 0 && threadCount > 1 ? " in " + threadLabel[selectedThread()] : "")
        )
      );
      const table = el("table", "srctable");
      table.id = "line-table";
      const text = data.sources[String(f)];
      const numbers = [];
      if (text) {
        const [first, texts] = text;
        for (let i = 0; i < texts.length; i++) numbers.push(first + i);
        for (const line of lines.keys()) if (line < first || line >= first + texts.length) numbers.push(line);
        numbers.sort((a, b) => a - b);
      } else numbers.push(...Array.from(lines.keys()).sort((a, b) => a - b));
      for (const line of numbers) {
        const value = lines.get(line) || 0;
        const tr = el("tr", value > 0 ? "hot" : "");
        tr.appendChild(el("td", "ln", String(line)));
        const time = el("td", "lt", value > 0 ? (settings.timeFormat === "percent" ? percent(value, total) : formatSeconds(value)) : "");
        tr.appendChild(time);
        const barCell = el("td", "lb");
        if (value > 0) barCell.appendChild(el("span")).style.width = Math.max((value / most) * 100, 1).toFixed(1) + "%";
        tr.appendChild(barCell);
        const code = el("td", "code");
        if (text && line >= text[0] && line < text[0] + text[1].length) code.textContent = text[1][line - text[0]];
        else if (!text) code.appendChild(el("span", "missing", line === numbers[0] ? "source not available in this report" : ""));
        tr.appendChild(code);
        table.appendChild(tr);
      }
      source.appendChild(table);
    }

    list.addEventListener("click", (event) => {
      const item = event.target.closest(".fnitem");
      if (!item) return;
      state.selectedFrame = Number(item.dataset.frame);
      drawList();
      drawSource();
    });
    list.addEventListener("keydown", (event) => {
      const i = entries.findIndex(([f]) => f === state.selectedFrame);
      let next = i;
      if (event.key === "ArrowDown") next = Math.min(i + 1, entries.length - 1);
      else if (event.key === "ArrowUp") next = Math.max(i - 1, 0);
      else return;
      event.preventDefault();
      if (next >= 0 && entries[next]) {
        state.selectedFrame = entries[next][0];
        drawList();
        drawSource();
        const item = list.querySelector(".fnitem.selected");
        if (item) item.scrollIntoView({ block: "nearest" });
      }
    });

    return { element: wrap, update, focusTarget: list };
  })();

  // -- wiring -------------------------------------------------------------------------

  const viewObjects = { tree: treeView, flame: flameView, timeline: timelineView, lines: linesView };

  function activeCanvasView() {
    return settings.view === "timeline" ? timelineView : flameView;
  }

  function activeFocusTarget() {
    return viewObjects[settings.view].focusTarget;
  }

  function showView(key) {
    settings.view = key;
    saveSettings();
    for (const k of Object.keys(views)) {
      views[k].hidden = k !== key;
      tabs[k].setAttribute("aria-selected", String(k === key));
    }
    const canvas = key === "flame" || key === "timeline";
    controls.zoom.hidden = !canvas;
    subbar.hidden = key === "lines";
    controls.treeButtons.hidden = key !== "tree";
    controls.thresholdWrap.hidden = key !== "tree";
    controls.foldWrap.hidden = key === "timeline" || key === "lines";
    controls.patterns.hidden = key === "timeline" || key === "lines";
    if (key === "tree" && state.selectedFrame >= 0) treeView.revealFrame(state.selectedFrame);
    hideTooltip();
    updateStatusbar(key);
    refresh();
  }

  function refresh() {
    controls.searchCount.textContent = "";
    const view = viewObjects[settings.view];
    view.update();
    if (settings.view === "flame" || settings.view === "timeline") {
      const matches = frameMatches();
      if (matches) controls.searchCount.textContent = plural(searchCache.count, "function");
    }
  }

  function start() {
    app.appendChild(buildHeader());
    buildToolbar();
    buildSubbar();
    append(app, toolbar, subbar, main, statusbar);
    document.body.appendChild(tooltip);
    for (const key of Object.keys(viewObjects)) {
      const pane = el("section", "view");
      pane.id = "view-" + key;
      pane.setAttribute("role", "tabpanel");
      pane.setAttribute("aria-labelledby", "tab-" + key);
      const object = viewObjects[key];
      pane.appendChild(object.element || object.wrap);
      main.appendChild(pane);
      views[key] = pane;
    }
    window.addEventListener("resize", () => {
      if (settings.view === "flame" || settings.view === "timeline") activeCanvasView().requestDraw();
      else if (settings.view === "tree") treeView.draw();
    });
    document.addEventListener("keydown", (event) => {
      const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement;
      if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "/") {
        event.preventDefault();
        controls.search.focus();
        controls.search.select();
      } else if (["1", "2", "3", "4"].includes(event.key)) {
        const key = ["tree", "flame", "timeline", "lines"][Number(event.key) - 1];
        showView(key);
        activeFocusTarget().focus();
      }
    });
    showView(settings.view);
    activeFocusTarget().focus({ preventScroll: true });
    document.body.dataset.ready = "1";
    document.body.dataset.readyAfterMs = String(Math.round(performance.now()));
  }

  start();
})();
