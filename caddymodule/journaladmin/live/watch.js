// The journal's live page: follows .../{name}/live (server-sent events) and shows each
// record as a row, newest on top. Every value is written with textContent, never as HTML.
(() => {
  'use strict';

  const MAX_ROWS = 3000;       // oldest rows are dropped beyond this
  const BACKLOG = 200;         // past records shown when the page opens
  const STALE_MS = 40000;      // no event (heartbeats come every 15 s) for this long: reconnect
  const RETRY_MAX_MS = 30000;  // ceiling of the reconnection backoff

  const base = location.pathname.replace(/\/watch\/?$/, '');
  const journalName = decodeURIComponent(base.slice(base.lastIndexOf('/') + 1));
  const $ = (id) => document.getElementById(id);
  const rows = $('rows');
  const inputs = {
    type: $('filter-resource-type'),
    subject: $('filter-user-name'),
    outcome: $('filter-outcome'),
  };
  const outcomeClass = {
    applied: 'good', delivered: 'good',
    failed: 'bad', rejected: 'bad', denied: 'bad', error: 'bad', dead: 'bad',
    pending: 'warn', skipped: 'warn', dry_run: 'warn', queued: 'warn',
  };

  let source = null;
  let lastSeq = 0;        // highest sequence number received
  let received = 0;
  let lastEventAt = 0;
  let retryMs = 1000;
  let retryTimer = 0;

  $('journal-name').textContent = journalName;
  document.title = 'scimgate journal ' + journalName;

  // Filters start from the page's own query string (?resource_type=&user_name=&outcome=).
  const params = new URLSearchParams(location.search);
  inputs.type.value = params.get('resource_type') || '';
  inputs.subject.value = params.get('user_name') || '';
  inputs.outcome.value = params.get('outcome') || '';

  function setStatus(state, text) {
    const el = $('status');
    el.className = 'status ' + state;
    $('status-text').textContent = text;
    el.dataset.state = state;
  }

  function text(value) {
    if (value === undefined || value === null) return '';
    if (Array.isArray(value)) return value.map(text).join(', ');
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  function cell(row, cls, value, title) {
    const td = document.createElement('td');
    td.className = cls;
    td.textContent = text(value);
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  function shortTime(value) {
    const d = new Date(value);
    if (!value || isNaN(d.getTime())) return text(value);
    return d.toLocaleString(undefined, {
      year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
    });
  }

  function currentFilter() {
    return {
      type: inputs.type.value.trim().toLowerCase(),
      subject: inputs.subject.value.trim().toLowerCase(),
      outcome: inputs.outcome.value.trim().toLowerCase(),
    };
  }

  function matches(key, f) {
    return (!f.type || key.type === f.type) &&
      (!f.subject || key.subject.includes(f.subject)) &&
      (!f.outcome || key.outcome === f.outcome);
  }

  const keys = new WeakMap(); // row -> lower-cased filter fields

  function addRecord(rec, fresh) {
    const row = document.createElement('tr');
    row.dataset.seq = text(rec.seq);
    row.dataset.outcome = text(rec.outcome);
    cell(row, 'time', shortTime(rec.time), text(rec.time));
    cell(row, 'seq', rec.seq, rec.hash ? 'hash ' + text(rec.hash) : '');
    cell(row, 'client', rec.client);
    cell(row, 'action', rec.action);
    cell(row, 'resource-type', rec.resource_type);
    cell(row, 'subject', rec.subject);
    cell(row, 'scim-id', rec.scim_id);
    const outcome = text(rec.outcome);
    const td = cell(row, 'outcome', outcome, rec.error ? text(rec.error) : '');
    td.classList.add(outcomeClass[outcome] || 'other');
    cell(row, 'http-status', rec.status);
    cell(row, 'events', rec.events);
    keys.set(row, {
      type: text(rec.resource_type).toLowerCase(),
      subject: text(rec.subject).toLowerCase(),
      outcome: outcome.toLowerCase(),
    });
    row.hidden = !matches(keys.get(row), currentFilter());
    if (fresh) row.classList.add('fresh');
    rows.prepend(row);
    while (rows.rows.length > MAX_ROWS) rows.lastElementChild.remove();
    received++;
    updateCounts();
  }

  function applyFilter() {
    const f = currentFilter();
    for (const row of rows.rows) row.hidden = !matches(keys.get(row), f);
    updateCounts();
  }

  function updateCounts() {
    let shown = 0;
    for (const row of rows.rows) if (!row.hidden) shown++;
    $('counts').textContent = shown + ' of ' + rows.rows.length + ' rows shown, ' + received + ' received';
    $('empty').hidden = rows.rows.length > 0;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    const q = lastSeq > 0 ? 'last_event_id=' + lastSeq : 'backlog=' + BACKLOG;
    setStatus(lastSeq > 0 ? 'reconnecting' : 'connecting', lastSeq > 0 ? 'reconnecting' : 'connecting');
    const es = new EventSource(base + '/live?' + q);
    source = es;
    lastEventAt = Date.now();
    es.onopen = () => {
      retryMs = 1000;
      lastEventAt = Date.now();
      setStatus('connected', 'live');
    };
    es.addEventListener('record', (ev) => {
      lastEventAt = Date.now();
      let rec;
      try { rec = JSON.parse(ev.data); } catch (e) { return; }
      const seq = Number(rec.seq);
      if (!(seq > lastSeq)) return; // already shown (a replay overlapping what we have)
      lastSeq = seq;
      addRecord(rec, true);
    });
    es.addEventListener('heartbeat', () => { lastEventAt = Date.now(); });
    es.addEventListener('dropped', () => reconnectSoon(0));
    es.onerror = () => {
      if (es !== source) return;
      if (es.readyState === EventSource.CLOSED) {
        reconnectSoon(retryMs); // the browser gave up (an HTTP error): retry with backoff
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      } else {
        setStatus('reconnecting', 'reconnecting'); // the browser retries with Last-Event-ID
      }
    };
  }

  function reconnectSoon(ms) {
    if (source) source.close();
    source = null;
    setStatus('reconnecting', ms > 0 ? 'disconnected, retrying in ' + Math.round(ms / 1000) + ' s' : 'reconnecting');
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
  }

  setInterval(() => {
    if (source && Date.now() - lastEventAt > STALE_MS) reconnectSoon(0);
  }, 5000);

  for (const input of Object.values(inputs)) input.addEventListener('input', applyFilter);
  $('filters').addEventListener('submit', (ev) => ev.preventDefault());
  $('clear-filters').addEventListener('click', () => {
    for (const input of Object.values(inputs)) input.value = '';
    applyFilter();
  });
  $('clear-rows').addEventListener('click', () => {
    rows.replaceChildren();
    updateCounts();
  });

  updateCounts();
  connect();
})();
