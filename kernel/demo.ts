// Placeholder until this command is written; replaced by its owner.
export async function run(_argv: string[]): Promise<number> {
  throw new Error("this command is not implemented yet");
}
