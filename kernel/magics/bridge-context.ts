import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { BRIDGE, type BridgeClient } from "../bridge/client.js";
import type { MagicContext } from "./schema.js";

/** The bridge for this notebook; its runs/ directory is the notebook's. */
export function bridgeFor(ctx: MagicContext): BridgeClient {
  const bridge = ctx.services.get(BRIDGE);
  bridge.setRunsDir(join(ctx.cwd, "runs"));
  return bridge;
}

/** A model given as a path is resolved against the notebook; anything else is a name the bridge resolves. */
export function modelArg(model: string | undefined, cwd: string): string | null {
  if (!model || model === "default") return null;
  const path = resolve(cwd, model);
  return existsSync(path) ? path : model;
}
