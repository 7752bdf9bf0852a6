// The page: the API key, the playground (a live search streamed round by round), the
// recent searches of this replica, and trace files opened offline. The key travels in
// the Authorization header of fetch requests only, never in a URL.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = 'w2s-api-key'; // sessionStorage: this tab only, gone when it closes
  const state = { key: sessionStorage.getItem(KEY) || '', info: null, running: null };

  // --- talking to the server ---------------------------------------------------------

  async function api(path, opts = {}) {
    const headers = Object.assign({}, opts.headers);
    if (state.key) headers.Authorization = 'Bearer ' + state.key;
    const res = await fetch(path, Object.assign({ cache: 'no-store' }, opts, { headers }));
    if (res.ok) return res;
    let message = res.status + ' ' + res.statusText;
    try {
      const body = await res.json();
      message = (body.error && body.error.message) || message;
    } catch (_) { /* not JSON: the status says it */ }
    throw Object.assign(new Error(message), { status: res.status });
  }

  // Server-sent events from a fetch response (EventSource cannot send headers).
  async function* events(res) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length) yield { event, data: JSON.parse(data.join('\n')) };
      }
    }
  }

  function say(text, kind) {
    $('status').textContent = text;
    $('status').dataset.kind = kind || 'info';
  }

  // --- showing a trace -----------------------------------------------------------------

  const tooltip = {
    show(content, ev, node) {
      const tip = $('tooltip');
      tip.replaceChildren(content);
      tip.hidden = false;
      const box = node.getBoundingClientRect();
      const x = ev && ev.clientX != null ? ev.clientX + 14 : box.right + 8;
      const y = ev && ev.clientY != null ? ev.clientY + 14 : box.top;
      tip.style.left = Math.max(4, Math.min(x, window.innerWidth - tip.offsetWidth - 8)) + 'px';
      tip.style.top = Math.max(4, Math.min(y, window.innerHeight - tip.offsetHeight - 8)) + 'px';
    },
    hide() { $('tooltip').hidden = true; },
  };

  function show(trace, live) {
    summary(trace, live);
    W2STree.render($('tree'), trace, { live, tooltip });
    const best = (trace.answers || [])[0];
    $('answer').hidden = live || !best;
    $('answer-text').textContent = live || !best ? '' : best.text;
    $('answer-meta').textContent = live || !best ? '' :
      `score ${W2STree.fmtScore(best.score)} · ${best.finish_reason} · ${best.completion_tokens} tokens`;
  }

  // What the search cost upstream (the trace's `cost`): the cached share of the prompt, and USD where priced.
  function costText(cost) {
    if (!cost) return '';
    const share = cost.prompt_tokens ? Math.round(100 * cost.cached_tokens / cost.prompt_tokens) : 0;
    return ` · ${cost.cached_tokens} of ${cost.prompt_tokens} prompt tokens cached (${share}%)` +
      (cost.cost_usd != null ? ` · $${cost.cost_usd.toFixed(6)}` : '');
  }

  function summary(trace, live) {
    const p = trace.params || {};
    const box = $('summary');
    box.className = '';
    const head = document.createElement('p');
    head.textContent = `${trace.route} · ${trace.mode} · W ${p.w} K ${p.k} L ${p.l == null ? 'none' : p.l}` +
      ` · max ${p.max_tokens} tokens` + (p.seed != null ? ` · seed ${p.seed}` : '') +
      (live ? ` · running: ${trace.rounds.length} round(s) so far` :
        ` · ${trace.rounds.length} rounds, ${trace.upstream_calls} upstream calls, ` +
        `${trace.upstream_prompt_tokens + trace.upstream_completion_tokens} upstream tokens, ` +
        `${trace.scorer_tokens} scorer tokens` + costText(trace.cost) +
        (trace.budget_exhausted ? ' (budget exhausted)' : ''));
    const prompt = document.createElement('pre');
    prompt.className = 'prompt';
    if (trace.prompt) {
      const cut = trace.prompt.truncated ? ` … (cut: ${trace.prompt.chars} characters)` : '';
      prompt.textContent = trace.prompt.text + cut;
    } else {
      prompt.textContent = '(this trace carries no prompt)';
    }
    box.replaceChildren(head, prompt);
  }

  // --- the playground --------------------------------------------------------------------

  function routeSettings() {
    const info = state.info;
    const route = info && info.routes.find((r) => r.name === $('route').value);
    if (!route) return;
    $('w').value = route.search.w;
    $('k').value = route.search.k;
    $('l').value = route.search.l == null ? '' : route.search.l;
    $('max-tokens').value = route.search.max_tokens;
  }

  function request() {
    const num = (id) => ($(id).value === '' ? null : Number($(id).value));
    const w2s = { l: num('l') }; // an empty L is Best-of-N; any other empty field keeps the route's setting
    for (const [key, id] of [['w', 'w'], ['k', 'k'], ['max_tokens', 'max-tokens'], ['seed', 'seed']]) {
      if (num(id) != null) w2s[key] = num(id);
    }
    return { model: $('route').value, prompt: $('prompt').value, chat: $('chat').checked, w2s };
  }

  async function run(ev) {
    ev.preventDefault();
    if (state.running) return;
    const body = request();
    const route = state.info.routes.find((r) => r.name === body.model);
    const live = {
      version: 2, route: body.model, mode: route ? route.mode : '',
      params: Object.assign({}, route && route.search, body.w2s),
      prompt: { text: body.prompt, chars: body.prompt.length, truncated: false }, rounds: [], answers: [],
    };
    const ctrl = new AbortController();
    state.running = ctrl;
    $('run').disabled = true;
    $('stop').disabled = false;
    show(live, true);
    say('Searching…');
    try {
      const res = await api('/ui/api/search', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
        signal: ctrl.signal,
      });
      for await (const msg of events(res)) received(msg, live);
    } catch (e) {
      say(e.name === 'AbortError' ? 'Stopped: the search was cancelled.' : 'The search failed: ' + e.message,
        e.name === 'AbortError' ? 'info' : 'error');
    } finally {
      state.running = null;
      $('run').disabled = !(state.info && state.info.ready);
      $('stop').disabled = true;
    }
  }

  // One event of the playground's stream: a round to draw, the finished search, or its failure.
  function received(msg, live) {
    if (msg.event === 'round') {
      live.rounds.push(msg.data);
      show(live, true);
      say(`Round ${msg.data.index} scored; searching on…`);
    } else if (msg.event === 'done') {
      show(W2STrace.normalize(msg.data.trace), false);
      $('answer').dataset.searchId = msg.data.search_id || ''; // null: this replica keeps no searches
      say('Done.');
      loadRecent();
    } else if (msg.event === 'error') {
      say('The search failed: ' + msg.data.error.message, 'error');
    }
  }

  // --- the server's state: routes, recent searches ------------------------------------

  async function connect() {
    let info;
    try {
      info = await (await api('/ui/api/info')).json();
    } catch (e) {
      if (e.status === 401) {
        say(state.key ? 'That key was refused: enter a valid one.' : 'This server needs an API key: enter it above.',
          'warn');
        $('key').focus();
      } else {
        say('Cannot reach the server: ' + e.message, 'error');
      }
      return;
    }
    state.info = info;
    const select = $('route');
    const chosen = select.value;
    select.replaceChildren(...info.routes.map((r) => {
      const o = document.createElement('option');
      o.value = r.name;
      o.textContent = `${r.name} (${r.mode})`;
      o.selected = chosen ? r.name === chosen : r.default;
      return o;
    }));
    if (!chosen) routeSettings();
    $('run').disabled = !info.ready || !!state.running;
    if (info.load_error) say('The models failed to load: ' + info.load_error, 'error');
    else if (!info.ready) { say('The models are loading…'); setTimeout(connect, 3000); }
    else say('Ready.');
    loadRecent();
  }

  async function loadRecent() {
    let list;
    try {
      list = await (await api('/ui/api/searches')).json();
    } catch (e) {
      $('recent-label').textContent = 'Cannot list the recent searches: ' + e.message;
      return;
    }
    $('recent-label').textContent = list.capacity ?
      `Kept in memory by this replica (${list.replica}): the last ${list.capacity}, prompts cut to ` +
      `${state.info ? state.info.recent.prompt_chars : '?'} characters.` :
      `This replica (${list.replica}) keeps no searches (ui.recent_searches: 0).`;
    $('recent-list').replaceChildren(...list.searches.map((s) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.id = s.id;
      const head = document.createElement('span');
      head.className = 'when';
      const when = new Date(s.created * 1000).toLocaleTimeString();
      head.textContent = `${when} · ${s.route} · ${s.mode} · ${s.rounds} rounds`;
      const prompt = document.createElement('span');
      prompt.className = 'what';
      prompt.textContent = s.prompt + (s.prompt_truncated ? '…' : '');
      b.append(head, prompt);
      b.addEventListener('click', () => openRecent(s.id));
      li.append(b);
      return li;
    }));
  }

  async function openRecent(id) {
    try {
      show(W2STrace.normalize(await (await api('/ui/api/searches/' + encodeURIComponent(id))).json()), false);
      say('Showing a recent search.');
    } catch (e) {
      say('Cannot open that search: ' + e.message, 'error');
    }
  }

  // --- trace files ----------------------------------------------------------------------

  function openText(name, text) {
    let found;
    try {
      found = W2STrace.find(text, name);
    } catch (e) {
      say(e.message, 'error');
      return;
    }
    $('file-list').replaceChildren(...found.map(({ label, trace }) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = `${label} · ${trace.route} · ${trace.rounds.length} rounds`;
      b.addEventListener('click', () => show(trace, false));
      li.append(b);
      return li;
    }));
    show(found[0].trace, false);
    say(`Opened ${name}` + (found.length > 1 ? `: ${found.length} traces, pick one on the left.` : '.'));
  }

  async function openFile(file) {
    if (file) openText(file.name, await file.text());
  }

  // --- wiring ---------------------------------------------------------------------------

  function wire() {
    $('file').addEventListener('change', (e) => openFile(e.target.files[0]));
    window.addEventListener('dragover', (e) => e.preventDefault());
    window.addEventListener('drop', (e) => {
      e.preventDefault();
      openFile(e.dataTransfer.files[0]);
    });
    const embedded = $('w2s-file'); // `w2s view FILE`: the file rides inside the page, no server
    if (embedded) {
      document.body.classList.add('offline');
      const { name, text } = JSON.parse(embedded.textContent);
      openText(name, text);
      return;
    }
    $('key').value = state.key;
    $('key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      state.key = $('key').value.trim();
      if (state.key) sessionStorage.setItem(KEY, state.key);
      connect();
    });
    $('forget-key').addEventListener('click', () => {
      state.key = '';
      $('key').value = '';
      sessionStorage.removeItem(KEY);
      say('Key forgotten.');
    });
    $('route').addEventListener('change', routeSettings);
    $('run-form').addEventListener('submit', run);
    $('stop').addEventListener('click', () => state.running && state.running.abort());
    $('recent-refresh').addEventListener('click', loadRecent);
    $('run').disabled = true;
    connect();
  }

  wire();
})();
