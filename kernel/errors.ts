/**
 * Errors a person reads. The kernel turns a `UserFacingError` into a Jupyter `error` whose
 * traceback is just the sentence (no stack): the message must say what was wrong and what to do.
 */
export class UserFacingError extends Error {
  readonly ename: string;
  /** Technical detail (the bridge's Python traceback): folded under the sentence, shown by `%tb`. */
  readonly detail?: string;
  constructor(message: string, ename = "TunelabError", detail?: string) {
    super(message);
    this.name = ename;
    this.ename = ename;
    if (detail) this.detail = detail;
  }
}

/** The last error a cell raised, for `%tb` and `tunelab.lastError`. */
export interface ErrorRecord {
  ename: string;
  message: string;
  detail?: string;
}

/** A magic line that does not match its declared schema (bad flag, bad value, unknown magic). */
export class UsageError extends UserFacingError {
  constructor(message: string) {
    super(message, "UsageError");
  }
}

/** The run was stopped by an interrupt; whatever was done so far has been kept. */
export class InterruptedError extends UserFacingError {
  constructor(message = "Interrupted.") {
    super(message, "KeyboardInterrupt");
  }
}
