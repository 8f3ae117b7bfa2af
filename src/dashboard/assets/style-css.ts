/**
 * The dashboard's stylesheet.
 * Embedded as a string so that it ships in dist/ with the compiled code (tsc copies no assets).
 */
export const DASHBOARD_CSS = `:root {
  --bg: #f6f7f9;
  --card: #ffffff;
  --text: #1f2937;
  --muted: #6b7280;
  --line: #e5e7eb;
  --accent: #2563eb;
  --bad: #b91c1c;
  --bad-bg: #fef2f2;
  --warn: #92400e;
  --warn-bg: #fffbeb;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 14px;
  color: var(--text);
  background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
h1 { font-size: 18px; margin: 0; letter-spacing: 0.02em; }
h2 { font-size: 15px; margin: 0 0 10px; }
small { font-weight: normal; color: var(--muted); }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.small { font-size: 12px; }
.muted { color: var(--muted); }
.bad { color: var(--bad); }

.top {
  display: flex; align-items: center; gap: 10px; flex-wrap: wrap;
  padding: 12px 24px; background: #111827; color: #f9fafb;
}
.top .muted { color: #9ca3af; margin-left: auto; }
.badge {
  display: inline-block; padding: 2px 8px; border-radius: 999px; font-size: 12px;
  background: #e5e7eb; color: #374151;
}
.badge:empty { display: none; }
.badge.warn { background: #fde68a; color: #78350f; }
.badge.error { background: #fecaca; color: #7f1d1d; }
.problem { margin: 12px 24px 0; padding: 10px 14px; border-radius: 6px; background: var(--bad-bg); color: var(--bad); border: 1px solid #fecaca; }

main { padding: 16px 24px 40px; max-width: 1400px; margin: 0 auto; display: grid; gap: 16px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }

.tiles, .charts { background: none; border: 0; padding: 0; display: grid; gap: 12px; }
.tiles { grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; display: flex; flex-direction: column; gap: 4px; }
.tile .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
.tile .value { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile .note { color: var(--muted); font-size: 11.5px; }
.tile.alarm { border-color: #fca5a5; background: var(--bad-bg); }
.tile.alarm .value { color: var(--bad); }

.charts { grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
.chart { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px 6px; min-width: 0; }
.chart figcaption { font-weight: 600; display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; }
.chart svg { display: block; width: 100%; height: 150px; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .axis { fill: var(--muted); font-size: 11px; }
.chart .empty { fill: var(--muted); font-size: 13px; }
.chart .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
.legend { display: inline-flex; gap: 12px; font-weight: normal; font-size: 12px; color: var(--muted); }
.legend .key::before { content: ""; display: inline-block; width: 14px; height: 3px; margin: 0 5px 3px 0; vertical-align: middle; background: var(--key); border-radius: 2px; }

.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
tbody tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.stale td { color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 8px; }

.partition-map { display: flex; flex-wrap: wrap; gap: 3px; margin: 0 0 12px; }
.partition-map .cell { width: 12px; height: 12px; border-radius: 2px; }
.partition-map .cell.free { background: #fff; outline: 1px dashed #9ca3af; outline-offset: -1px; }

.toolbar { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: center; margin-bottom: 8px; }
.toolbar label { display: inline-flex; gap: 6px; align-items: center; color: var(--muted); font-size: 12px; }
.toolbar .spacer { flex: 1; }
input:not([type]) { font: inherit; padding: 5px 8px; border: 1px solid #d1d5db; border-radius: 6px; width: 190px; }
button {
  font: inherit; font-size: 13px; padding: 5px 12px; border-radius: 6px; cursor: pointer;
  border: 1px solid #d1d5db; background: #fff; color: var(--text);
}
button:hover:not(:disabled) { background: #f3f4f6; }
button:disabled { opacity: 0.5; cursor: default; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.primary:hover { background: #1d4ed8; }
button.danger { color: var(--bad); border-color: #fca5a5; }
button.danger:hover:not(:disabled) { background: var(--bad-bg); }

#dead td.check, #dead th.check { width: 28px; padding-right: 0; }
#dead td.actions { white-space: nowrap; text-align: right; }
#dead td.actions button + button { margin-left: 6px; }
#dead .type { font-weight: 600; }
#dead .error-cell { min-width: 280px; max-width: 460px; }
.error { color: var(--bad); overflow-wrap: anywhere; }
details summary { cursor: pointer; color: var(--accent); font-size: 12px; margin-top: 4px; }
ol.history { margin: 6px 0 0; padding-left: 18px; font-size: 12px; }
ol.history li { margin-bottom: 4px; }
ol.history time { color: var(--muted); margin-right: 8px; }
ol.history .relay { color: var(--muted); font-family: ui-monospace, Menlo, Consolas, monospace; }

dialog { border: 1px solid var(--line); border-radius: 10px; padding: 20px 22px; max-width: 480px; box-shadow: 0 20px 50px rgba(0, 0, 0, 0.25); }
dialog::backdrop { background: rgba(17, 24, 39, 0.45); }
dialog h3 { margin: 0 0 8px; font-size: 16px; }
dialog p { margin: 0 0 10px; line-height: 1.45; }
dialog .ids { margin: 0 0 16px; padding-left: 18px; }
dialog .ids li { margin-bottom: 4px; }
dialog .buttons { display: flex; justify-content: flex-end; gap: 8px; }

#toast {
  position: fixed; right: 24px; bottom: 24px; max-width: 420px; padding: 10px 14px; border-radius: 8px;
  background: #111827; color: #f9fafb; box-shadow: 0 8px 24px rgba(0, 0, 0, 0.2);
}
#toast.bad { background: var(--bad); }
[hidden] { display: none !important; }

@media (max-width: 700px) {
  main { padding: 12px; }
  .top { padding: 10px 12px; }
  .top .muted { margin-left: 0; width: 100%; }
}
.nowrap { white-space: nowrap; }
/* Narrow screens scroll the tables sideways rather than crush their columns. */
#destinations, #relays { min-width: 560px; }
#dead { min-width: 920px; }
`;
