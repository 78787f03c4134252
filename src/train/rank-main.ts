// One rank of a run that penny-train's launcher (launch.ts) started: takes its train() options over IPC, and sends
// back rank 0's epoch reports, the run's result or its own error. Stops as the CLI does: the first SIGINT / SIGTERM
// (or the launcher's stop, or the launcher gone) finishes the step and stops every rank; a second quits at once.
import { InterruptedError } from '../errors.js';
import type { LauncherMessage, RankMessage } from './launch.js';
import { train } from './train.js';

const controller = new AbortController();
const stop = (reason: string) => {
  if (controller.signal.aborted) process.exit(reason === 'SIGTERM' ? 143 : 130);
  controller.abort(reason);
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('disconnect', () => controller.signal.aborted || controller.abort('SIGTERM'));

const send = (m: RankMessage) => new Promise<void>((done) => (process.connected ? process.send!(m, () => done()) : done()));

process.on('message', async (m: LauncherMessage) => {
  if ('stop' in m) {
    if (!controller.signal.aborted) controller.abort(m.stop);
    return;
  }
  const { modelKey, options } = m.train;
  const rank = options.distributed?.rank ?? 0;
  try {
    const result = await train(modelKey, {
      ...options, signal: controller.signal, onEpoch: rank === 0 ? (epoch) => send({ epoch }) : undefined,
    });
    await send({ result });
    process.exitCode = 0;
  } catch (e) {
    const err = e as Error & { exitCode?: number };
    const checkpoint = e instanceof InterruptedError ? e.checkpoint : undefined;
    // the launcher reports the error itself; a fault's stack is worth having from the rank it happened on
    if (!err.exitCode) console.error(err.stack ?? err.message);
    await send({ error: { name: err.name, message: err.message, exitCode: err.exitCode, checkpoint } });
    process.exitCode = err.exitCode ?? 1;
  }
  process.disconnect?.();
});
