/**
 * BuildKit's `Node.Dump()`: the S-expression form of an AST used by BuildKit's parser test corpus.
 *
 *   dump(n) = TrimSpace( lower(n.value)
 *                      + (flags ? " " + %q(flags) : "")
 *                      + for each child c: "(" + dump(c) + ")\n"
 *                      + for each arg a: " " + (a has children ? dump(a) : Quote(a.value)) )
 *
 * Written without recursion (ONBUILD triggers nest, and a line can nest them thousands deep). The
 * trim is worked out from the known shape of the pieces instead of scanning the concatenated
 * string, so nested results are never flattened or copied and dumping stays linear.
 */
import type { Node } from './ast.js';
import { goQuote, goToLower, trimLeftSpace, trimSpace } from './gostr.js';

/** `[%q %q ...]` of a string list, as Go's fmt prints a `[]string` with `%q`. */
export function quoteList(items: string[]): string {
  return '[' + items.map(goQuote).join(' ') + ']';
}

function hasNested(n: Node): boolean {
  if (n.children.length > 0) return true;
  for (const a of n.next) if (a.children.length > 0) return true;
  return false;
}

/**
 * One node's dump, given the dumps of its nested nodes. Nested dumps are never empty (they contain
 * at least `()`) and have no white space at either end, and quoted values start and end with `"`,
 * so white space can only be trimmed from the keyword/flags head, from the final `\n` after the
 * last child, or from the single space before the first argument.
 */
function dumpOne(n: Node, nested: (n: Node) => string): string {
  let head = goToLower(n.value);
  if (n.flags.length > 0) head += ' ' + quoteList(n.flags);
  const children = n.children;
  const args = n.next;
  if (children.length === 0 && args.length === 0) return trimSpace(head);
  let out = trimLeftSpace(head);
  for (let i = 0; i < children.length; i++) {
    out += '(' + nested(children[i]!) + ')';
    if (i < children.length - 1 || args.length > 0) out += '\n';
  }
  for (let i = 0; i < args.length; i++) {
    if (i > 0 || out.length > 0) out += ' ';
    const a = args[i]!;
    out += a.children.length > 0 ? nested(a) : goQuote(a.value);
  }
  return out;
}

export function dump(node: Node): string {
  const done = new Map<Node, string>();
  const nested = (n: Node): string => done.get(n) ?? dumpOne(n, nested);
  // Pre-order list of the nodes whose dump contains other nodes' dumps; reversed, every node comes
  // after the nodes nested in it. Nodes without nesting are dumped directly when needed.
  const order: Node[] = [];
  const pending: Node[] = hasNested(node) ? [node] : [];
  while (pending.length) {
    const n = pending.pop()!;
    order.push(n);
    for (const c of n.children) if (hasNested(c)) pending.push(c);
    for (const a of n.next) if (a.children.length > 0) pending.push(a);
  }
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    if (!done.has(n)) done.set(n, dumpOne(n, nested));
  }
  return nested(node);
}
