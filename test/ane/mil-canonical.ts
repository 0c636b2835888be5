/**
 * MIL text reduced to what a compiler reads: every statement's type, operation, arguments and
 * constant value, with the names a generator chose (variables, `[name = string("...")]` labels) and
 * its indentation left out. Two programs with the same canonical form are the same program.
 * Variables become %0, %1... in order of definition; the function's input becomes %in.
 */
export function canonicalMil(text: string): string[] {
  const names = new Map<string, string>();
  const rename = (value: string) => names.get(value.trim()) ?? value.trim();
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim().replace(/\s+/g, " ");
    if (line.length === 0) continue;
    const func = /^func (\w+<\w+>)\((.*) (\w+)\) \{$/.exec(line);
    if (func) {
      names.set(func[3]!, "%in");
      out.push(`func ${func[1]}(${func[2]} %in) {`);
      continue;
    }
    const ret = /^\} -> \((.*)\);$/.exec(line);
    if (ret) {
      out.push(`} -> (${ret[1]!.split(",").map(rename).join(", ")});`);
      continue;
    }
    const eq = line.indexOf(" = ");
    const statement = eq > 0 && line.endsWith(";") ? parseStatement(line) : undefined;
    if (!statement) {
      out.push(line);
      continue;
    }
    const args = splitTopLevel(statement.args).map((a) => {
      const [key, value] = a.split(" = ");
      return value === undefined ? rename(a) : `${key} = ${rename(value)}`;
    });
    const attributes = splitTopLevel(statement.attributes).filter((a) => !/^name = string\(".*"\)$/.test(a));
    names.set(statement.name, `%${names.size}`);
    out.push(`${statement.type} ${names.get(statement.name)} = ${statement.op}(${args.join(", ")})${attributes.length ? `[${attributes.join(", ")}]` : ""};`);
  }
  return out;
}

interface Statement {
  type: string;
  name: string;
  op: string;
  args: string;
  attributes: string;
}

function parseStatement(line: string): Statement | undefined {
  const eq = line.indexOf(" = ");
  const lhs = line.slice(0, eq);
  const space = lhs.lastIndexOf(" ");
  const rhs = line.slice(eq + 3, -1);
  const open = rhs.indexOf("(");
  if (space < 0 || open < 0) return undefined;
  const close = matching(rhs, open);
  if (close < 0 || rhs[close + 1] !== "[" || !rhs.endsWith("]")) return undefined;
  return { type: lhs.slice(0, space), name: lhs.slice(space + 1), op: rhs.slice(0, open), args: rhs.slice(open + 1, close), attributes: rhs.slice(close + 2, -1) };
}

function matching(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "(" || c === "[" || c === "{" || c === "<") depth++;
    else if (c === ")" || c === "]" || c === "}" || c === ">") {
      depth--;
      if (depth === 0) return i;
    } else if (c === '"') i = text.indexOf('"', i + 1);
  }
  return -1;
}

/** Splits "a = b, c = f(d, e)" at the commas outside brackets and strings. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') i = text.indexOf('"', i + 1);
    else if ("([{<".includes(c!)) depth++;
    else if (")]}>".includes(c!)) depth--;
    else if (c === "," && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (text.trim().length > 0) parts.push(text.slice(start).trim());
  return parts;
}
