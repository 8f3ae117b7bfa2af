/**
 * The Prometheus text exposition format (version 0.0.4), written out by hand: counters, gauges,
 * histograms and summaries with labels, enough for the relay's metrics without a dependency.
 * https://prometheus.io/docs/instrumenting/exposition_formats/
 */

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;

type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `{name="value",…}` (empty for no labels), values escaped as the format wants. */
export function renderLabels(labels: Labels, extra = ''): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new Error(`invalid label name "${name}"`);
    parts.push(`${name}="${value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`);
  }
  if (extra) parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** A sample value: integers as such, `+Inf`, `-Inf` and `NaN` spelled the Prometheus way. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

abstract class Metric<Sample> {
  readonly name: string;
  readonly help: string;
  abstract readonly type: MetricType;
  /** Samples by their rendered label set. */
  protected readonly samples = new Map<string, Sample>();

  constructor(name: string, help: string) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
    this.name = name;
    this.help = help;
  }

  /** Forgets every sample (a gauge whose source could not be read is absent, not stale). */
  clear(): void {
    this.samples.clear();
  }

  render(): string {
    const help = this.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
    let text = `# HELP ${this.name} ${help}\n# TYPE ${this.name} ${this.type}\n`;
    for (const [labels, sample] of this.samples) text += this.renderSample(labels, sample);
    return text;
  }

  protected abstract renderSample(labels: string, sample: Sample): string;
}

/** A value that only goes up; its name ends in `_total`. */
export class Counter extends Metric<{ value: number }> {
  readonly type = 'counter';

  /** The counter of one label set, to keep on a hot path (no label rendering per increment). */
  child(labels: Labels = {}): { inc(by?: number): void } {
    const key = renderLabels(labels);
    let sample = this.samples.get(key);
    if (!sample) {
      sample = { value: 0 };
      this.samples.set(key, sample);
    }
    const s = sample;
    return {
      inc(by = 1) {
        s.value += by;
      },
    };
  }

  inc(labels: Labels = {}, by = 1): void {
    this.child(labels).inc(by);
  }

  protected renderSample(labels: string, sample: { value: number }): string {
    return `${this.name}${labels} ${formatValue(sample.value)}\n`;
  }
}

/** A value that goes up and down, set when it is known. */
export class Gauge extends Metric<{ value: number }> {
  readonly type = 'gauge';

  set(value: number, labels: Labels = {}): void {
    this.samples.set(renderLabels(labels), { value });
  }

  protected renderSample(labels: string, sample: { value: number }): string {
    return `${this.name}${labels} ${formatValue(sample.value)}\n`;
  }
}

interface HistogramSample {
  readonly labels: Labels;
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Observations counted in buckets by upper bound, with their sum and count. */
export class Histogram extends Metric<HistogramSample> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(name: string, help: string, buckets: readonly number[]) {
    super(name, help);
    if (buckets.length === 0 || buckets.some((b, i) => i > 0 && b <= buckets[i - 1]!)) {
      throw new Error(`histogram ${name}: buckets must be increasing`);
    }
    this.buckets = buckets;
  }

  /** The histogram of one label set, to keep on a hot path (no label rendering per observation). */
  child(labels: Labels = {}): { observe(value: number, count?: number): void } {
    const key = renderLabels(labels);
    let sample = this.samples.get(key);
    if (!sample) {
      sample = { labels, counts: new Array(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
      this.samples.set(key, sample);
    }
    const s = sample;
    const buckets = this.buckets;
    return {
      // `count` observations of `value` at once: the messages of one publish call share its duration.
      observe(value, count = 1) {
        let i = 0;
        while (i < buckets.length && value > buckets[i]!) i++;
        s.counts[i]! += count;
        s.sum += value * count;
        s.count += count;
      },
    };
  }

  observe(value: number, labels: Labels = {}, count = 1): void {
    this.child(labels).observe(value, count);
  }

  protected renderSample(labels: string, sample: HistogramSample): string {
    let text = '';
    let cumulative = 0;
    this.buckets.forEach((bound, i) => {
      cumulative += sample.counts[i]!;
      text += `${this.name}_bucket${renderLabels(sample.labels, `le="${formatValue(bound)}"`)} ${cumulative}\n`;
    });
    text += `${this.name}_bucket${renderLabels(sample.labels, 'le="+Inf"')} ${sample.count}\n`;
    text += `${this.name}_sum${labels} ${formatValue(sample.sum)}\n`;
    text += `${this.name}_count${labels} ${sample.count}\n`;
    return text;
  }
}

interface SummarySample {
  readonly labels: Labels;
  readonly quantiles: ReadonlyMap<number, number>;
  readonly sum: number;
  readonly count: number;
}

/** Quantiles computed elsewhere (a perf_hooks histogram), with a running sum and count. */
export class Summary extends Metric<SummarySample> {
  readonly type = 'summary';

  set(quantiles: ReadonlyMap<number, number>, sum: number, count: number, labels: Labels = {}): void {
    this.samples.set(renderLabels(labels), { labels, quantiles, sum, count });
  }

  protected renderSample(labels: string, sample: SummarySample): string {
    let text = '';
    for (const [q, value] of sample.quantiles) {
      text += `${this.name}${renderLabels(sample.labels, `quantile="${q}"`)} ${formatValue(value)}\n`;
    }
    text += `${this.name}_sum${labels} ${formatValue(sample.sum)}\n`;
    text += `${this.name}_count${labels} ${sample.count}\n`;
    return text;
  }
}

/** Metrics rendered together, in the order they were registered. */
export class Registry {
  readonly #metrics: { render(): string; readonly name: string }[] = [];

  register<M extends { render(): string; readonly name: string }>(metric: M): M {
    if (this.#metrics.some((m) => m.name === metric.name)) {
      throw new Error(`metric ${metric.name} is registered twice`);
    }
    this.#metrics.push(metric);
    return metric;
  }

  render(): string {
    return this.#metrics.map((m) => m.render()).join('');
  }
}
