/**
 * A small XML well-formedness check (tags nest and close, attributes are quoted and unique,
 * entities are known, one root element). Enough to prove that an SVG we emit will parse.
 */
export function xmlProblems(xml: string): string[] {
  const problems: string[] = [];
  const source = xml.replace(/^<\?xml[^?]*\?>\s*/, "");
  const stack: string[] = [];
  let roots = 0;
  const entity = /&(#\d+|#x[0-9a-fA-F]+|amp|lt|gt|quot|apos);/g;
  const checkText = (text: string, where: string) => {
    if (text.replace(entity, "").includes("&")) problems.push(`bare & in ${where}: ${text.slice(0, 60)}`);
    if (text.includes("<")) problems.push(`< in ${where}`);
  };
  const token = /<!--[\s\S]*?-->|<[^>]*>|[^<]+|</g;
  for (let m = token.exec(source); m; m = token.exec(source)) {
    const t = m[0];
    if (t.startsWith("<!--")) continue;
    if (t === "<") {
      problems.push("unterminated tag");
      continue;
    }
    if (!t.startsWith("<")) {
      if (stack.length === 0 && t.trim() !== "") problems.push(`text outside the root: ${t.slice(0, 40)}`);
      checkText(t, "text");
      continue;
    }
    const close = /^<\/([A-Za-z_][\w:.-]*)\s*>$/.exec(t);
    if (close) {
      const open = stack.pop();
      if (open !== close[1]) problems.push(`</${close[1]}> closes <${open ?? "nothing"}>`);
      continue;
    }
    const open = /^<([A-Za-z_][\w:.-]*)([\s\S]*?)(\/?)>$/.exec(t);
    if (!open) {
      problems.push(`malformed tag ${t.slice(0, 60)}`);
      continue;
    }
    const [, name, attrs, selfClosing] = open as unknown as [string, string, string, string];
    const seen = new Set<string>();
    let rest = attrs;
    const attr = /^\s+([A-Za-z_][\w:.-]*)\s*=\s*"([^"]*)"/;
    for (let a = attr.exec(rest); a; a = attr.exec(rest)) {
      if (seen.has(a[1]!)) problems.push(`duplicate attribute ${a[1]} on <${name}>`);
      seen.add(a[1]!);
      checkText(a[2]!, `attribute ${a[1]}`);
      rest = rest.slice(a[0].length);
    }
    if (rest.trim() !== "") problems.push(`bad attributes on <${name}>: ${rest.slice(0, 60)}`);
    if (stack.length === 0) roots++;
    if (!selfClosing) stack.push(name);
  }
  if (stack.length) problems.push(`unclosed <${stack.join("><")}>`);
  if (roots !== 1) problems.push(`${roots} root elements`);
  return problems;
}
