// The journal's watch page. The table is one row per change, newest first, read from
// .../{name}/changes, which applies the filters on the server over the whole journal and
// pages back in time. New records arrive from .../{name}/live (server-sent events): a
// record of a change on the page updates its row (pending -> applied, failed, ...), a new
// change that matches the filters is added on top. A row opens to the change's attributes,
// decision and native calls. Every value is written with textContent, never as HTML.
(() => {
  'use strict';

  const PAGE = 50;             // changes per request
  const MAX_ROWS = 3000;       // oldest rows are dropped beyond this
  const MAX_INTENTS = 1000;    // intents of changes not shown, kept to complete a later row
  const STALE_MS = 40000;      // no event (heartbeats come every 15 s) for this long: reconnect
  const RETRY_MAX_MS = 30000;  // ceiling of the reconnection backoff
  const FILTERS = ['from', 'to', 'outcome', 'user_name', 'scim_id', 'resource_type', 'event', 'client'];

  const base = location.pathname.replace(/\/watch\/?$/, '');
  const journalName = decodeURIComponent(base.slice(base.lastIndexOf('/') + 1));
  const $ = (id) => document.getElementById(id);
  const rowsEl = $('rows');
  const inputs = {
    from: $('filter-from'), to: $('filter-to'), outcome: $('filter-outcome'),
    user_name: $('filter-user-name'), scim_id: $('filter-scim-id'),
    resource_type: $('filter-resource-type'), event: $('filter-event'), client: $('filter-client'),
  };
  const outcomeClass = {
    applied: 'good', delivered: 'good',
    failed: 'bad', rejected: 'bad', denied: 'bad', error: 'bad', dead: 'bad',
    pending: 'warn', skipped: 'warn', dry_run: 'warn', queued: 'warn',
  };

  let filter = {};         // the filters the table shows, as query parameters
  let shown = new Map();   // change key -> {change, tr, detail}
  let intents = new Map(); // change key -> records of changes not shown (pending ones)
  let matched = 0;         // changes matching the filters, as the server counted, plus live ones
  let scanned = 0, partial = false;
  let nextBefore = 0;
  let tableHead = 0;       // records up to this sequence number are in the table's answer
  let generation = 0;      // bumps on every new query: answers of older ones are dropped

  let source = null;
  let lastSeq = 0;         // highest sequence number received from the stream
  let lastEventAt = 0;
  let retryMs = 1000;
  let retryTimer = 0;

  $('journal-name').textContent = journalName;
  document.title = 'scimgate journal ' + journalName;

  function text(value) {
    if (value === undefined || value === null) return '';
    if (Array.isArray(value)) return value.map(text).join(', ');
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  function el(tag, cls, value) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (value !== undefined) e.textContent = text(value);
    return e;
  }

  function setStatus(state, label) {
    const s = $('status');
    s.className = 'status ' + state;
    $('status-text').textContent = label;
    s.dataset.state = state;
  }

  function shortTime(value) {
    const d = new Date(value);
    if (!value || isNaN(d.getTime())) return text(value);
    return d.toLocaleString(undefined, {
      year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
    });
  }

  // datetime-local inputs hold local times; the server takes RFC 3339.
  function toRFC3339(local) {
    const d = new Date(local);
    return isNaN(d.getTime()) ? '' : d.toISOString();
  }
  function toLocalInput(rfc) {
    const d = new Date(rfc);
    if (!rfc || isNaN(d.getTime())) return '';
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' +
      p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function readInputs() {
    const f = {};
    for (const name of FILTERS) {
      let v = inputs[name].value.trim();
      if (name === 'from' || name === 'to') v = v ? toRFC3339(v) : '';
      if (v) f[name] = v;
    }
    return f;
  }

  function writeInputs(f) {
    for (const name of FILTERS) {
      const v = f[name] || '';
      inputs[name].value = (name === 'from' || name === 'to') ? toLocalInput(v) : v;
    }
  }

  // The change a record belongs to: its request, resource type and SCIM id (as the
  // server groups them); a record without a request id is a change of its own.
  function changeKey(rec) {
    if (!rec.request_id) return 'seq:' + rec.seq;
    return rec.request_id + '\u0000' + text(rec.resource_type) + '\u0000' + text(rec.scim_id);
  }

  // matches applies the filters to a change's newest record, as the server does.
  function matches(rec) {
    const f = filter;
    const t = new Date(rec.time).getTime();
    return (!f.from || t >= new Date(f.from).getTime()) &&
      (!f.to || t < new Date(f.to).getTime()) &&
      (!f.outcome || rec.outcome === f.outcome) &&
      (!f.user_name || text(rec.subject).toLowerCase() === f.user_name.toLowerCase()) &&
      (!f.scim_id || rec.scim_id === f.scim_id) &&
      (!f.resource_type || text(rec.resource_type).toLowerCase() === f.resource_type.toLowerCase()) &&
      (!f.event || (rec.events || []).includes(f.event)) &&
      (!f.client || rec.client === f.client);
  }

  function newest(change) { return change.records[change.records.length - 1]; }

  function filterBy(scimID) {
    writeInputs({ scim_id: scimID });
    apply();
  }

  function link(label, title, scimID) {
    const b = el('button', 'link', label);
    b.type = 'button';
    b.title = title;
    b.addEventListener('click', (ev) => {
      ev.stopPropagation();
      filterBy(scimID);
    });
    return b;
  }

  function fillRow(tr, change) {
    const rec = newest(change);
    const first = change.records[0];
    tr.replaceChildren();
    tr.dataset.seq = text(change.seq);
    tr.dataset.state = text(change.state);
    const time = el('td', 'time', shortTime(rec.time));
    time.title = text(rec.time);
    tr.append(time, el('td', 'client', rec.client), el('td', 'action', rec.action),
      el('td', 'resource-type', rec.resource_type));
    const subject = el('td', 'subject');
    const id = el('td', 'scim-id');
    if (rec.scim_id) {
      subject.append(link(text(rec.subject), 'show only this resource\'s changes', text(rec.scim_id)));
      id.append(link(text(rec.scim_id).slice(0, 8) + '\u2026', text(rec.scim_id) + ': show only this resource\'s changes', text(rec.scim_id)));
    } else {
      subject.textContent = text(rec.subject);
    }
    const state = el('td', 'outcome ' + (outcomeClass[change.state] || 'other'));
    state.append(el('span', 'state', change.state));
    state.title = change.records.map((r) => text(r.outcome) + ' (#' + r.seq + ')').join(' \u2192 ') +
      (rec.error ? ': ' + text(rec.error) : '');
    if (change.records.length > 1) {
      state.append(el('span', 'trail', ' after ' + text(first.outcome)));
    }
    tr.append(subject, id, state, el('td', 'http-status', rec.status), el('td', 'events', rec.events));
  }

  function detailOf(change) {
    const rec = newest(change);
    const box = el('div', 'detail-box');
    const section = (title, items) => {
      box.append(el('h3', '', title));
      const ul = el('ul');
      for (const item of items) ul.append(el('li', '', item));
      box.append(ul);
    };
    const withChanges = [...change.records].reverse().find((r) => (r.changes || []).length > 0);
    section('Changed attributes', withChanges ? withChanges.changes.map((c) => {
      let v = '';
      if (c.redacted) v = '(redacted)';
      else if (c.truncated) v = '(too large to keep)';
      else if (c.value !== undefined) v = JSON.stringify(c.value);
      return text(c.op || 'set') + ' ' + text(c.path) + (v ? ' = ' + v : '');
    }) : ['none recorded']);
    const d = rec.decision;
    if (d) {
      const verdict = d.skip ? 'skip (kept out of the app)' : (d.allow ? 'allow' : 'deny');
      const items = [verdict + (d.policy_hash ? ' \u2014 policy ' + text(d.policy_hash).slice(0, 12) : '')];
      for (const r of d.reasons || []) items.push(r);
      if ((d.dropped_attributes || []).length) items.push('dropped attributes: ' + text(d.dropped_attributes));
      if ((d.dropped_members || []).length) items.push('dropped members: ' + text(d.dropped_members));
      section('Decision', items);
    } else {
      section('Decision', ['no policy decision recorded']);
    }
    const calls = (rec.calls && rec.calls.length) ? rec.calls : (rec.backend ? [rec.backend] : []);
    section('Native calls', calls.length ? calls.map((c) =>
      text(c.method) + ' ' + text(c.url) + ' \u2192 ' + (c.status ? text(c.status) : 'no answer') +
      (c.attempts > 1 ? ', ' + c.attempts + ' attempts' : '') +
      ', ' + text(c.duration_ms) + ' ms' + (c.error ? ': ' + text(c.error) : '')) : ['none']);
    section('Records', change.records.map((r) =>
      '#' + r.seq + ' ' + text(r.time) + ' ' + text(r.outcome) + (r.status ? ' ' + r.status : '') +
      (r.native_id ? ', native id ' + text(r.native_id) : '') + (r.error ? ': ' + text(r.error) : '')));
    return box;
  }

  function toggle(item) {
    if (item.detail) {
      item.detail.remove();
      item.detail = null;
      item.tr.classList.remove('open');
      return;
    }
    const tr = el('tr', 'detail');
    const td = el('td');
    td.colSpan = 9;
    td.append(detailOf(item.change));
    tr.append(td);
    item.tr.after(tr);
    item.detail = tr;
    item.tr.classList.add('open');
  }

  function addRow(change, where) {
    const tr = el('tr', 'change');
    const item = { change, tr, detail: null };
    fillRow(tr, change);
    tr.addEventListener('click', () => toggle(item));
    shown.set(changeKey(newest(change)), item);
    if (where === 'top') {
      tr.classList.add('fresh');
      rowsEl.prepend(tr);
    } else {
      rowsEl.append(tr);
    }
    while (rowsEl.querySelectorAll('tr.change').length > MAX_ROWS) {
      const last = rowsEl.lastElementChild;
      const old = [...shown].find(([, v]) => v.tr === last || v.detail === last);
      if (old) { old[1].tr.remove(); if (old[1].detail) old[1].detail.remove(); shown.delete(old[0]); } else last.remove();
    }
  }

  function removeRow(key) {
    const item = shown.get(key);
    if (!item) return;
    item.tr.remove();
    if (item.detail) item.detail.remove();
    shown.delete(key);
  }

  function updateSummary() {
    const n = shown.size;
    let s = matched + (matched === 1 ? ' change matches' : ' changes match');
    if (partial) s += ' in the newest ' + scanned + ' records (older ones not read: narrow with From/To)';
    s += '; ' + n + ' shown';
    $('summary').textContent = s;
    $('empty').hidden = n > 0;
    $('older').hidden = !nextBefore;
  }

  function showError(msg) {
    const e = $('error');
    e.textContent = msg;
    e.hidden = !msg;
  }

  async function load(reset) {
    const gen = reset ? ++generation : generation;
    const q = new URLSearchParams(filter);
    q.set('limit', String(PAGE));
    if (!reset && nextBefore) q.set('before', String(nextBefore));
    let page;
    try {
      const resp = await fetch(base + '/changes?' + q.toString(), { headers: { Accept: 'application/json' } });
      const body = await resp.json();
      if (!resp.ok) throw new Error(body && body.error ? body.error : 'HTTP ' + resp.status);
      page = body;
    } catch (e) {
      if (gen === generation) showError('Could not read the journal: ' + e.message);
      return;
    }
    if (gen !== generation) return; // a newer query was made meanwhile
    showError('');
    if (reset) {
      rowsEl.replaceChildren();
      shown = new Map();
      matched = page.matched;
      tableHead = page.head;
    }
    scanned = page.scanned;
    partial = page.partial;
    nextBefore = page.next_before;
    for (const change of page.changes) {
      const key = changeKey(newest(change));
      if (!shown.has(key)) addRow(change, 'bottom');
    }
    updateSummary();
    if (reset && !source) connect();
  }

  function apply() {
    filter = readInputs();
    const q = new URLSearchParams(filter).toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : ''));
    nextBefore = 0;
    load(true);
  }

  // onRecord takes a record from the live stream.
  function onRecord(rec) {
    if (rec.seq <= tableHead) return; // the table's answer has it
    const key = changeKey(rec);
    const item = shown.get(key);
    if (item) {
      item.change.records.push(rec);
      item.change.seq = rec.seq;
      item.change.state = rec.outcome;
      removeRow(key);
      if (matches(rec)) {
        addRow(item.change, 'top');
      } else {
        matched--;
      }
      updateSummary();
      return;
    }
    const records = intents.get(key) || [];
    intents.delete(key);
    records.push(rec);
    if (rec.outcome === 'pending') {
      intents.set(key, records);
      if (intents.size > MAX_INTENTS) intents.delete(intents.keys().next().value);
    }
    if (!matches(rec)) return;
    matched++;
    addRow({ seq: rec.seq, state: rec.outcome, records }, 'top');
    updateSummary();
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    if (lastSeq < tableHead) lastSeq = tableHead;
    const q = lastSeq > 0 ? 'last_event_id=' + lastSeq : '';
    setStatus(source ? 'reconnecting' : 'connecting', source ? 'reconnecting' : 'connecting');
    const es = new EventSource(base + '/live' + (q ? '?' + q : ''));
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
      if (!(seq > lastSeq)) return; // already received (a replay overlapping what we have)
      lastSeq = seq;
      onRecord(rec);
    });
    es.addEventListener('heartbeat', () => { lastEventAt = Date.now(); });
    es.addEventListener('dropped', () => reconnectSoon(0));
    // The stream left records out (it resumed further back than it replays): the table's
    // query reads them.
    es.addEventListener('gap', () => load(true));
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
    setStatus('reconnecting', ms > 0 ? 'disconnected, retrying in ' + Math.round(ms / 1000) + ' s' : 'reconnecting');
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
  }

  setInterval(() => {
    if (source && Date.now() - lastEventAt > STALE_MS) reconnectSoon(0);
  }, 5000);

  $('filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  $('clear-filters').addEventListener('click', () => {
    writeInputs({});
    apply();
  });
  $('older').addEventListener('click', () => load(false));

  // Filters start from the page's own query string (?outcome=&user_name=&scim_id=...).
  const params = new URLSearchParams(location.search);
  const initial = {};
  for (const name of FILTERS) if (params.get(name)) initial[name] = params.get(name);
  writeInputs(initial);
  filter = readInputs();
  updateSummary();
  load(true);
})();
