// One search as a tree: rounds left to right, a node per candidate (its chunk, score, state),
// an edge to its parent, the returned answer's path highlighted, details on hover or focus.
// Every text from the trace goes in as textContent: model output is never markup.
'use strict';

const W2STree = (() => {
  const NS = 'http://www.w3.org/2000/svg';
  const NODE_W = 220, NODE_H = 42, GAP_X = 44, GAP_Y = 10, HEAD = 44, PAD = 10;
  const CHARS = 30; // of a chunk on its node (monospace 11px)

  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text != null) e.textContent = text;
    return e;
  }

  const visible = (s) => s.replace(/\n/g, '⏎').replace(/\t/g, '⇥');
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
  const fmtScore = (s) => (s == null ? '—' : (s >= 0 ? '+' : '') + s.toFixed(2));
  const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');

  // Rows: round 0 by score; later rounds grouped under their parent's row, then by score.
  function layout(rounds) {
    const rows = [];
    rounds.forEach((rd, r) => {
      const parentRow = r ? rows[r - 1] : null;
      const rank = (c) => (parentRow && c.parent != null && parentRow[c.parent] != null ? parentRow[c.parent] : -1);
      const order = rd.candidates.map((_, i) => i).sort((a, b) => {
        const ca = rd.candidates[a], cb = rd.candidates[b];
        return rank(ca) - rank(cb) || (cb.score ?? -Infinity) - (ca.score ?? -Infinity) || a - b;
      });
      const row = [];
      order.forEach((i, n) => { row[i] = n; });
      rows.push(row);
    });
    return rows;
  }

  const xOf = (r) => PAD + r * (NODE_W + GAP_X);
  const yOf = (n) => HEAD + n * (NODE_H + GAP_Y);

  function onPath(trace) {
    const best = (trace.answers || [])[0];
    const set = new Set();
    (best && best.path ? best.path : []).forEach((i, r) => { if (i != null) set.add(r + ':' + i); });
    return set;
  }

  // Draws `trace` into `container` (replacing what was there). opts.live: a search still running.
  function render(container, trace, opts) {
    const rounds = trace.rounds || [];
    const rows = layout(rounds);
    const path = onPath(trace);
    const tallest = Math.max(1, ...rounds.map((rd) => rd.candidates.length));
    const svg = el('svg', {
      class: 'tree', width: PAD * 2 + Math.max(1, rounds.length) * (NODE_W + GAP_X) - GAP_X,
      height: yOf(tallest) + PAD, 'data-rounds': rounds.length, 'data-final': opts.live ? 'false' : 'true',
      role: 'img', 'aria-label': 'search tree, ' + rounds.length + ' rounds',
    });
    const edges = el('g', { class: 'edges' });
    svg.appendChild(edges);
    rounds.forEach((rd, r) => {
      const g = el('g', { class: 'round', 'data-round': r });
      g.appendChild(el('text', { class: 'round-head', x: xOf(r), y: 16 }, 'round ' + rd.index));
      g.appendChild(el('text', { class: 'round-sub', x: xOf(r), y: 31 },
        plural(rd.upstream_calls, 'call') + ' · ' + rd.upstream_completion_tokens + ' tok · ' +
        (rd.sample_seconds + rd.score_seconds).toFixed(1) + ' s'));
      rd.candidates.forEach((c, i) => {
        const y = yOf(rows[r][i]);
        const hot = path.has(r + ':' + i);
        if (r && c.parent != null && rows[r - 1][c.parent] != null) {
          const px = xOf(r - 1) + NODE_W, py = yOf(rows[r - 1][c.parent]) + NODE_H / 2;
          const x = xOf(r), yy = y + NODE_H / 2, mid = (px + x) / 2;
          edges.appendChild(el('path', {
            class: 'edge' + (hot && path.has(r - 1 + ':' + c.parent) ? ' on-path' : '') + (c.carried ? ' carried' : ''),
            d: `M${px},${py} C${mid},${py} ${mid},${yy} ${x},${yy}`,
          }));
        }
        g.appendChild(node(trace, r, i, c, y, hot, opts));
      });
      svg.appendChild(g);
    });
    container.replaceChildren(svg);
    if (opts.live) container.scrollLeft = container.scrollWidth;
  }

  function node(trace, r, i, c, y, hot, opts) {
    const g = el('g', {
      class: `node state-${c.state}` + (hot ? ' on-path' : '') + (c.carried ? ' carried' : '') +
        (c.pruned_early ? ' pruned-early' : '') +  // kept, but given no continuation (k_tau, decide_after)
        (c.cut_at != null ? ' cut-at' : ''),  // early rejection: cut a few tokens into its chunk (reject_at)
      transform: `translate(${xOf(r)},${y})`, tabindex: 0,
      'data-round': r, 'data-index': i, 'data-parent': c.parent == null ? '' : c.parent,
      'data-state': c.state, 'data-score': c.score == null ? '' : c.score, 'data-text': c.text,
      'data-parts': c.parts ? JSON.stringify(c.parts) : '',
    });
    g.appendChild(el('rect', { width: NODE_W, height: NODE_H, rx: 5 }));
    const label = c.carried ? '(finished, carried over)' : clip(visible(c.chunk), CHARS) || '∅';
    g.appendChild(el('text', { class: 'chunk', x: 8, y: 17 }, label));
    const end = c.finished ? ' · ' + (c.finish_reason || 'done') :
      c.pruned_early ? ' · cut early' : c.cut_at != null ? ` · cut at token ${c.cut_at}` : (c.draws != null && c.draws < ((trace.params || {}).k || 0) ?
        ` · ${c.draws} draw${c.draws === 1 ? '' : 's'}` : '');
    g.appendChild(el('text', { class: 'meta', x: 8, y: 33 }, `#${i}  ${fmtScore(c.score)}  ${c.state}${end}`));
    if (opts.tooltip) {
      const show = (ev) => opts.tooltip.show(details(trace, r, i), ev, g);
      g.addEventListener('mouseenter', show);
      g.addEventListener('mousemove', show);
      g.addEventListener('focus', show);
      g.addEventListener('mouseleave', () => opts.tooltip.hide());
      g.addEventListener('blur', () => opts.tooltip.hide());
    }
    return g;
  }

  // What hovering a node shows: the whole text (this round's chunk marked), tokens, the round's calls.
  function details(trace, r, i) {
    const rd = trace.rounds[r], c = rd.candidates[i];
    const box = document.createDocumentFragment();
    const h = document.createElement('h3');
    h.textContent = `Round ${rd.index} · candidate #${i} · ${c.state}` + (c.carried ? ' (carried)' : '');
    const text = document.createElement('p');
    text.className = 'full-text';
    const before = document.createElement('span');
    before.textContent = c.text.slice(0, c.text.length - c.chunk.length);
    const chunk = document.createElement('mark');
    chunk.textContent = c.chunk;
    text.append(before, chunk);
    const dl = document.createElement('dl');
    const rows = [
      ['score', fmtScore(c.score)],
      ...partRows(trace, c),
      ['finished', c.finished ? (c.finish_reason || 'yes') : 'no'],
      ['parent', c.parent == null ? '—' : 'round ' + (rd.index - 1) + ' #' + c.parent],
      ['tokens (this chunk / path)', c.chunk_tokens + ' / ' + c.tokens],
      ['round: upstream calls', rd.upstream_calls],
      ['round: upstream tokens (prompt + completion)',
        rd.upstream_prompt_tokens + ' + ' + rd.upstream_completion_tokens],
      ['round: scorer tokens', rd.scorer_tokens],
      ['round: sample / score s', rd.sample_seconds.toFixed(2) + ' / ' + rd.score_seconds.toFixed(2)],
    ];
    if (rd.failed_chunks) rows.push(['round: failed draws', rd.failed_chunks]);
    for (const [k, v] of rows) {
      const dt = document.createElement('dt'), dd = document.createElement('dd');
      dt.textContent = k;
      dd.textContent = String(v);
      dl.append(dt, dd);
    }
    box.append(h, text, dl);
    return box;
  }

  // A mixture guide: each part's raw score (the score is their weighted sum), with the weight a request set.
  function partRows(trace, c) {
    const weights = trace.guide_weights || {};
    return Object.entries(c.parts || {}).map(([name, s]) =>
      [`part ${name}` + (weights[name] == null ? '' : ` (weight ${weights[name]})`), fmtScore(s)]);
  }

  return { render, fmtScore };
})();
