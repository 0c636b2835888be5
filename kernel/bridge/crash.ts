/**
 * Why the bridge process ended, in words a notebook user can act on. A native fault is never
 * just "killed by SIGILL": the bridge's crash reporter (python-bridge/tunelab_bridge/crash_report.py)
 * prints one line naming the library whose instruction faulted, and Python's faulthandler prints
 * where Python was; this turns them into which part it was and what to do about it.
 */

const FATAL_LINE = /^TUNELAB_FATAL signal=(\w+)(?: library=(\S+) offset=(\S+)(?: symbol=(\S+))?)?/m;
// faulthandler: `Fatal Python error: Illegal instruction`, then `  File "...", line N in fn` frames.
const PYTHON_FRAME = /^\s+File "([^"]+)", line (\d+) in (\S+)/m;

const SIGNAL_WORDS: Partial<Record<string, string>> = {
  SIGILL: "an illegal instruction (SIGILL): native code built for instructions this CPU lacks",
  SIGSEGV: "a segmentation fault (SIGSEGV) in native code",
  SIGBUS: "a bus error (SIGBUS) in native code",
  SIGFPE: "a floating-point exception (SIGFPE) in native code",
};

interface Culprit {
  what: string;
  fix: string;
}

/** Which part of the bridge a library is, and how to rule it out. */
function culprit(library: string, symbol: string | undefined): Culprit {
  const where = `${library}${symbol ? ` (${symbol})` : ""}`;
  if (/openblas|libblas|blas-forwarder/i.test(library)) {
    return {
      what: `its BLAS, ${where}`,
      fix: "run `tunelab doctor --recheck` to check the BLAS libraries on this CPU again, or set TUNELAB_BLAS=reference to rule the BLAS out",
    };
  }
  if (/host-kernels/.test(library)) {
    return {
      what: `the host kernels of %tune's CPU step, ${where}`,
      fix: "set TUNELAB_HOST_KERNELS_PATH=portable to rule their SIMD paths out, and run `tunelab doctor` to see what this CPU passed",
    };
  }
  if (/libmlx/.test(library)) return { what: `MLX's CPU backend, ${where}`, fix: "run `tunelab doctor` to see what MLX and its BLAS run on here" };
  return { what: where, fix: "run `tunelab doctor` to check the bridge's native libraries on this CPU" };
}

/** A fatal signal's description from the bridge's stderr, or null when `signal` is not one. */
export function describeFatalSignal(signal: string, stderr: string): string | null {
  const line = FATAL_LINE.exec(stderr);
  const name = line?.[1] ?? signal;
  const words = SIGNAL_WORDS[name];
  if (!words) return null;
  if (line?.[2]) {
    const { what, fix } = culprit(line[2], line[4]);
    return `the bridge hit ${words}, in ${what}; ${fix}`;
  }
  const frame = PYTHON_FRAME.exec(stderr.slice(stderr.indexOf("Fatal Python error")));
  const at = frame ? ` while Python ran ${frame[3]} (${frame[1]}:${frame[2]})` : "";
  return `the bridge hit ${words}${at}; run \`tunelab doctor --recheck\` to check its native libraries on this CPU`;
}

/** How the bridge process ended, for the error of the calls it was serving. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null, stderr: string): string {
  // Under a wrapper (qemu-user) the wrapper may exit 128 + n instead of dying of the signal.
  const fatal = signal ?? (code !== null && code > 128 ? osSignalName(code - 128) : null) ?? (FATAL_LINE.test(stderr) ? "" : null);
  const described = fatal === null ? null : describeFatalSignal(fatal, stderr);
  if (described) return described;
  return signal ? `the bridge process was killed by ${signal}` : `the bridge process exited with code ${code}`;
}

function osSignalName(number: number): string | null {
  const names: Record<number, string> = { 4: "SIGILL", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV" };
  return names[number] ?? null;
}
