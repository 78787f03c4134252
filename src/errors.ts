// Errors the user can fix (bad usage, config or data): the CLI prints them without a stack and exits 2.
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export class ConfigError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export class DataError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'DataError';
  }
}

/**
 * Thrown when training is stopped by an AbortSignal: exit 130 (SIGINT, Ctrl-C) or 143 (SIGTERM: docker stop, systemd,
 * timeout), the shell's 128 + signal number.
 */
export class InterruptedError extends Error {
  readonly exitCode: number;
  constructor(readonly checkpoint?: string, reason?: unknown) {
    super(checkpoint ? `interrupted; state saved to ${checkpoint}` : 'interrupted');
    this.name = 'InterruptedError';
    this.exitCode = reason === 'SIGTERM' ? 143 : 130;
  }
}

/** Throws the InterruptedError of an aborted run (`saved`: the checkpoint that holds its state), else nothing. */
export function throwIfAborted(signal: AbortSignal | undefined, saved?: string): void {
  if (signal?.aborted) throw new InterruptedError(saved, signal.reason);
}

/** Lists up to 20 problems and counts the rest. */
export function listProblems(title: string, problems: string[]): string {
  const shown = problems.slice(0, 20).map((p) => `  - ${p}`).join('\n');
  const more = problems.length > 20 ? `\n  … and ${problems.length - 20} more` : '';
  return `${title} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${shown}${more}`;
}
