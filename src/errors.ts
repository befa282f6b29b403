/**
 * One error type for the whole of cpm. Every failure a user can cause carries a stable code,
 * a human message, an optional hint and the context that locates it (file:line, digest, path).
 * The CLI maps codes to exit codes (docs/cli.md); stack traces are shown only with --debug.
 */
export type ErrorCode =
  | 'E_USAGE'
  | 'E_CONFIG'
  | 'E_TREE'
  | 'E_YAML'
  | 'E_TEMPLATE'
  | 'E_VERSION'
  | 'E_NOT_FOUND'
  | 'E_UNSAT'
  | 'E_REQUIRED_BY'
  | 'E_REGISTRY'
  | 'E_AUTH'
  | 'E_DIGEST'
  | 'E_NETWORK'
  | 'E_REPO'
  | 'E_UNSAFE_ENTRY'
  | 'E_FILE_CONFLICT'
  | 'E_LOCKED'
  | 'E_DB'
  | 'E_FINALIZER'
  | 'E_IMAGE'
  | 'E_TOOL_MISSING'
  | 'E_INTERRUPTED'
  | 'E_IO'
  | 'E_NO_SPACE'
  | 'E_READ_ONLY'
  | 'E_PERMISSION'
  | 'E_PATH'
  | 'E_LIMIT'
  | 'E_BUILD';

/** Where an error happened. All fields optional; the message already reads well without them. */
export interface ErrorContext {
  file?: string;
  line?: number;
  column?: number;
  digest?: string;
  path?: string;
  package?: string;
  [key: string]: unknown;
}

export class CpmError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly context: ErrorContext;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { hint?: string; context?: ErrorContext; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CpmError';
    this.code = code;
    this.hint = opts.hint;
    this.context = opts.context ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, context: this.context };
  }
}

/** Exit codes, documented in docs/cli.md. 1 is reserved for "the check said no" (validate, verify). */
export const EXIT_CODES: Record<ErrorCode, number> = {
  E_USAGE: 2,
  E_CONFIG: 3,
  E_TREE: 4,
  E_YAML: 4,
  E_TEMPLATE: 4,
  E_VERSION: 4,
  E_NOT_FOUND: 5,
  E_UNSAT: 6,
  E_REQUIRED_BY: 6,
  E_REGISTRY: 7,
  E_AUTH: 7,
  E_DIGEST: 7,
  E_NETWORK: 7,
  E_REPO: 7,
  E_UNSAFE_ENTRY: 8,
  E_FILE_CONFLICT: 8,
  E_LOCKED: 9,
  E_DB: 10,
  E_FINALIZER: 11,
  E_IMAGE: 12,
  E_TOOL_MISSING: 12,
  E_INTERRUPTED: 130,
  E_IO: 13,
  E_NO_SPACE: 14,
  E_READ_ONLY: 15,
  E_PERMISSION: 16,
  E_PATH: 17,
  E_LIMIT: 18,
  E_BUILD: 19,
};

/** The exit code of an error: 143 for an interrupt by SIGTERM (128 + 15), as shells report it. */
export function exitCodeOf(e: CpmError): number {
  if (e.code === 'E_INTERRUPTED' && e.context.signal === 'SIGTERM') return 143;
  return EXIT_CODES[e.code];
}

/** "file:line: message" — the prefix every located error uses. */
export function locate(ctx: { file?: string; line?: number }, message: string): string {
  if (!ctx.file) return message;
  return ctx.line ? `${ctx.file}:${ctx.line}: ${message}` : `${ctx.file}: ${message}`;
}
