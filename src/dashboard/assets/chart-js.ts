/**
 * The dashboard's time series and SVG line chart: plain JavaScript, loaded before dashboard.js.
 * Embedded as a string so that it ships in dist/ with the compiled code (tsc copies no assets).
 */
export const CHART_JS = `'use strict';
// The dashboard's time series: the samples the page keeps in memory, the rates between them, and
// a line chart drawn as inline SVG. dashboard.js uses them through window.outboxSeries.
(() => {
  const MAX_SAMPLES = 1200; // an hour at one sample every 3 s
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const samples = [];

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatAge(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms < 1000) return Math.round(ms) + 'ms';
    if (ms < 120000) return (ms / 1000).toFixed(1) + 's';
    if (ms < 7200000) return Math.round(ms / 60000) + 'm';
    return (ms / 3600000).toFixed(1) + 'h';
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
  }

  function addSample(summary) {
    samples.push({
      at: Date.parse(summary.generatedAt),
      pending: summary.pending,
      dead: summary.dead,
      lagMs: summary.oldestPendingAgeMs,
      publishedTotal: summary.publishedTotal,
    });
    if (samples.length > MAX_SAMPLES) samples.shift();
  }

  /** Rates between consecutive samples; a counter that went backwards (purge, restart) counts 0. */
  function rates() {
    const out = [];
    for (let i = 0; i < samples.length; i++) {
      const a = samples[i - 1];
      const b = samples[i];
      const seconds = a ? (b.at - a.at) / 1000 : 0;
      if (seconds <= 0) {
        out.push({ at: b.at, published: null, added: null, backlog: null });
        continue;
      }
      const backlog = b.pending + b.dead - (a.pending + a.dead);
      const known = a.publishedTotal !== null && b.publishedTotal !== null;
      const published = known ? Math.max(0, b.publishedTotal - a.publishedTotal) / seconds : null;
      out.push({
        at: b.at,
        published,
        added: known ? Math.max(0, published + backlog / seconds) : null,
        backlog: backlog / seconds,
      });
    }
    return out;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  /** A line chart in an inline SVG sized to its box; every series shares the time axis of times. */
  function drawChart(node, times, series, format) {
    const width = Math.max(240, Math.round(node.getBoundingClientRect().width));
    const height = 150;
    const pad = { left: 52, right: 10, top: 10, bottom: 22 };
    node.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    node.replaceChildren();
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    if (times.length < 2) {
      node.append(
        svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'empty' }, 'collecting samples…'),
      );
      return;
    }
    const values = series.flatMap((s) => s.values.filter((v) => v !== null));
    const low = Math.min(0, ...values);
    const high = Math.max(0, ...values);
    const bottom = low < 0 ? -niceMax(-low) : 0;
    const top = high > 0 || bottom === 0 ? niceMax(high) : 0;
    const t0 = times[0];
    const t1 = times[times.length - 1];
    const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * plotW;
    const y = (v) => pad.top + ((top - v) / (top - bottom)) * plotH;
    const candidates = bottom < 0 && top > 0 ? [0, bottom, top] : [bottom, (bottom + top) / 2, top];
    const ticks = candidates.filter((t, i) => candidates.slice(0, i).every((u) => Math.abs(y(t) - y(u)) >= 14));
    for (const tick of ticks) {
      node.append(svg('line', { x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick), class: 'grid' }));
      node.append(svg('text', { x: pad.left - 6, y: y(tick) + 4, 'text-anchor': 'end', class: 'axis' }, format(tick)));
    }
    node.append(svg('text', { x: pad.left, y: height - 5, class: 'axis' }, clock(t0)));
    node.append(svg('text', { x: width - pad.right, y: height - 5, 'text-anchor': 'end', class: 'axis' }, clock(t1)));
    series.forEach((s) => {
      let d = '';
      let pen = 'M';
      s.values.forEach((v, i) => {
        if (v === null) {
          pen = 'M';
          return;
        }
        d += pen + x(times[i]).toFixed(1) + ',' + y(v).toFixed(1) + ' ';
        pen = 'L';
      });
      if (d) node.append(svg('path', { d, class: 'line', stroke: s.color, 'stroke-dasharray': s.dashed ? '5 4' : 'none' }));
    });
  }

  window.outboxSeries = { samples, addSample, rates, drawChart, formatAge, clock };
})();
`;
