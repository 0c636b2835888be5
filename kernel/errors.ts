/**
 * Errors a person reads. The kernel turns a `UserFacingError` into a Jupyter `error` whose
 * traceback is just the sentence (no stack): the message must say what was wrong and what to do.
 */
export class UserFacingError extends Error {
  readonly ename: string;
  constructor(message: string, ename = "TunelabError") {
    super(message);
    this.name = ename;
    this.ename = ename;
  }
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
