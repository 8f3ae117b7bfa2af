/**
 * The dashboard's browser script: plain JavaScript, no build step, no dependencies.
 * Embedded as a string so that it ships in dist/ with the compiled code (tsc copies no assets).
 */
export const DASHBOARD_JS = String.raw`'use strict';
// The outbox dashboard page: samples the JSON API every few seconds (chart.js keeps the samples
// and draws the charts) and renders everything with DOM nodes (textContent only: event types, keys and
// errors are data, never markup).
(() => {
  const POLL_MS = 3000;
  const TOKEN_KEY = 'outbox-dashboard-token';
  const COLORS = ['#2563eb', '#d97706', '#059669', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#dc2626'];

  const { samples, addSample, rates, drawChart, formatAge, clock } = window.outboxSeries;
  const $ = (id) => document.getElementById(id);
  const numberFormat = new Intl.NumberFormat('en-US');
  const rateFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

  const state = {
    token: takeToken(),
    actions: false,
    deadSignature: '',
    selected: new Set(),
    shownIds: [],
    shown: new Map(),
    filter: { destination: '', type: '' },
    lastGood: null,
    timer: null,
  };

  /** The token arrives in the URL fragment (never sent to any server); keep it for this tab only. */
  function takeToken() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name === 'className') node.className = value;
      // Through the CSSOM: the page's CSP forbids inline style attributes.
      else if (name === 'style') for (const [k, v] of Object.entries(value)) node.style.setProperty(k, v);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  function formatBytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }

  function ago(iso) {
    return formatAge(Date.now() - Date.parse(iso)) + ' ago';
  }

  /** 0-3, 5, 9-12 */
  function ranges(numbers) {
    const parts = [];
    for (let i = 0; i < numbers.length; i++) {
      let j = i;
      while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) j++;
      parts.push(j > i ? numbers[i] + '–' + numbers[j] : String(numbers[i]));
      i = j;
    }
    return parts.join(', ');
  }

  async function api(path, init) {
    const response = await fetch(path, Object.assign({ cache: 'no-store' }, init));
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error || 'HTTP ' + response.status);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function deadQuery() {
    const params = new URLSearchParams();
    if (state.filter.destination) params.set('destination', state.filter.destination);
    if (state.filter.type) params.set('type', state.filter.type);
    const text = params.toString();
    return 'api/dead' + (text ? '?' + text : '');
  }

  // ---- charts ---------------------------------------------------------------------------------

  function legend(id, series) {
    $(id).replaceChildren(
      ...series.map((s) => el('span', { className: 'key', style: { '--key': s.color } }, [s.name])),
    );
  }

  function drawCharts() {
    const rateRows = rates();
    const publishKnown = samples.some((s) => s.publishedTotal !== null);
    const flow = publishKnown
      ? [
          { name: 'published/s', color: '#059669', values: rateRows.map((r) => r.published) },
          { name: 'added/s', color: '#2563eb', values: rateRows.map((r) => r.added), dashed: true },
        ]
      : [{ name: 'backlog change/s', color: '#d97706', values: rateRows.map((r) => r.backlog) }];
    legend('legend-flow', flow);
    drawChart($('chart-flow'), rateRows.map((r) => r.at), flow, (v) => rateFormat.format(v));
    const backlog = [
      { name: 'pending', color: '#2563eb', values: samples.map((s) => s.pending) },
      { name: 'dead', color: '#dc2626', values: samples.map((s) => s.dead) },
    ];
    legend('legend-backlog', backlog);
    drawChart($('chart-backlog'), samples.map((s) => s.at), backlog, (v) => rateFormat.format(v));
    const lag = [{ name: 'oldest pending age', color: '#7c3aed', values: samples.map((s) => s.lagMs) }];
    legend('legend-lag', lag);
    drawChart($('chart-lag'), samples.map((s) => s.at), lag, formatAge);
  }

  // ---- summary, destinations, leases ------------------------------------------------------------

  function setNumber(id, value) {
    const node = $(id);
    node.textContent = numberFormat.format(value);
    node.dataset.value = String(value);
  }

  function renderSummary(summary) {
    state.actions = summary.actions;
    $('dialect').textContent = summary.dialect;
    const mode = $('mode');
    if (!summary.actions) {
      mode.textContent = 'read-only';
      mode.className = 'badge';
    } else if (state.token) {
      mode.textContent = 'actions allowed';
      mode.className = 'badge warn';
    } else {
      mode.textContent = 'actions allowed — no token: open the URL the command printed';
      mode.className = 'badge error';
    }
    setNumber('total-pending', summary.pending);
    setNumber('total-retrying', summary.retrying);
    setNumber('total-dead', summary.dead);
    $('total-dead').closest('.tile').classList.toggle('alarm', summary.dead > 0);
    $('total-lag').textContent = formatAge(summary.oldestPendingAgeMs);
    const last = rates().pop();
    $('total-rate').textContent = last && last.published !== null ? rateFormat.format(last.published) : '–';
    $('rate-source').textContent =
      summary.publishedSource === null
        ? 'n/a: needs retainPublished or the relay'
        : 'from ' + summary.publishedSource;
    $('rate-source').title =
      summary.publishedSource === null
        ? 'Published rows are deleted and no relay serves this page, so nothing counts them: turn on retainPublished, or open the dashboard a relay serves.'
        : '';
    const rows = summary.destinations.map((d) =>
      el('tr', { 'data-destination': d.destination }, [
        el('td', { text: d.destination, className: 'mono' }),
        el('td', { text: numberFormat.format(d.pending), className: 'num', 'data-field': 'pending' }),
        el('td', { text: numberFormat.format(d.retrying), className: 'num', 'data-field': 'retrying' }),
        el('td', {
          text: numberFormat.format(d.dead),
          className: d.dead > 0 ? 'num bad' : 'num',
          'data-field': 'dead',
        }),
        el('td', { text: numberFormat.format(d.published), className: 'num', 'data-field': 'published' }),
        el('td', { text: formatAge(d.oldestPendingAgeMs), className: 'num', 'data-field': 'lag' }),
      ]),
    );
    if (rows.length === 0) rows.push(el('tr', {}, [el('td', { colspan: 6, className: 'muted', text: 'no events' })]));
    $('destinations').tBodies[0].replaceChildren(...rows);
  }

  function renderLeases(view) {
    const live = view.relays.filter((r) => !r.expired);
    const held = live.reduce((n, r) => n + r.partitions.length, 0);
    $('leases-summary').textContent =
      view.partitions + ' partitions: ' + held + ' held by ' + live.length + ' live relay' +
      (live.length === 1 ? '' : 's') + ', ' + view.free.length + ' free' +
      (live.length === 0 ? ' — no relay is running' : '');
    const color = new Map(view.relays.map((r, i) => [r.owner, r.expired ? '#9ca3af' : COLORS[i % COLORS.length]]));
    const ownerOf = new Map();
    for (const r of view.relays) if (!r.expired) for (const p of r.partitions) ownerOf.set(p, r.owner);
    const cells = [];
    for (let p = 0; p < view.partitions; p++) {
      const owner = ownerOf.get(p);
      cells.push(
        el('span', {
          className: owner ? 'cell' : 'cell free',
          style: owner ? { background: color.get(owner) } : undefined,
          title: 'partition ' + p + ': ' + (owner || 'free'),
        }),
      );
    }
    $('partition-map').replaceChildren(...cells);
    const now = Date.now();
    const rows = view.relays.map((r) =>
      el('tr', { 'data-owner': r.owner, className: r.expired ? 'stale' : '' }, [
        el('td', {}, [el('span', { className: 'swatch', style: { background: color.get(r.owner) } }), el('span', { className: 'mono', text: r.owner })]),
        el('td', { className: 'num', text: r.partitions.length, 'data-field': 'count' }),
        el('td', { className: 'mono', text: ranges(r.partitions) }),
        el('td', {
          text: r.expired
            ? 'expired ' + formatAge(now - Date.parse(r.expiresAt)) + ' ago: stopped heartbeating'
            : 'renewed, expires in ' + formatAge(Math.max(0, Date.parse(r.expiresAt) - now)),
          className: r.expired ? 'bad' : '',
        }),
      ]),
    );
    if (rows.length === 0) rows.push(el('tr', {}, [el('td', { colspan: 4, className: 'muted', text: 'no relay holds a lease' })]));
    $('relays').tBodies[0].replaceChildren(...rows);
  }

  // ---- dead letters -----------------------------------------------------------------------------

  function historyList(history) {
    return el(
      'ol',
      { className: 'history' },
      history.map((h) =>
        el('li', {}, [
          el('time', { datetime: h.at, text: h.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z') }),
          el('span', { className: 'relay', text: h.relay }),
          el('div', { className: 'error', text: h.error }),
        ]),
      ),
    );
  }

  /** Text that may wrap after . / : - (destinations, keys), and nowhere else. */
  function breakable(text) {
    return text.split(/(?<=[./:-])/).flatMap((part) => [part, document.createElement('wbr')]);
  }

  function deadRow(d) {
    const check = el('input', { type: 'checkbox', 'aria-label': 'select ' + d.id, 'data-id': d.id });
    check.checked = state.selected.has(d.id);
    check.addEventListener('change', () => {
      if (check.checked) state.selected.add(d.id);
      else state.selected.delete(d.id);
      updateBulk();
    });
    const errorCell = el('td', { className: 'error-cell' }, [
      el('div', { className: 'error', text: d.lastError || '–' }),
      d.history.length
        ? el('details', {}, [el('summary', { text: 'attempt history (' + d.history.length + ')' }), historyList(d.history)])
        : null,
    ]);
    const actions = el('td', { className: 'actions' });
    if (state.actions) {
      const retry = el('button', { type: 'button', 'data-action': 'retry', text: 'Retry' });
      const discard = el('button', { type: 'button', 'data-action': 'discard', className: 'danger', text: 'Discard' });
      retry.addEventListener('click', () => act('retry', [d.id]));
      discard.addEventListener('click', () => act('discard', [d.id]));
      actions.append(retry, discard);
    }
    return el('tr', { 'data-id': d.id }, [
      el('td', { className: 'check' }, state.actions ? [check] : []),
      el('td', {}, [
        el('div', { className: 'type', text: d.type }),
        el('div', { className: 'mono small nowrap', text: d.id }),
        el('div', { className: 'muted small' }, [
          'created ',
          el('time', { datetime: d.createdAt, title: d.createdAt, text: clock(Date.parse(d.createdAt)) }),
          ' · ',
          el('span', { 'data-ago': d.createdAt, text: ago(d.createdAt) }),
        ]),
        el('div', { className: 'muted small', text: 'payload ' + formatBytes(d.payloadBytes) + ' (redacted)' }),
        d.headerNames.length ? el('div', { className: 'muted small', text: 'headers: ' + d.headerNames.join(', ') }) : null,
      ]),
      el('td', { className: 'destination' }, [
        el('div', { className: 'mono' }, breakable(d.destination)),
        el('div', { className: 'muted small' }, breakable('key ' + d.key + ' · partition ' + d.partition)),
        d.parked ? el('span', { className: 'badge error', text: 'parked: holds its key back' }) : null,
      ]),
      el('td', { className: 'num', text: d.attempts }),
      errorCell,
      actions,
    ]);
  }

  function renderDead(page, total) {
    const signature = JSON.stringify([state.actions, state.token !== null, page.items.map((d) => [d.id, d.attempts, d.parked])]);
    const filtered = state.filter.destination || state.filter.type;
    $('dead-summary').textContent =
      total === 0
        ? 'No dead letters.'
        : page.items.length + ' shown of ' + total + ' dead letter' + (total === 1 ? '' : 's') +
          (filtered ? ' (filtered' + (page.partial ? '; globs searched the oldest 5,000 only' : '') + ')' : '') +
          '. Payloads are redacted; errors and attempt history are shown.';
    $('bulk').hidden = !state.actions;
    $('select-all').hidden = !state.actions;
    if (signature === state.deadSignature) return;
    state.deadSignature = signature;
    state.shownIds = page.items.map((d) => d.id);
    state.shown = new Map(page.items.map((d) => [d.id, d]));
    for (const id of [...state.selected]) if (!state.shownIds.includes(id)) state.selected.delete(id);
    const open = new Set([...document.querySelectorAll('#dead tr[data-id] details[open]')].map((n) => n.closest('tr').dataset.id));
    const rows = page.items.map(deadRow);
    for (const row of rows) if (open.has(row.dataset.id)) row.querySelector('details')?.setAttribute('open', '');
    $('dead').tBodies[0].replaceChildren(...rows);
    updateBulk();
  }

  function updateBulk() {
    const n = state.selected.size;
    $('retry-selected').disabled = n === 0;
    $('discard-selected').disabled = n === 0;
    $('retry-selected').textContent = 'Retry selected' + (n ? ' (' + n + ')' : '');
    $('discard-selected').textContent = 'Discard selected' + (n ? ' (' + n + ')' : '');
    const all = $('select-all');
    all.checked = n > 0 && n === state.shownIds.length;
    all.indeterminate = n > 0 && n < state.shownIds.length;
  }

  // ---- actions ------------------------------------------------------------------------------------

  function confirmAction(action, ids) {
    const dialog = $('confirm');
    const n = ids.length === 1 ? '1 dead letter' : ids.length + ' dead letters';
    $('confirm-title').textContent = (action === 'retry' ? 'Retry ' : 'Discard ') + n + '?';
    $('confirm-text').textContent =
      action === 'retry'
        ? 'Back to pending with the same id (consumers’ dedupe still works), attempts reset to 0; a relay publishes it at once.'
        : 'Deleted from the outbox for good: it will never be published.';
    const items = ids.slice(0, 5).map((id) => {
      const d = state.shown.get(id);
      return el('li', {}, [
        el('div', { className: 'mono', text: id }),
        d ? el('div', { className: 'muted small', text: d.type + ' → ' + d.destination }) : null,
      ]);
    });
    if (ids.length > 5) items.push(el('li', { className: 'muted', text: 'and ' + (ids.length - 5) + ' more' }));
    $('confirm-ids').replaceChildren(...items);
    const ok = $('confirm-ok');
    ok.textContent = action === 'retry' ? 'Retry' : 'Discard';
    ok.className = action === 'retry' ? 'primary' : 'danger';
    return new Promise((resolve) => {
      const done = (answer) => {
        ok.onclick = null;
        $('confirm-cancel').onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      ok.onclick = () => done(true);
      $('confirm-cancel').onclick = () => done(false);
      dialog.onclose = () => done(false);
      dialog.showModal();
      $('confirm-cancel').focus();
    });
  }

  function toast(text, bad) {
    const node = $('toast');
    node.textContent = text;
    node.className = bad ? 'bad' : '';
    node.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => {
      node.hidden = true;
    }, 6000);
  }

  async function act(action, ids) {
    if (!state.token) {
      toast('No token: open the URL that outbox dashboard --allow-actions printed.', true);
      return;
    }
    if (!(await confirmAction(action, ids))) return;
    try {
      const result = await api('api/dead/' + action, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + state.token },
        body: JSON.stringify({ ids }),
      });
      const done = action === 'retry' ? result.retried : result.discarded;
      const missed = result.requested - done;
      toast(
        (action === 'retry' ? 'Retried ' + done + ': back to pending, same id.' : 'Discarded ' + done + '.') +
          (missed ? ' ' + missed + ' were no longer dead letters.' : ''),
        false,
      );
      for (const id of ids) state.selected.delete(id);
      state.deadSignature = '';
    } catch (error) {
      if (error.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        state.token = null;
        toast('The token was refused: open the URL the command printed.', true);
      } else {
        toast('Failed: ' + error.message, true);
      }
    }
    refresh();
  }

  // ---- polling ------------------------------------------------------------------------------------

  async function refresh() {
    clearTimeout(state.timer);
    try {
      const [summary, leases, dead] = await Promise.all([api('api/summary'), api('api/leases'), api(deadQuery())]);
      addSample(summary);
      renderSummary(summary);
      renderLeases(leases);
      renderDead(dead, summary.dead);
      for (const node of document.querySelectorAll('[data-ago]')) node.textContent = ago(node.dataset.ago);
      drawCharts();
      state.lastGood = Date.now();
      $('problem').hidden = true;
      $('updated').textContent = 'updated ' + clock(state.lastGood) + ' · every ' + POLL_MS / 1000 + ' s';
      document.body.dataset.loaded = 'true';
    } catch (error) {
      $('problem').hidden = false;
      $('problem').textContent =
        'Cannot read the outbox: ' + error.message +
        (state.lastGood ? ' — showing data from ' + clock(state.lastGood) : '') + '. Retrying…';
    }
    state.timer = setTimeout(refresh, POLL_MS);
  }

  function applyFilter() {
    state.filter = { destination: $('filter-destination').value.trim(), type: $('filter-type').value.trim() };
    state.deadSignature = '';
    refresh();
  }

  $('filter-apply').addEventListener('click', applyFilter);
  for (const id of ['filter-destination', 'filter-type']) {
    $(id).addEventListener('keydown', (e) => {
      if (e.key === 'Enter') applyFilter();
    });
  }
  $('select-all').addEventListener('change', () => {
    const all = $('select-all').checked;
    state.selected = new Set(all ? state.shownIds : []);
    for (const box of document.querySelectorAll('#dead tbody input[type=checkbox]')) box.checked = all;
    updateBulk();
  });
  $('retry-selected').addEventListener('click', () => act('retry', [...state.selected]));
  $('discard-selected').addEventListener('click', () => act('discard', [...state.selected]));
  let resizeTimer;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawCharts, 150);
  });
  refresh();
})();
`;
