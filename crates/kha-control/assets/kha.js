/* kha.js — progressive enhancement for kha's server-rendered pages.
 *
 * Every page reads fine without it. With it:
 * - live regions: the page subscribes to `body[data-events]` (an SSE stream
 *   of kha's events, from `data-seq` + 1); on an event it re-fetches the page
 *   (at most one fetch in flight, at most 4 a second) and swaps in every
 *   `[data-live][id]` element, keeping focus and scroll;
 * - `<time data-since>` / `<time data-ms>` tick every second;
 * - the job log (`section#log`) becomes a virtual viewer: the raw log is
 *   fetched once, only line offsets are computed up front, and only the lines
 *   on screen (plus a margin) are styled and put in the DOM. It renders the
 *   terminal the way `kha_core::term` does (SGR colours, `\r` overwrite,
 *   erase, Travis fold and time markers; see that module: the two must agree),
 *   and follows the log's SSE stream (base64 pieces, ids are byte offsets, so
 *   EventSource resumes by itself with Last-Event-ID). Folds, permalinks
 *   (`#L12`, `#L12-L20`, shift-click), follow-the-tail and jump-to-first-error
 *   live here too; `window.khaLog` exposes the state for tests.
 * No dependencies, no build step; text always goes in through textContent.
 */
(function () {
  'use strict';

  /* ---------- live connections and the back/forward cache ----------
   * A page left for another stays alive in the browser's back/forward
   * cache with its EventSources open, so a few visits to kha's pages used
   * up the browser's six connections to the control node and the next page
   * waited for ever. Streams are closed when a page is hidden; a page
   * shown again from that cache reloads, to be current and live again. */
  const streams = [];
  function openStream(url) {
    const es = new EventSource(url);
    streams.push(es);
    return es;
  }
  window.addEventListener('pagehide', () => { for (const es of streams) es.close(); });
  window.addEventListener('pageshow', (e) => { if (e.persisted) location.reload(); });

  /* ---------- durations and ages, as the server formats them ---------- */

  function fmtDuration(ms) {
    ms = Math.max(0, Math.floor(ms));
    if (ms < 10000) return Math.floor(ms / 1000) + '.' + Math.floor((ms % 1000) / 100) + ' s';
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function fmtAgo(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 10) return 'just now';
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  /* Ages end in "ago" (or say "just now"); anything else is a running
   * duration. `data-ms` is a point in time shown as an age. */
  function tick() {
    const now = Date.now();
    for (const t of document.querySelectorAll('time[data-since], time[data-ms]')) {
      const since = Number(t.getAttribute('data-since') || t.getAttribute('data-ms'));
      if (!since) continue;
      const txt = t.textContent;
      const age = t.hasAttribute('data-ms') || /ago$|^just now$/.test(txt);
      const next = age ? fmtAgo(now - since) : fmtDuration(now - since);
      if (next !== txt) t.textContent = next;
      if (!t.title) t.title = new Date(since).toLocaleString();
    }
  }

  /* ---------- live regions ---------- */

  const EVENT_KINDS = ['build_created', 'build_started', 'build_finished', 'build_restarted',
    'build_requeued', 'job_queued', 'job_started', 'job_canceling', 'job_finished',
    'job_requeued', 'branch_moved', 'branch_deleted', 'builder_connected',
    'builder_disconnected', 'builder_draining', 'builder_revoked', 'message'];

  function liveRegions() {
    const body = document.body;
    const url = body.getAttribute('data-events');
    if (!url || !window.EventSource) return;
    const seq = Number(body.getAttribute('data-seq') || 0);
    const src = openStream(url + (url.includes('?') ? '&' : '?') + 'from=' + (seq + 1));
    let inFlight = false, again = false, last = 0, timer = 0;

    function schedule() {
      if (inFlight) { again = true; return; }
      if (timer) return;
      const wait = Math.max(0, last + 250 - Date.now());
      timer = setTimeout(refresh, wait);
    }

    async function refresh() {
      timer = 0; inFlight = true; again = false; last = Date.now();
      try {
        const res = await fetch(location.href, { headers: { 'Accept': 'text/html' } });
        if (res.ok) swap(new DOMParser().parseFromString(await res.text(), 'text/html'));
      } catch (e) { /* the next event retries */ }
      inFlight = false;
      if (again) schedule();
    }

    function swap(doc) {
      const x = window.scrollX, y = window.scrollY;
      const active = document.activeElement;
      const focusId = active && active.id;
      for (const el of document.querySelectorAll('[data-live][id]')) {
        if (el.querySelector('.log-view')) continue; // the log viewer owns itself
        const fresh = doc.getElementById(el.id);
        if (fresh && fresh.hasAttribute('data-live') && fresh.outerHTML !== el.outerHTML) {
          el.replaceWith(document.importNode(fresh, true));
        }
      }
      if (focusId && active !== document.activeElement) {
        const f = document.getElementById(focusId);
        if (f) f.focus({ preventScroll: true });
      }
      window.scrollTo(x, y);
      tick();
    }

    for (const k of EVENT_KINDS) src.addEventListener(k, schedule);
    src.addEventListener('reset', () => { src.close(); location.reload(); });
  }

  /* ---------- the terminal, one line at a time (mirrors kha_core::term) ---------- */

  const DEFAULT = Object.freeze({ fg: null, bg: null, b: false, d: false, i: false, u: false, v: false });
  const LEVELS = [0, 95, 135, 175, 215, 255];
  const BASE = [[0, 0, 0], [205, 0, 0], [0, 205, 0], [205, 205, 0], [0, 0, 238], [205, 0, 205],
    [0, 205, 205], [229, 229, 229], [127, 127, 127], [255, 0, 0], [0, 255, 0], [255, 255, 0],
    [92, 92, 255], [255, 0, 255], [0, 255, 255], [255, 255, 255]];

  /* A colour is a number 0–255 (indexed) or a string '#rrggbb'. */
  function hex(c) {
    if (typeof c === 'string') return c;
    let rgb;
    if (c < 16) rgb = BASE[c];
    else if (c < 232) { const i = c - 16; rgb = [LEVELS[Math.floor(i / 36)], LEVELS[Math.floor(i / 6) % 6], LEVELS[i % 6]]; }
    else { const v = 8 + 10 * (c - 232); rgb = [v, v, v]; }
    return '#' + rgb.map((n) => n.toString(16).padStart(2, '0')).join('');
  }

  function sameStyle(a, b) {
    return a === b || (a.fg === b.fg && a.bg === b.bg && a.b === b.b && a.d === b.d &&
      a.i === b.i && a.u === b.u && a.v === b.v);
  }

  function applySgr(st, p) {
    const s = Object.assign({}, st);
    if (p.length === 0) return DEFAULT;
    for (let k = 0; k < p.length;) {
      const n = p[k++];
      if (n === 0) Object.assign(s, DEFAULT);
      else if (n === 1) s.b = true;
      else if (n === 2) s.d = true;
      else if (n === 3) s.i = true;
      else if (n === 4) s.u = true;
      else if (n === 7) s.v = true;
      else if (n === 22) { s.b = false; s.d = false; }
      else if (n === 23) s.i = false;
      else if (n === 24) s.u = false;
      else if (n === 27) s.v = false;
      else if (n >= 30 && n <= 37) s.fg = n - 30;
      else if (n === 39) s.fg = null;
      else if (n >= 40 && n <= 47) s.bg = n - 40;
      else if (n === 49) s.bg = null;
      else if (n >= 90 && n <= 97) s.fg = n - 82;
      else if (n >= 100 && n <= 107) s.bg = n - 92;
      else if (n === 38 || n === 48) {
        let c;
        if (p[k] === 5) {
          c = k + 1 < p.length ? Math.min(p[k + 1], 255) : undefined;
          k += 2;
        } else if (p[k] === 2) {
          c = k + 3 < p.length ? '#' + [p[k + 1], p[k + 2], p[k + 3]]
            .map((v) => Math.min(v, 255).toString(16).padStart(2, '0')).join('') : undefined;
          k += 4;
        } else break; // unknown colour space: the rest cannot be read
        if (c !== undefined) { if (n === 38) s.fg = c; else s.bg = c; }
      }
    }
    return s;
  }

  /* Classes and inline CSS for a style, exactly as Style::classes/inline_css. */
  function styleAttrs(st) {
    const fg = st.v ? st.bg : st.fg, bg = st.v ? st.fg : st.bg;
    const cls = [];
    if (typeof fg === 'number' && fg < 16) cls.push('fg-' + fg);
    if (typeof bg === 'number' && bg < 16) cls.push('bg-' + bg);
    if (st.b) cls.push('bold');
    if (st.d) cls.push('dim');
    if (st.i) cls.push('italic');
    if (st.u) cls.push('underline');
    if (st.v && (fg === null || bg === null)) cls.push('inverse');
    const css = [];
    if (fg !== null && !(typeof fg === 'number' && fg < 16)) css.push('color:' + hex(fg));
    if (bg !== null && !(typeof bg === 'number' && bg < 16)) css.push('background-color:' + hex(bg));
    return { cls: cls.join(' '), css: css.join(';') };
  }

  const NAME = /^[^\p{White_Space}\p{Cc}]+$/u;

  /* A Travis marker if the whole text is one: {fold:'start'|'end', name} or
   * {time:true, dur}. */
  function parseMarker(t) {
    if (t.length < 13 || t.charCodeAt(0) !== 116 /* t */) return null;
    if (t.startsWith('travis_fold:')) {
      const r = t.slice(12);
      if (r.startsWith('start:') && NAME.test(r.slice(6))) return { fold: 'start', name: r.slice(6) };
      if (r.startsWith('end:') && NAME.test(r.slice(4))) return { fold: 'end', name: r.slice(4) };
      return null;
    }
    if (!t.startsWith('travis_time:')) return null;
    const r = t.slice(12);
    if (r.startsWith('start:') && NAME.test(r.slice(6))) return { time: true, dur: null };
    if (!r.startsWith('end:') || !NAME.test(r.slice(4))) return null;
    let dur = null;
    const rest = r.slice(4), colon = rest.indexOf(':');
    if (colon >= 0) {
      const kv = rest.slice(colon + 1).split(',').find((f) => f.startsWith('duration='));
      if (kv !== undefined && /^\+?\d+$/.test(kv.slice(9))) dur = Number(kv.slice(9));
    }
    return { time: true, dur };
  }

  /* Renders one raw line (without its '\n') from style `st0`. Returns
   * { kind: null|'start'|'end', name, dur, spans: [{t, st}], text, st }
   * where `st` is the style at the line's end (for the next line). */
  function termLine(raw, st0) {
    let st = st0;
    let cells = [];   // [char, style] per code point; only the slow path uses it
    let plain = '';   // fast path: text appended at the end in runs
    let runs = [];    // [[startIndexInPlain, style]]
    let chars = 0, cur = 0, slow = false;
    let kind = null, name = '', dur = null;

    function toSlow() {
      if (slow) return;
      slow = true;
      for (let r = 0; r < runs.length; r++) {
        const end = r + 1 < runs.length ? runs[r + 1][0] : plain.length;
        for (const ch of plain.slice(runs[r][0], end)) cells.push([ch, runs[r][1]]);
      }
    }
    function write(s) {
      if (!s) return;
      if (!slow && cur === chars) {
        const last = runs[runs.length - 1];
        if (!last || !sameStyle(last[1], st)) runs.push([plain.length, st]);
        plain += s;
        let n = s.length;
        for (let k = 0; k < s.length; k++) { const c = s.charCodeAt(k); if (c >= 0xdc00 && c < 0xe000) n--; }
        chars += n; cur += n;
        return;
      }
      toSlow();
      for (const ch of s) {
        if (cur < cells.length) cells[cur] = [ch, st]; else cells.push([ch, st]);
        cur++;
      }
      chars = cells.length;
    }
    function text() {
      if (!slow) return plain;
      let t = '';
      for (const c of cells) t += c[0];
      return t;
    }
    function truncate(n) {
      if (n >= chars) return;
      toSlow();
      cells.length = n;
      chars = n;
    }
    function pad() {
      if (cur > chars) { toSlow(); while (cells.length < cur) cells.push([' ', DEFAULT]); chars = cur; }
    }
    function marker() {
      if (chars < 13) return;
      const m = parseMarker(text());
      if (!m) return;
      if (m.fold) { kind = m.fold; name = m.name; } else if (m.dur !== null) dur = m.dur;
      cells = []; plain = ''; runs = []; slow = false; chars = 0; cur = 0;
    }
    function control(c) {
      if (c === 13) { marker(); cur = 0; }
      else if (c === 8) { if (cur > 0) cur--; }
      else if (c === 9) { const next = (Math.floor(cur / 8) + 1) * 8; cur = next; pad(); }
    }
    function csiFinal(params, fin) {
      const p = csiParams(params);
      if (!p) return;
      if (fin === 'm') st = applySgr(st, p);
      else if (fin === 'K') {
        const mode = p.length ? p[0] : 0;
        if (mode === 0) truncate(cur);
        else if (mode === 1) { toSlow(); for (let k = 0; k <= cur && k < cells.length; k++) cells[k] = [' ', DEFAULT]; pad(); }
        else if (mode === 2) { truncate(0); pad(); }
      }
    }

    const n = raw.length;
    let k = 0;
    while (k < n) {
      // A run of printable text: everything up to the next C0 control or DEL.
      let e = k;
      while (e < n) { const c = raw.charCodeAt(e); if (c < 32 || c === 127) break; e++; }
      if (e > k) write(raw.slice(k, e));
      if (e >= n) break;
      const c = raw.charCodeAt(e);
      k = e + 1;
      if (c !== 27) { control(c); continue; }
      // ESC: read the sequence (a line never continues one, see term.rs).
      if (k >= n) break;
      const c1 = raw.charCodeAt(k);
      if (c1 === 91 /* [ */) {
        k++;
        let params = '';
        let done = false;
        while (k < n) {
          const d = raw.charCodeAt(k);
          if (d >= 0x40 && d <= 0x7e) { csiFinal(params, raw[k]); k++; done = true; break; }
          if (d === 27) break; // a new escape starts; this one is dropped
          if (d < 32) { control(d); k++; continue; }
          params += raw[k]; k++;
        }
        if (!done) continue;
      } else if (c1 === 93 || c1 === 80 || c1 === 88 || c1 === 94 || c1 === 95) {
        k = skipString(raw, k + 1, n);
      } else if (c1 === 27) {
        // ESC ESC: still an escape; the outer loop sees the second ESC.
      } else if (c1 >= 0x80) {
        // ESC then non-ASCII: the ESC is dropped, the character is text.
      } else if (c1 >= 0x20 && c1 <= 0x2f) {
        k++;
        while (k < n) {
          const d = raw.charCodeAt(k);
          if (d >= 0x20 && d <= 0x2f) { k++; continue; }
          if (d === 27 || d >= 0x80) break;
          k++;
          break;
        }
      } else {
        k++; // a two-byte escape (or ESC + control, swallowed as in term.rs)
      }
    }
    marker();
    // Spans from runs or cells.
    const spans = [];
    if (!slow) {
      for (let r = 0; r < runs.length; r++) {
        const end = r + 1 < runs.length ? runs[r + 1][0] : plain.length;
        spans.push({ t: plain.slice(runs[r][0], end), st: runs[r][1] });
      }
    } else {
      for (const [ch, s] of cells) {
        const last = spans[spans.length - 1];
        if (last && sameStyle(last.st, s)) last.t += ch; else spans.push({ t: ch, st: s });
      }
    }
    let t = '';
    for (const s of spans) t += s.t;
    return { kind, name, dur, spans, text: t, st };
  }

  /* CSI parameters as numbers, or null when the sequence is not one kha
   * interprets (private, intermediates, too long). */
  /* OSC, DCS, SOS, PM, APC: from just after the introducer to past BEL or
   * ESC \ (ESC ESC stays inside, ESC x goes on); returns where it ends. */
  function skipString(raw, k, n) {
    while (k < n) {
      const d = raw.charCodeAt(k++);
      if (d === 7) break;
      if (d === 27) {
        while (k < n && raw.charCodeAt(k) === 27) k++;
        if (k < n && raw.charCodeAt(k) === 92) { k++; break; }
        if (k < n) k++;
      }
    }
    return k;
  }

  function csiParams(params) {
    if (params.length > 64 || /[^0-9;:]/.test(params)) return null;
    return params === '' ? [] : params.split(/[;:]/).map((x) => (x === '' ? 0 : Math.min(Number(x), 4294967295)));
  }

  /* applySgr memoised per (style, parameter string): a log repeats a few
   * sequences (`ESC[32m`, `ESC[0m`) on every line, and styles are immutable,
   * so the walk over 200,000 lines is mostly map lookups. */
  const SGR_MEMO = new WeakMap();
  function sgrStep(st, params) {
    let m = SGR_MEMO.get(st);
    if (!m) { m = new Map(); SGR_MEMO.set(st, m); }
    let r = m.get(params);
    if (r === undefined) {
      const p = csiParams(params);
      r = p ? intern(applySgr(st, p)) : st;
      if (m.size < 256) m.set(params, r);
    }
    return r;
  }
  /* One object per distinct style, so the memo above hits: applySgr makes a
   * new object every time (`ESC[0m` included). Capped for truecolour logs. */
  const STYLES = new Map([['null,null,00000', DEFAULT]]);
  function intern(st) {
    const k = st.fg + ',' + st.bg + ',' + (st.b ? 1 : 0) + (st.d ? 1 : 0) + (st.i ? 1 : 0) + (st.u ? 1 : 0) + (st.v ? 1 : 0);
    const hit = STYLES.get(k);
    if (hit) return hit;
    if (STYLES.size < 4096) STYLES.set(k, st);
    return st;
  }

  /* The style at the end of a raw line, reading only its SGR sequences: the
   * cheap pass that builds style checkpoints. It parses escapes exactly as
   * termLine does, jumping from ESC to ESC (text cannot change the style). */
  function sgrOnly(raw, st, seen) { // seen(style): called with every style the line passes through
    const n = raw.length;
    let k = raw.indexOf('\x1b');
    while (k >= 0 && ++k < n) {
      const c1 = raw.charCodeAt(k);
      if (c1 === 91) {
        const p0 = k + 1;
        let ctl = false; // controls inside a CSI act and are not parameters
        for (k++; k < n; k++) {
          const d = raw.charCodeAt(k);
          if (d >= 0x40 && d <= 0x7e) {
            if (d === 109) {
              const params = ctl ? raw.slice(p0, k).replace(/[\x00-\x1f]/g, '') : raw.slice(p0, k);
              st = sgrStep(st, params);
              if (seen) seen(st);
            }
            k++;
            break;
          }
          if (d === 27) break;
          if (d < 32) ctl = true;
        }
      } else if (c1 === 93 || c1 === 80 || c1 === 88 || c1 === 94 || c1 === 95) {
        k = skipString(raw, k + 1, n);
      }
      k = raw.indexOf('\x1b', k);
    }
    return st;
  }

  function fmtNs(ns) {
    const ms = Math.floor(ns / 1e6);
    if (ms < 60000) return Math.floor(ms / 1000) + '.' + String(Math.floor((ms % 1000) / 10)).padStart(2, '0') + 's';
    if (ms < 3600000) return Math.floor(ms / 60000) + 'm ' + String(Math.floor((ms % 60000) / 1000)).padStart(2, '0') + 's';
    return Math.floor(ms / 3600000) + 'h ' + String(Math.floor((ms % 3600000) / 60000)).padStart(2, '0') + 'm';
  }

  const ERROR_RE = /^The command ".*" (exited with [1-9]|failed)|(^|\W)(error|failed|failure|fatal)(\W|$)/i;

  /* ---------- the log viewer ---------- */

  function logViewer(section) {
    const CHECK = 1000;   // lines between style checkpoints
    const MARGIN = 60;    // lines rendered beyond the viewport on each side
    const PART = 262144;  // bytes read between checks for the first paint
    const rawUrl = section.getAttribute('data-raw');
    const streamUrl = section.getAttribute('data-stream');
    const followBtn = document.getElementById('follow');
    const errBtn = document.getElementById('first-error');

    const chunks = [];       // every byte received, in order (bytes() joins them on demand)
    let received = 0;        // bytes
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    /* The decoded log is kept as the pieces the decoder returned, not one
     * string: appending to one big string and reading it while it grows
     * would flatten (copy) the whole log again on every network chunk. */
    let pieces = [];         // decoded strings, in order
    let bases = [];          // char offset where each piece starts
    let textLen = 0;         // chars decoded so far
    let carry = '';          // the text's last 6 chars: a marker split between pieces is still found
    let starts = new Float64Array(1024); // char offset where line n+1 starts
    let nStarts = 1;         // starts[0] = 0
    let final = section.getAttribute('data-final') === 'true';
    let loading = true;      // the first fetch is still arriving
    const cache = new Map(); // line -> termLine result
    let checkpoints = [DEFAULT]; // style at the start of line CHECK*i + 1
    const markers = new Map();   // line -> {kind, name, dur} for complete lines, in line order
    let markerLine = 0;          // last line read for markers
    let pendingMarker = 0;       // the open tail line holds 'travis_': read it once complete
    let foldsDirty = true;       // markers or the tail changed since buildFolds
    let newMarkers = false;      // a marker arrived since the last render while loading
    let folds = [];              // {name, start, end|null, dur}
    let foldStarts = new Map();  // start line -> fold
    const userFold = new Map();  // fold start line -> collapsed chosen by the reader
    let hidden = [];             // collapsed [a, b] line ranges, sorted (b may be Infinity)
    let hl = null;               // [a, b] highlighted lines
    let anchor = 0;              // last line-number click, for shift-click ranges
    let lh = 18;                 // line height in px, measured
    let rendered = [0, -1];      // rows in the DOM
    let follow = followBtn ? followBtn.getAttribute('aria-pressed') === 'true' : false;
    let ownScroll = 0;           // scrollY we set ourselves (to tell a reader's scroll)
    let painted = false;         // the first screen is in the DOM
    let wantHash = false;        // the permalinked lines have not arrived yet

    const api = {
      ready: false,
      state: document.getElementById('job') ? document.getElementById('job').getAttribute('data-state') : null,
      bytes() {
        const out = new Uint8Array(received);
        let o = 0;
        for (const c of chunks) { out.set(c, o); o += c.length; }
        return out;
      },
      lines: () => lineCount(),
      text: (n) => (n >= 1 && n <= lineCount() ? line(n).text : null),
      // performance.now() at each loading step: headers, first (first bytes), lines (first line
      // offsets), render (first screen in the DOM), paint (after its frame), body (last byte), parsed
      timings: {},
      readyMs: null, // performance.now() when the whole first fetch was rendered
      paintMs: null, // when the first screen was painted (often long before the body ends)
    };
    window.khaLog = api;

    /* ----- data ----- */

    function lineCount() {
      // Complete lines, plus the unterminated tail if it has anything.
      return textLen > starts[nStarts - 1] ? nStarts : nStarts - 1;
    }
    function pieceAt(off) {
      let lo = 0, hi = pieces.length - 1;
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (bases[mid] <= off) lo = mid; else hi = mid - 1; }
      return lo;
    }
    /* Text between char offsets a and b; lines rarely cross a piece. */
    function slice(a, b) {
      if (a >= b) return '';
      let p = pieceAt(a);
      const end = b - bases[p];
      if (end <= pieces[p].length) return pieces[p].slice(a - bases[p], end);
      let out = pieces[p].slice(a - bases[p]);
      for (p++; p < pieces.length && bases[p] < b; p++) out += pieces[p].slice(0, b - bases[p]);
      return out;
    }
    function rawLine(n) {
      const a = starts[n - 1];
      const b = n < nStarts ? starts[n] - 1 : textLen;
      return slice(a, b);
    }
    function append(bytes) {
      if (!bytes.length) return;
      chunks.push(bytes);
      received += bytes.length;
      const s = decoder.decode(bytes, { stream: true });
      addText(s);
    }
    function addText(s) {
      if (!s) return;
      const from = textLen;
      cache.delete(nStarts); // the open last line changes: forget it
      foldsDirty = true;     // … and it may be a marker
      const last = pieces.length - 1;
      // Tiny pieces (the live stream's) join the previous one while it is small.
      if (last >= 0 && pieces[last].length + s.length <= 4096) pieces[last] += s;
      else { pieces.push(s); bases.push(from); }
      textLen += s.length;
      let i = s.indexOf('\n');
      while (i >= 0) {
        if (nStarts === starts.length) { const g = new Float64Array(starts.length * 2); g.set(starts); starts = g; }
        starts[nStarts++] = from + i + 1;
        i = s.indexOf('\n', i + 1);
      }
      api.timings.lines = api.timings.lines || performance.now();
      // Folds need every marker line; `indexOf` finds them without styling
      // anything else. Only complete lines are final; the tail is re-read.
      if (pendingMarker && pendingMarker < nStarts) { readMarker(pendingMarker); pendingMarker = 0; }
      const joint = carry + s.slice(0, 6), j = joint.indexOf('travis_');
      if (j >= 0 && j < carry.length) markerHit(from - carry.length + j);
      for (let k = s.indexOf('travis_'); k >= 0;) {
        const n = markerHit(from + k);
        if (!n) break;
        k = s.indexOf('travis_', Math.max(k + 1, starts[n] - from));
      }
      carry = (carry + s.slice(-6)).slice(-6);
    }
    /* A 'travis_' at char offset g: reads its line once it is complete.
     * Returns the line when complete (searching goes on after it), else 0. */
    function markerHit(g) {
      const n = lineAt(g);
      if (n >= nStarts) { pendingMarker = n; return 0; }
      if (n > markerLine) readMarker(n);
      return n;
    }
    function readMarker(n) {
      markerLine = n;
      const r = termLine(rawLine(n), DEFAULT);
      if (r.kind || r.dur !== null) { markers.set(n, { kind: r.kind, name: r.name, dur: r.dur }); newMarkers = true; }
    }
    function lineAt(offset) {
      let lo = 0, hi = nStarts - 1;
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= offset) lo = mid; else hi = mid - 1; }
      return lo + 1;
    }
    /* Folds from the markers; called lazily (at most once per render), as
     * chunks change only the tail. Markers are in line order already. */
    function ensureFolds() {
      if (!foldsDirty) return;
      foldsDirty = false;
      const all = [...markers.entries()];
      const n = lineCount();
      if (n >= nStarts) { // the open tail may be a marker too (as at term.rs's finish)
        const r = termLine(rawLine(n), DEFAULT);
        if (r.kind || r.dur !== null) all.push([n, { kind: r.kind, name: r.name, dur: r.dur }]);
      }
      folds = [];
      foldStarts = new Map();
      let open = null;
      for (const [ln, m] of all) {
        if (m.dur !== null && open) open.dur = m.dur;
        if (m.kind === 'start') {
          if (open) open.end = ln - 1;
          open = { name: m.name, start: ln, end: null, dur: m.dur };
          folds.push(open);
          foldStarts.set(ln, open);
        } else if (m.kind === 'end' && open && open.name === m.name) {
          open.end = ln;
          open = null;
        }
      }
      hidden = [];
      for (const f of folds) {
        // While the first fetch arrives, a fold whose end has not come yet is
        // drawn collapsed to the end of what has: it most likely ends later,
        // and then the screen only grows below instead of jumping.
        if (!collapsed(f)) continue;
        if (f.end === null) hidden.push([f.start + 1, Infinity]);
        else if (f.end > f.start) hidden.push([f.start + 1, f.end]);
      }
    }
    function buildFolds() {
      foldsDirty = true;
      ensureFolds();
    }
    function collapsed(f) {
      return userFold.has(f.start) ? userFold.get(f.start) : f.end !== null || loading;
    }
    function foldAt(ln) {
      ensureFolds();
      return foldStarts.get(ln);
    }
    /* Checkpoints cover complete lines only, so they never change. Built on
     * demand, and ahead of time in background slices (see `backfill`), so a
     * jump to line 150,000 costs at most CHECK lines of styling. */
    function extendCheckpoints(c, until) {
      while (checkpoints.length <= c && checkpoints.length * CHECK <= nStarts - 1) {
        if (until && performance.now() > until) return false;
        const i = checkpoints.length - 1;
        let st = checkpoints[i];
        const end = Math.min((i + 1) * CHECK, nStarts - 1);
        for (let l = i * CHECK + 1; l <= end; l++) st = sgrOnly(rawLine(l), st);
        checkpoints.push(st);
      }
      return true;
    }
    /* Builds every checkpoint in ~20 ms slices between other work, so no
     * jump after loading walks 200,000 lines at once. */
    let backfilling = false;
    function backfill() {
      if (backfilling) return;
      backfilling = true;
      (function step() {
        if (extendCheckpoints(Infinity, performance.now() + 20)) backfilling = false;
        else setTimeout(step, 0);
      })();
    }
    /* The style at the start of line n. Rendering asks for lines in order,
     * so the walk from the checkpoint resumes where the last one stopped
     * (else 120 lines near the end of a 1,000-line block walk ~100,000). */
    let walkLine = 1, walkSt = DEFAULT; // style at the start of walkLine
    function styleAt(n) {
      let c = Math.floor((n - 1) / CHECK);
      extendCheckpoints(c);
      c = Math.min(c, checkpoints.length - 1);
      let l = c * CHECK + 1, st = checkpoints[c];
      if (walkLine > l && walkLine <= n) { l = walkLine; st = walkSt; }
      for (; l < n; l++) {
        const hit = cache.get(l);
        st = hit ? hit.st : sgrOnly(rawLine(l), st);
      }
      walkLine = n; walkSt = st;
      return st;
    }
    function line(n) {
      let r = cache.get(n);
      if (!r) {
        if (cache.size > 4000) cache.clear();
        r = termLine(rawLine(n), styleAt(n));
        cache.set(n, r);
      }
      return r;
    }

    /* ----- rows (lines minus collapsed folds) ----- */

    function rowCount() {
      ensureFolds();
      const total = lineCount();
      let n = total;
      for (const [a, b] of hidden) { if (a > total) break; n -= Math.min(b, total) - a + 1; }
      return n;
    }
    function lineOfRow(r) {
      let ln = r;
      for (const [a, b] of hidden) { if (a <= ln) ln += b - a + 1; else break; }
      return ln;
    }
    function rowOfLine(ln) {
      let r = ln;
      for (const [a, b] of hidden) {
        if (b < ln) r -= b - a + 1;
        else if (a <= ln) return rowOfLine(a - 1);
        else break;
      }
      return r;
    }

    /* ----- DOM ----- */

    for (const el of section.querySelectorAll('.log-static, .log-pager')) el.remove();
    const view = document.createElement('div');
    view.className = 'log-view';
    const list = document.createElement('ol');
    list.className = 'log-lines';
    view.appendChild(list);
    section.appendChild(view);
    const status = document.createElement('p');
    status.className = 'log-status';
    status.setAttribute('aria-live', 'polite');
    section.appendChild(status);

    function lineElement(n) {
      const r = line(n);
      const li = document.createElement('li');
      li.className = 'line';
      li.id = 'L' + n;
      if (hl && n >= hl[0] && n <= hl[1]) li.classList.add('highlight');
      const a = document.createElement('a');
      a.className = 'ln';
      a.href = '#L' + n;
      a.textContent = n;
      li.appendChild(a);
      const txt = document.createElement('span');
      txt.className = 'txt';
      for (const s of r.spans) {
        if (s.st === DEFAULT || sameStyle(s.st, DEFAULT)) { txt.appendChild(document.createTextNode(s.t)); continue; }
        const sp = document.createElement('span');
        const at = styleAttrs(s.st);
        if (at.cls) sp.className = at.cls;
        if (at.css) sp.style.cssText = at.css;
        sp.textContent = s.t;
        txt.appendChild(sp);
      }
      const f = r.kind === 'start' ? foldAt(n) : null;
      if (f) {
        li.classList.add('fold-start');
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'fold';
        b.setAttribute('data-fold', f.name);
        b.setAttribute('aria-expanded', String(!collapsed(f)));
        b.appendChild(txt);
        const label = document.createElement('span');
        label.className = 'fold-name';
        label.textContent = f.name;
        b.appendChild(label);
        if (f.dur !== null) {
          const d = document.createElement('span');
          d.className = 'dur';
          d.textContent = fmtNs(f.dur);
          b.appendChild(d);
        }
        li.appendChild(b);
      } else {
        li.appendChild(txt);
      }
      return li;
    }

    function visibleRows() {
      const top = view.getBoundingClientRect().top;
      const first = Math.max(1, Math.floor(-top / lh) + 1);
      const last = Math.min(rowCount(), Math.ceil((window.innerHeight - top) / lh));
      return [first, last];
    }

    function render(force) {
      const total = rowCount();
      view.style.height = total * lh + 'px';
      const [first, last] = visibleRows();
      if (!force && first >= rendered[0] && last <= rendered[1]) return;
      const a = Math.max(1, first - MARGIN), b = Math.min(total, Math.max(last, first) + MARGIN);
      const frag = document.createDocumentFragment();
      // Walk lines from the first row, stepping over collapsed ranges (one
      // pass over `hidden`, not one per row: logs may have thousands of folds).
      let ln = lineOfRow(a), h = 0;
      while (h < hidden.length && hidden[h][0] <= ln) h++;
      for (let r = a; r <= b; r++) {
        frag.appendChild(lineElement(ln));
        ln++;
        if (h < hidden.length && hidden[h][0] === ln) ln = hidden[h++][1] + 1;
      }
      const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement : null;
      const focusKey = focused ? [focused.closest('li').id, focused.className] : null;
      list.replaceChildren(frag);
      list.style.transform = 'translateY(' + (a - 1) * lh + 'px)';
      rendered = [a, b];
      if (focusKey) {
        const li = document.getElementById(focusKey[0]);
        const el = li && li.getElementsByClassName(focusKey[1])[0];
        if (el) el.focus({ preventScroll: true });
      }
    }

    let raf = 0, needForce = false;
    function later(force) {
      if (force) needForce = true;
      if (!raf) raf = requestAnimationFrame(() => { raf = 0; const f = needForce; needForce = false; render(f); });
    }
    function scrollToRow(r, where, force) {
      view.style.height = rowCount() * lh + 'px'; // so the page is tall enough to scroll there
      const top = view.getBoundingClientRect().top + window.scrollY + (r - 1) * lh;
      const y = where === 'bottom' ? top + lh - window.innerHeight + 8 : top - window.innerHeight / 3;
      ownScroll = Math.max(0, Math.round(y));
      window.scrollTo(window.scrollX, ownScroll);
      render(force);
    }

    function tail() {
      if (!lineCount()) return;
      scrollToRow(rowCount(), 'bottom');
    }

    /* ----- folds, permalinks, follow, first error ----- */

    function toggleFold(f) {
      userFold.set(f.start, !collapsed(f));
      buildFolds();
      render(true);
    }

    function expandTo(a, b) {
      let changed = false;
      ensureFolds();
      for (const f of folds) {
        // A fold whose end has not arrived yet reaches to the end of the log.
        const end = f.end === null ? Infinity : f.end;
        if (collapsed(f) && b > f.start && a <= end) { userFold.set(f.start, false); changed = true; }
      }
      if (changed) buildFolds();
    }

    function highlight(a, b, scroll) {
      const n = lineCount();
      if (!n) return;
      a = Math.min(Math.max(1, a), n); b = Math.min(Math.max(a, b), n);
      hl = [a, b];
      expandTo(a, b);
      // One render: each one lays out the page, and that is most of the cost.
      if (scroll) scrollToRow(rowOfLine(a), 'middle', true); else render(true);
    }

    function hashLines() {
      const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(location.hash);
      if (!m) return null;
      const a = Number(m[1]), b = m[2] ? Number(m[2]) : a;
      return [Math.min(a, b), Math.max(a, b)];
    }

    /* Highlights and scrolls to `#La-Lb`. While the first fetch arrives and
     * those lines have not, it waits (`wantHash`; each chunk asks again). */
    function fromHash() {
      const h = hashLines();
      if (!h) return false;
      anchor = h[0];
      wantHash = loading && nStarts - 1 < h[1];
      if (!wantHash && painted) highlight(h[0], h[1], true);
      return true;
    }

    function setFollow(on) {
      follow = on;
      if (followBtn) followBtn.setAttribute('aria-pressed', String(on));
      if (on) tail();
    }

    function isRed(st) {
      const fg = st.v ? st.bg : st.fg;
      return fg === 1 || fg === 9;
    }
    function isError(r) {
      return ERROR_RE.test(r.text) || r.spans.some((s) => isRed(s.st) && s.t.trim() !== '');
    }

    /* The first line that matches ERROR_RE or shows red text. Lines are
     * walked in order carrying the style (no per-line style lookup); only a
     * line that could match (its raw text has one of the words, or it passes
     * through a red style) is rendered to decide. Runs in slices of ~15 ms
     * so a 200,000-line log never freezes the page. */
    async function firstError() {
      const words = /The command "|error|fail|fatal/i;
      let st = DEFAULT, slice = performance.now();
      for (let k = 1; k <= lineCount(); k++) {
        const raw = rawLine(k);
        let red = isRed(st);
        const end = raw.indexOf('\x1b') < 0 ? st : sgrOnly(raw, st, (x) => { red = red || isRed(x); });
        // Words split by escapes ("fa\x1b[1miled") count too.
        const cand = red || words.test(raw) || (raw.includes('\x1b') && words.test(raw.replace(/\x1b\[[0-9;:]*[@-~]/g, '')));
        if (cand && isError(termLine(raw, st))) return k;
        st = end;
        if ((k & 63) === 0 && performance.now() - slice > 15) {
          await new Promise((res) => setTimeout(res, 0));
          slice = performance.now();
        }
      }
      return 0;
    }

    view.addEventListener('click', (e) => {
      const fb = e.target.closest('button.fold');
      if (fb) {
        const f = foldAt(Number(fb.closest('li').id.slice(1)));
        if (f) toggleFold(f);
        return;
      }
      const a = e.target.closest('a.ln');
      if (!a) return;
      const n = Number(a.closest('li').id.slice(1));
      e.preventDefault();
      let lo = n, hi = n;
      if (e.shiftKey && anchor) { lo = Math.min(anchor, n); hi = Math.max(anchor, n); } else anchor = n;
      history.replaceState(null, '', lo === hi ? '#L' + lo : '#L' + lo + '-L' + hi);
      highlight(lo, hi, false);
    });

    window.addEventListener('hashchange', fromHash);
    window.addEventListener('scroll', () => {
      if (follow && Math.abs(window.scrollY - ownScroll) > lh * 2 && window.scrollY < ownScroll) setFollow(false);
      later(false);
    }, { passive: true });
    window.addEventListener('resize', () => later(true));
    if (followBtn) followBtn.addEventListener('click', () => setFollow(!follow));
    if (errBtn) errBtn.addEventListener('click', async () => {
      status.textContent = 'Looking for the first error…';
      const n = await firstError();
      if (n) { history.replaceState(null, '', '#L' + n); highlight(n, n, true); status.textContent = 'First error: line ' + n; }
      else status.textContent = 'No error found';
    });

    function measure() {
      const probe = lineElement(1);
      list.replaceChildren(probe);
      const h = probe.getBoundingClientRect().height;
      if (h > 0) lh = h;
    }

    function grown() {
      later(true);
      if (follow) requestAnimationFrame(tail);
    }

    /* ----- loading and following ----- */

    /* Reads the raw log from `offset` as it arrives (a 16 MB log takes a
     * while), calling `progress` after each network chunk. */
    async function fetchFrom(offset, progress) {
      const res = await fetch(rawUrl, offset ? { headers: { Range: 'bytes=' + offset + '-' } } : {});
      if (res.status === 416) return;
      if (!res.ok) throw new Error('log: HTTP ' + res.status);
      if (progress) api.timings.headers = performance.now();
      let skip = offset && res.status !== 206 ? offset : 0; // Range ignored: the whole file came
      if (!res.body || !res.body.getReader) {
        append(new Uint8Array(await res.arrayBuffer()).subarray(skip));
        return;
      }
      const reader = res.body.getReader();
      let slice = performance.now();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        let v = value;
        if (skip) { const k = Math.min(skip, v.length); skip -= k; v = v.subarray(k); }
        if (progress) {
          api.timings.chunks = (api.timings.chunks || 0) + 1;
          api.timings.biggest = Math.max(api.timings.biggest || 0, v.length);
        }
        // When the page falls behind, the browser hands over megabytes at
        // once: take them 256 KiB at a time, so the first screen does not
        // wait for a whole 2 MB piece and no task runs long.
        for (let a = 0; a < v.length; a += PART) {
          const t0 = performance.now();
          append(v.subarray(a, a + PART));
          if (progress) {
            api.timings.first = api.timings.first || t0;
            api.timings.appendMs = (api.timings.appendMs || 0) + performance.now() - t0;
            if (await progress()) slice = performance.now(); // it waited for a frame
          }
          // Chunks already queued resolve read() as microtasks: one task
          // could run through the whole body. Yield now and then, so the page
          // paints and answers input (no task over ~50 ms).
          if (performance.now() - slice > 30) { await new Promise((r) => setTimeout(r, 0)); slice = performance.now(); }
        }
      }
      if (progress) api.timings.body = performance.now();
    }

    function b64(s) {
      const bin = atob(s);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    }

    function stream() {
      if (final || !streamUrl || !window.EventSource) return;
      const es = openStream(streamUrl + (streamUrl.includes('?') ? '&' : '?') + 'offset=' + received);
      let busy = Promise.resolve();
      es.addEventListener('log', (e) => {
        const data = b64(e.data);
        const end = Number(e.lastEventId);
        busy = busy.then(async () => {
          const start = end - data.length;
          if (end <= received) return;               // already have it
          if (start > received) await fetchFrom(received, null); // a gap: read it from the file
          if (end > received) append(data.subarray(data.length - (end - received)));
          grown();
        }).catch(() => {});
      });
      es.addEventListener('end', (e) => {
        es.close();
        busy = busy.then(() => {
          let state = null;
          try { state = JSON.parse(e.data).state; } catch (err) { /* keep null */ }
          final = true;
          section.setAttribute('data-final', 'true');
          addText(decoder.decode());
          if (state) api.state = state;
          grown();
        });
      });
    }

    /* The first screen is ready: the lines around `#L…` once they are
     * here, the tail (when following) once everything is, else the top as
     * soon as it fills the window, or 50 ms after the first bytes with
     * whatever rows there are (a log of big folds shows a row per fold and
     * would otherwise wait for 50 folds); later rows appear below it. */
    function canPaint() {
      if (!lineCount()) return false;
      const screen = Math.ceil(window.innerHeight / lh) + 1;
      const h = hashLines();
      if (h) return nStarts - 1 >= h[1] + screen;
      if (follow) return false;
      return rowCount() >= screen || performance.now() - api.timings.first > 50;
    }

    function paint() {
      painted = true;
      measure();
      jumped = fromHash();
      render(true);
      api.timings.render = performance.now();
      // After the next frame the lines are on screen: first paint, for
      // benchmarks. Reading waits for that frame (queued chunks would hold
      // it back), but at most 100 ms: a background tab gets no frames.
      return new Promise((resolve) => {
        requestAnimationFrame(() => setTimeout(() => {
          api.paintMs = api.timings.paint = performance.now();
          resolve(true);
        }, 0));
        setTimeout(() => resolve(true), 100);
      });
    }

    /* After each chunk of the first fetch: paint the first screen when it is
     * here, then keep the window and the permalink up to date. */
    let jumped = false, rowsBefore = 0;
    function progress() {
      if (!painted) return canPaint() ? paint() : false;
      if (wantHash) fromHash();
      const rows = rowCount();
      // Re-render what is shown only if it changed: the tail line or folds.
      later(rendered[1] >= rowsBefore || newMarkers);
      rowsBefore = rows;
      newMarkers = false;
      return false;
    }

    (async () => {
      try {
        await fetchFrom(0, progress);
      } catch (e) {
        status.textContent = 'Could not load the log: ' + e.message;
        return;
      }
      if (final) addText(decoder.decode());
      loading = false;  // folds that never ended open now (the running tail)
      buildFolds();
      if (!painted) await paint();
      else { if (wantHash) fromHash(); render(true); }
      api.timings.parsed = performance.now();
      api.ready = true;
      api.readyMs = performance.now();
      backfill();
      if (!jumped && follow) tail();
      stream();
    })();
  }

  /* ---------- keyboard ---------- */

  /* In the log: `f` toggles follow, `e` jumps to the first error, `g` / `G`
   * to the top / the end. Never while typing. */
  function keys() {
    document.addEventListener('keydown', (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
      const log = document.getElementById('log');
      if (!log || !window.khaLog) return;
      const click = (id) => { const b = document.getElementById(id); if (b) b.click(); };
      if (e.key === 'f') click('follow');
      else if (e.key === 'e') click('first-error');
      else if (e.key === 'g') window.scrollTo(0, 0);
      else if (e.key === 'G') window.scrollTo(0, document.documentElement.scrollHeight);
      else return;
      e.preventDefault();
    });
  }

  // The line renderer, for tests that compare it with kha_core::term.
  window.khaTerm = { line: termLine, attrs: styleAttrs, DEFAULT };

  function start() {
    tick();
    setInterval(tick, 1000);
    liveRegions();
    const log = document.getElementById('log');
    if (log && log.getAttribute('data-raw') && window.TextDecoder) logViewer(log);
    keys();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
