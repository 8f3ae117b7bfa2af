/**
 * Failpoints: named places in the relay where a test can make the process sleep, fail or crash,
 * so races are forced instead of hoped for. Inert unless OUTBOX_FAILPOINTS is set, e.g.
 *   OUTBOX_FAILPOINTS='relay.after-publish=sleep(200),relay.after-settle=crash'
 * Actions: sleep(ms), error (throws), crash (SIGKILL of this process).
 */
import { OutboxError } from './errors.js';

/** Every failpoint name, in the order the relay passes them. */
export const FAILPOINTS = [
  'relay.after-claim',
  'relay.before-publish',
  'relay.after-publish',
  'relay.after-settle',
] as const;
export type FailpointName = (typeof FAILPOINTS)[number];

type Action = { kind: 'sleep'; ms: number } | { kind: 'error' } | { kind: 'crash' };

let actions: Map<string, Action> | undefined;

/** Parses a failpoint spec; throws INVALID_CONFIG on an unknown name or action. */
export function parseFailpoints(spec: string): Map<string, Action> {
  const parsed = new Map<string, Action>();
  for (const part of spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, action = ''] = part.split('=', 2).map((s) => s.trim()) as [string, string?];
    if (!(FAILPOINTS as readonly string[]).includes(name)) {
      throw new OutboxError(
        'INVALID_CONFIG',
        `OUTBOX_FAILPOINTS: unknown failpoint "${name}" (known: ${FAILPOINTS.join(', ')})`,
      );
    }
    const sleep = /^sleep\((\d+)\)$/.exec(action);
    if (sleep) parsed.set(name, { kind: 'sleep', ms: Number(sleep[1]) });
    else if (action === 'error' || action === 'crash') parsed.set(name, { kind: action });
    else throw new OutboxError('INVALID_CONFIG', `OUTBOX_FAILPOINTS: unknown action "${action}" for ${name}`);
  }
  return parsed;
}

/** Runs the action set for `name`, if any. Costs one Map lookup when OUTBOX_FAILPOINTS is unset. */
export async function failpoint(name: FailpointName): Promise<void> {
  actions ??= parseFailpoints(process.env.OUTBOX_FAILPOINTS ?? '');
  const action = actions.get(name);
  if (!action) return;
  if (action.kind === 'sleep') await new Promise((r) => setTimeout(r, action.ms));
  else if (action.kind === 'error') throw new Error(`failpoint ${name}`);
  else process.kill(process.pid, 'SIGKILL');
}
