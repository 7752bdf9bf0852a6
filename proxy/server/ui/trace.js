// Reading traces: the schema is proxy/api/trace.py's (version 2; version 1 is upgraded here).
// A file may hold a trace, a response body carrying one under "w2s", or JSONL of either or
// of batch output records (proxy/api/trace.py's traces_in reads files the same way).
'use strict';

const W2STrace = (() => {
  const READABLE = [1, 2];

  function traceOf(doc) {
    for (let hop = 0; hop < 3; hop++) {
      if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return null;
      if (Array.isArray(doc.rounds) && 'version' in doc) return doc;
      const response = doc.response;
      doc = 'w2s' in doc ? doc.w2s : (response && typeof response === 'object' ? response.body : null);
    }
    return null;
  }

  // -> [{label, trace}] for every trace in `text`; throws with a readable message if none.
  function find(text, name) {
    let docs;
    try {
      docs = [[null, JSON.parse(text)]];
    } catch (_) {
      docs = [];
      text.split('\n').forEach((line, i) => {
        if (!line.trim()) return;
        try { docs.push([i + 1, JSON.parse(line)]); } catch (_) { /* not a JSON line: skipped */ }
      });
    }
    const found = [];
    for (const [line, doc] of docs) {
      const trace = traceOf(doc);
      if (!trace) continue;
      const label = (doc && doc.custom_id) || (line === null ? (name || 'trace') : 'line ' + line);
      found.push({ label: String(label), trace: normalize(trace) });
    }
    if (!found.length) throw new Error((name || 'the file') + ' holds no w2s search trace');
    return found;
  }

  // A trace with every field the tree needs; version 1 gets them derived.
  function normalize(trace) {
    if (!READABLE.includes(trace.version)) {
      throw new Error('trace version ' + trace.version + ' is not one this page reads (' + READABLE.join(', ') + ')');
    }
    if (trace.version >= 2) return trace;
    const rounds = trace.rounds.map((rd, r) => Object.assign({}, rd, {
      candidates: rd.candidates.map((c, i) => upgrade(c, i, r ? trace.rounds[r - 1].candidates[c.parent] : null)),
    }));
    const answers = (trace.answers || []).map((a) => Object.assign({}, a, { path: pathOf(rounds, a) }));
    return Object.assign({}, trace, { rounds, answers, prompt: trace.prompt || null });
  }

  function upgrade(c, index, parent) {
    const extends_ = parent != null && c.text.startsWith(parent.text);
    return Object.assign({}, c, {
      index,
      chunk: extends_ ? c.text.slice(parent.text.length) : c.text,
      state: !c.kept ? 'pruned' : (c.finished ? 'finished' : 'kept'),
      chunk_tokens: extends_ ? c.tokens - parent.tokens : c.tokens,
      carried: extends_ && parent.finished && c.text === parent.text,
    });
  }

  // Version 1 did not say which candidate an answer is: the kept one of the last round with its text.
  function pathOf(rounds, answer) {
    const path = rounds.map(() => null);
    if (!rounds.length) return path;
    let index = rounds[rounds.length - 1].candidates.findIndex((c) => c.kept && c.text === answer.text);
    for (let r = rounds.length - 1; r >= 0 && index != null && index >= 0; r--) {
      path[r] = index;
      index = rounds[r].candidates[index].parent;
    }
    return path;
  }

  return { find, normalize, READABLE };
})();
