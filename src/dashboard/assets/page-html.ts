/**
 * The dashboard page: static markup; dashboard.js fills it in.
 * Embedded as a string so that it ships in dist/ with the compiled code (tsc copies no assets).
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>outbox dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="dashboard.css">
<script src="chart.js" defer></script>
<script src="dashboard.js" defer></script>
</head>
<body>
<header class="top">
  <h1>outbox</h1>
  <span id="dialect" class="badge"></span>
  <span id="mode" class="badge"></span>
  <span id="updated" class="muted">loading…</span>
</header>
<div id="problem" class="problem" role="alert" hidden></div>
<main>
  <section class="tiles" aria-label="totals">
    <div class="tile"><span class="label">Pending</span><span class="value" id="total-pending">–</span></div>
    <div class="tile"><span class="label">Retrying</span><span class="value" id="total-retrying">–</span></div>
    <div class="tile dead"><span class="label">Dead letters</span><span class="value" id="total-dead">–</span></div>
    <div class="tile"><span class="label">Lag <small>(oldest pending)</small></span><span class="value" id="total-lag">–</span></div>
    <div class="tile"><span class="label">Published / s</span><span class="value" id="total-rate">–</span><span class="note" id="rate-source"></span></div>
  </section>

  <section class="charts" aria-label="over time">
    <figure class="chart"><figcaption>Flow <span class="legend" id="legend-flow"></span></figcaption><svg id="chart-flow" role="img" aria-label="events per second over time"></svg></figure>
    <figure class="chart"><figcaption>Backlog <span class="legend" id="legend-backlog"></span></figcaption><svg id="chart-backlog" role="img" aria-label="pending and dead events over time"></svg></figure>
    <figure class="chart"><figcaption>Lag <span class="legend" id="legend-lag"></span></figcaption><svg id="chart-lag" role="img" aria-label="oldest pending age over time"></svg></figure>
  </section>

  <section>
    <h2>Destinations</h2>
    <div class="scroll">
      <table id="destinations">
        <thead><tr><th>destination</th><th class="num">pending</th><th class="num">retrying</th><th class="num">dead</th><th class="num">published <small>(kept)</small></th><th class="num">lag</th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>

  <section>
    <h2>Relays and partitions</h2>
    <p id="leases-summary" class="muted"></p>
    <div id="partition-map" class="partition-map" aria-label="partitions by relay"></div>
    <div class="scroll">
      <table id="relays">
        <thead><tr><th>relay (lease owner)</th><th class="num">partitions</th><th>which</th><th>lease</th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>

  <section>
    <h2>Dead letters</h2>
    <div class="toolbar">
      <label>destination <input id="filter-destination" placeholder="glob, e.g. payments.*" autocomplete="off"></label>
      <label>type <input id="filter-type" placeholder="glob, e.g. order.*" autocomplete="off"></label>
      <button id="filter-apply" type="button">Filter</button>
      <span class="spacer"></span>
      <span id="bulk" hidden>
        <button id="retry-selected" type="button" disabled>Retry selected</button>
        <button id="discard-selected" type="button" class="danger" disabled>Discard selected</button>
      </span>
    </div>
    <p id="dead-summary" class="muted"></p>
    <div class="scroll">
      <table id="dead">
        <thead><tr><th class="check"><input type="checkbox" id="select-all" aria-label="select all shown"></th><th>event</th><th>destination / key</th><th class="num">attempts</th><th>last error</th><th class="actions"></th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
</main>

<dialog id="confirm" aria-labelledby="confirm-title">
  <h3 id="confirm-title"></h3>
  <p id="confirm-text"></p>
  <ul id="confirm-ids" class="ids"></ul>
  <div class="buttons">
    <button type="button" id="confirm-cancel">Cancel</button>
    <button type="button" id="confirm-ok"></button>
  </div>
</dialog>
<div id="toast" role="status" aria-live="polite" hidden></div>
</body>
</html>
`;
