/**
 * The ANE worker: a child process that hosts the native addon, so that a crash inside a private
 * framework or a leaking compiler takes down this process, never the kernel. It speaks the shared
 * envelope (kernel/rpc/envelope.ts) over Node's IPC channel; one job runs at a time, and cheap
 * methods (ping, status, cancel) are answered at once because the addon works off this thread.
 *
 *   ping {}                      -> {pong, time}
 *   status {}                    -> {pid, platform, blas, backends: {ane|cpu: {available, reason?, compiles}}, job}
 *   bench {backend, configs: [{channels, spatial, depth}], warmup, iters, seed, firstIndex?}
 *                                   events `row {row, index, total}` -> {rows, peak: {tflops, how}, blas, compiles}
 *   train {checkpoint, steps, accum, lr, backend, compileBudget, resume}
 *                                   events `progress {step, steps, loss, stale, ...}` -> {status: completed|budget|interrupted|compile_failed, step, ...}
 *   sgemm {n, warmup, iters}     -> {n, ms: [...]}
 *   cancel {id}, shutdown {}, crash {} (aborts the process; for tests of the kernel's handling)
 *
 * Error codes: bad_request, busy, cancelled, backend_failed. A benchmark config that fails (compile,
 * evaluation, or output unlike the float64 reference) is a `row` with status "failed", not an error.
 */
import { PROTOCOL_VERSION, type ErrorBody, type Request } from "../rpc/envelope.js";
import { loadAddon, type BackendName, type NativeAddon } from "./addon.js";
import { CancelledError, runBenchJob, type BenchJobParams, type JobContext } from "./bench-job.js";
import { runTrainJob, type TrainJobParams } from "./train-job.js";

const cancelled = new Set<string>();
let busy: string | null = null;
let busyStop: Int32Array | null = null;

function reply(message: Record<string, unknown>): void {
  process.send?.({ v: PROTOCOL_VERSION, ...message });
}

function fail(id: string, error: ErrorBody): void {
  reply({ id, type: "error", error });
}

function addon(): NativeAddon {
  return loadAddon(process.env.TUNELAB_NATIVE_ADDON || undefined);
}

function status(): Record<string, unknown> {
  const a = addon();
  const backends: Record<string, unknown> = {};
  for (const name of ["ane", "cpu"] as BackendName[]) backends[name] = { ...a.availability(name), compiles: a.compiles(name) };
  return { pid: process.pid, platform: `${process.platform}-${process.arch}`, blas: a.blas(), backends, job: busy };
}

type Job = (params: Record<string, unknown>, ctx: JobContext) => Promise<Record<string, unknown>>;

const jobs: Record<string, Job> = {
  bench: async (params, ctx) => ({ ...(await runBenchJob(addon(), params as unknown as BenchJobParams, ctx)) }),
  train: async (params, ctx) => ({ ...(await runTrainJob(addon(), params as unknown as TrainJobParams, ctx)) }),
  sgemm: async (params) => {
    const n = Number(params.n ?? 2048);
    return { n, ms: Array.from(await addon().sgemm(n, Number(params.warmup ?? 1), Number(params.iters ?? 5))) };
  },
};

async function runJob(request: Request, job: Job): Promise<void> {
  const { id } = request;
  if (busy) {
    fail(id, { code: "busy", message: "The ANE worker is already running a job; wait for it or interrupt it." });
    return;
  }
  busy = id;
  busyStop = new Int32Array(1);
  try {
    const data = await job(request.params, {
      emit: (event, data) => reply({ id, type: "event", event, data }),
      cancelled: () => cancelled.has(id),
      stop: busyStop,
    });
    reply({ id, type: "result", data });
  } catch (error) {
    const e = error as Error;
    if (e instanceof CancelledError) fail(id, { code: "cancelled", message: "Interrupted; the rows measured so far were kept." });
    else fail(id, { code: "backend_failed", message: sentence(e.message), detail: e.stack });
  } finally {
    busy = null;
    busyStop = null;
    cancelled.delete(id);
  }
}

function sentence(message: string): string {
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

function handle(message: unknown): void {
  const request = message as Request;
  if (typeof request !== "object" || request === null || typeof request.id !== "string" || typeof request.method !== "string") return;
  const { id, method } = request;
  if (request.v !== PROTOCOL_VERSION) {
    fail(id, { code: "bad_request", message: `The ANE worker speaks protocol ${PROTOCOL_VERSION}, not ${String(request.v)}.` });
    return;
  }
  try {
    switch (method) {
      case "ping":
        reply({ id, type: "result", data: { pong: true, time: Date.now() / 1000 } });
        return;
      case "status":
        reply({ id, type: "result", data: status() });
        return;
      case "cancel": {
        const target = String(request.params.id ?? "");
        const known = busy === target;
        if (known) {
          cancelled.add(target);
          if (busyStop) busyStop[0] = 1;
        }
        reply({ id, type: "result", data: { cancelled: known } });
        return;
      }
      case "shutdown":
        reply({ id, type: "result", data: {} });
        setImmediate(() => process.exit(0));
        return;
      case "crash":
        // Stands in for a crash inside the private framework, so the kernel's handling can be tested.
        process.abort();
        return;
    }
    const job = jobs[method];
    if (!job) fail(id, { code: "bad_request", message: `The ANE worker has no method '${method}'.` });
    else void runJob(request, job);
  } catch (error) {
    fail(id, { code: "backend_failed", message: sentence((error as Error).message) });
  }
}

process.on("message", handle);
// The kernel is gone: nothing is left to answer to.
process.on("disconnect", () => process.exit(0));
