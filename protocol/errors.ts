// Typed errors shared by every part of nodewarden. Callers and tests match on `code`, never on wording.

export type ErrorCode =
  | 'NW_ERR_CONFIG' // a config file or flag is invalid
  | 'NW_ERR_USAGE' // the command line is wrong
  | 'NW_ERR_HOST_ROOT' // --host-root does not exist or is not a directory
  | 'NW_ERR_TIMEOUT' // a blocking call did not answer in time
  | 'NW_ERR_EXEC' // a child process failed
  | 'NW_ERR_NO_DATA' // a check does not apply on this node
  | 'NW_ERR_PARSE' // data from outside could not be parsed
  | 'NW_ERR_RUNTIME' // a container runtime answered with an error
  | 'NW_ERR_PROTOCOL' // a wire message is invalid
  | 'NW_ERR_EXPORTER'; // an exporter (aggregator link, /metrics, Kubernetes) failed handling a finding

export class NodewardenError extends Error {
  readonly code: ErrorCode;
  readonly details: readonly string[];

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: readonly string[] }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NodewardenError';
    this.code = code;
    this.details = options?.details ?? [];
  }
}

export function isNodewardenError(err: unknown, code?: ErrorCode): err is NodewardenError {
  return err instanceof NodewardenError && (code === undefined || err.code === code);
}

/** The errno code of a Node system error (ENOENT, EACCES...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** What a caught value says: an Error's message, or anything else as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
