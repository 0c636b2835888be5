import type { FlagMap, MagicSpec } from "./schema.js";
import { builtinMagics } from "./builtins.js";
import { tuneMagic } from "./tune.js";
import { generateMagic } from "./generate.js";
import { adaptersMagic } from "./adapters.js";
import { aneMagics } from "./ane.js";
import { syncCostMagic } from "./distributed.js";

/** Every magic family of the kernel, one import per family file. */
export const MAGICS: MagicSpec<FlagMap>[] = [...builtinMagics, tuneMagic, generateMagic, adaptersMagic, syncCostMagic, ...aneMagics];
