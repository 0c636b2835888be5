/**
 * `tunelab <command>`: each command lives in its own module, loaded only when used, so that
 * `tunelab kernel` starts without paying for the runner, the setup code or the bridge CLI.
 */
interface Command {
  summary: string;
  load(): Promise<{ run(argv: string[]): Promise<number> }>;
}

const COMMANDS: Record<string, Command> = {
  kernel: { summary: "run the kernel: tunelab kernel <connection-file>", load: () => import("./main.js") },
  install: { summary: "install the Jupyter kernelspec: tunelab install [--user | --sys-prefix | --prefix DIR]", load: () => import("./install.js") },
  run: { summary: "execute a notebook headlessly: tunelab run NOTEBOOK.ipynb [-p name=value] [-o OUT.ipynb] [--html OUT.html]", load: () => import("./runner/cli.js") },
  bridge: { summary: "serve the MLX bridge for a remote notebook: tunelab bridge --listen tcp://HOST:PORT", load: () => import("./bridge/serve-cli.js") },
  doctor: { summary: "check the bridge's Python, MLX backend and BLAS, and the native addon", load: () => import("./doctor.js") },
  setup: { summary: "install what a fresh machine needs beyond npm install (idempotent; --test adds test tools)", load: () => import("./setup/index.js") },
  demo: { summary: "run the flagship notebook on the embedded model and write the executed notebook and report", load: () => import("./demo.js") },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return ["usage: tunelab <command> [options]", "", ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`)].join("\n");
}

export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    process.exitCode = name ? 0 : 2;
    return;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`tunelab: unknown command '${name}'.\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  try {
    process.exitCode = await (await command.load()).run(rest);
  } catch (error) {
    console.error(`tunelab ${name}: ${(error as Error).message}`);
    process.exitCode = 1;
  }
}
