/**
 * Parser for the Go text/template subset luet trees use (see docs/tree-format.md). Produces a
 * small AST; anything outside the subset fails here with file:line rather than rendering wrong.
 */
import { CpmError } from '../../errors.js';

export type Arg =
  | { kind: 'dot'; line: number }
  | { kind: 'field'; line: number; fields: string[] } // .A.B (relative to dot)
  | { kind: 'var'; line: number; name: string; fields: string[] } // $x.A.B
  | { kind: 'ident'; line: number; name: string } // function name
  | { kind: 'string'; line: number; value: string }
  | { kind: 'number'; line: number; value: number }
  | { kind: 'bool'; line: number; value: boolean }
  | { kind: 'nil'; line: number }
  | { kind: 'pipe'; line: number; pipe: Pipeline; fields: string[] }; // (pipeline).A.B

export interface Command {
  args: Arg[];
  line: number;
}

export interface Pipeline {
  /** Variables declared (`$x :=`, `$i, $v :=`) or assigned (`$x =`). */
  decl: string[];
  assign: boolean;
  cmds: Command[];
  line: number;
}

export type TNode =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipe: Pipeline; line: number }
  | { kind: 'if'; pipe: Pipeline; body: TNode[]; else: TNode[] | null; line: number }
  | { kind: 'with'; pipe: Pipeline; body: TNode[]; else: TNode[] | null; line: number }
  | { kind: 'range'; pipe: Pipeline; body: TNode[]; else: TNode[] | null; line: number }
  | { kind: 'template'; name: string; pipe: Pipeline | null; line: number }
  | { kind: 'break'; line: number }
  | { kind: 'continue'; line: number };

export interface TemplateDef {
  name: string;
  body: TNode[];
  file: string;
  line: number;
}

export interface ParsedTemplate {
  file: string;
  root: TNode[];
  defines: TemplateDef[];
}

export function templateError(file: string, line: number, message: string): CpmError {
  return new CpmError('E_TEMPLATE', `${file}:${line}: template: ${message}`, {
    context: { file, line },
  });
}

// ---------------------------------------------------------------------------------------------
// Splitting text and actions

interface RawAction {
  body: string;
  line: number;
}
type Piece = { kind: 'text'; text: string } | { kind: 'act'; act: RawAction };

// The scans below jump with indexOf and regexes (native code) rather than stepping through each
// character in JS: a tree's templates are parsed once per process, before the JIT warms up, and
// a character loop made them hot enough to be optimized in the background (CPU a short run
// never earns back).

const isSpace = (c: string | undefined): boolean =>
  c === ' ' || c === '\t' || c === '\n' || c === '\r';

/** What findClose stops at: a quote, a comment's start, or the closing `}}`. */
const CLOSE_SCAN = /["'`]|\/\*|\}\}/g;

/** Finds the `}}` that closes an action starting at `from`, skipping quoted strings and comments. */
function findClose(src: string, from: number, file: string, line: number): number {
  let i = from;
  for (;;) {
    CLOSE_SCAN.lastIndex = i;
    if (!CLOSE_SCAN.test(src)) throw templateError(file, line, 'unclosed action (missing "}}")');
    i = CLOSE_SCAN.lastIndex;
    const c = src.charCodeAt(i - 1);
    if (c === 125 /* } */) return i - 2;
    if (c === 42 /* the * of a comment's start */) {
      const end = src.indexOf('*/', i);
      if (end < 0) throw templateError(file, line, 'unclosed comment');
      i = end + 2;
      continue;
    }
    // a quoted string: up to its closing quote (a backslash escapes the next character, except
    // in a raw string; only a raw string may span lines)
    const raw = c === 96; // a backquote
    while (i < src.length && src.charCodeAt(i) !== c) {
      if (!raw && src.charCodeAt(i) === 92 /* \ */) i++;
      if (!raw && src.charCodeAt(i) === 10)
        throw templateError(file, line, 'unterminated quoted string');
      i++;
    }
    if (i >= src.length) throw templateError(file, line, 'unterminated quoted string');
    i++;
  }
}

function split(src: string, file: string): Piece[] {
  const out: Piece[] = [];
  let pos = 0;
  let trimNext = false;
  // the line of the last action's start, counted on from there (actions come in order)
  let line = 1;
  let counted = 0;
  for (;;) {
    const open = src.indexOf('{{', pos);
    let text = src.slice(pos, open < 0 ? src.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
    if (open < 0) {
      if (text) out.push({ kind: 'text', text });
      return out;
    }
    for (let nl = src.indexOf('\n', counted); nl >= 0 && nl < open; nl = src.indexOf('\n', nl + 1))
      line++;
    counted = open;
    let start = open + 2;
    // "{{- " trims the whitespace before the action; the dash must be followed by a space.
    if (src[start] === '-' && isSpace(src[start + 1])) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 2;
    }
    if (text) out.push({ kind: 'text', text });
    const close = findClose(src, start, file, line);
    let body = src.slice(start, close);
    trimNext = false;
    if (body.endsWith('-') && isSpace(body[body.length - 2])) {
      trimNext = true;
      body = body.slice(0, -1);
    }
    out.push({ kind: 'act', act: { body, line } });
    pos = close + 2;
  }
}

// ---------------------------------------------------------------------------------------------
// Lexing one action

type Tok =
  | { t: 'ident'; v: string }
  | { t: 'field'; v: string[] } // .A.B or "." (empty list)
  | { t: 'var'; v: string; fields: string[] }
  | { t: 'string'; v: string }
  | { t: 'number'; v: number }
  | { t: 'sym'; v: '(' | ')' | '|' | ':=' | '=' | ',' }
  | { t: 'chain'; v: string[] }; // .A.B directly after ")"

const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
const FIELDS = /(?:\.[A-Za-z_][A-Za-z0-9_]*)+/y;
const NUMBER = /[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)/y;

function unquote(raw: string, file: string, line: number): string {
  if (raw.startsWith('`')) return raw.slice(1, -1);
  try {
    if (raw.startsWith("'")) {
      const s = JSON.parse(`"${raw.slice(1, -1).replace(/\\'/g, "'")}"`) as string;
      return String(s.codePointAt(0) ?? 0);
    }
    return JSON.parse(
      raw.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1').replace(/\\a/g, '\\u0007'),
    ) as string;
  } catch {
    throw templateError(file, line, `bad string literal ${raw}`);
  }
}

function lex(body: string, file: string, line: number): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  const match = (re: RegExp): string | null => {
    re.lastIndex = i;
    const m = re.exec(body);
    return m ? m[0] : null;
  };
  while (i < body.length) {
    const c = body[i]!;
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === '/' && body[i + 1] === '*') {
      const end = body.indexOf('*/', i + 2);
      i = end + 2;
      continue;
    }
    if (c === '(' || c === ')' || c === '|' || c === ',') {
      toks.push({ t: 'sym', v: c });
      i++;
      if (c === ')') {
        const f = match(FIELDS);
        if (f) {
          toks.push({ t: 'chain', v: f.slice(1).split('.') });
          i += f.length;
        }
      }
      continue;
    }
    if (c === ':' && body[i + 1] === '=') {
      toks.push({ t: 'sym', v: ':=' });
      i += 2;
      continue;
    }
    if (c === '=') {
      toks.push({ t: 'sym', v: '=' });
      i++;
      continue;
    }
    if (c === '"' || c === '`' || c === "'") {
      let j = i + 1;
      while (j < body.length && body[j] !== c) j += body[j] === '\\' && c !== '`' ? 2 : 1;
      const raw = body.slice(i, j + 1);
      if (c === "'") toks.push({ t: 'number', v: Number(unquote(raw, file, line)) });
      else toks.push({ t: 'string', v: unquote(raw, file, line) });
      i = j + 1;
      continue;
    }
    if (c === '$') {
      i++;
      const name = match(IDENT) ?? '';
      i += name.length;
      const f = match(FIELDS);
      if (f) i += f.length;
      toks.push({ t: 'var', v: '$' + name, fields: f ? f.slice(1).split('.') : [] });
      continue;
    }
    if (c === '.') {
      const f = match(FIELDS);
      if (f) {
        toks.push({ t: 'field', v: f.slice(1).split('.') });
        i += f.length;
        continue;
      }
      const n = match(NUMBER);
      if (n) {
        toks.push({ t: 'number', v: Number(n) });
        i += n.length;
        continue;
      }
      toks.push({ t: 'field', v: [] });
      i++;
      continue;
    }
    const n = /[0-9+-]/.test(c) ? match(NUMBER) : null;
    if (n) {
      toks.push({ t: 'number', v: Number(n) });
      i += n.length;
      continue;
    }
    const id = match(IDENT);
    if (id) {
      toks.push({ t: 'ident', v: id });
      i += id.length;
      continue;
    }
    throw templateError(file, line, `unexpected "${c}" in action`);
  }
  return toks;
}

// ---------------------------------------------------------------------------------------------
// Parsing

class ActionParser {
  private i = 0;
  constructor(
    private readonly toks: Tok[],
    private readonly file: string,
    private readonly line: number,
  ) {}

  done(): boolean {
    return this.i >= this.toks.length;
  }

  peek(): Tok | undefined {
    return this.toks[this.i];
  }

  next(): Tok | undefined {
    return this.toks[this.i++];
  }

  err(msg: string): CpmError {
    return templateError(this.file, this.line, msg);
  }

  pipeline(allowDecl: boolean, stopAtParen = false): Pipeline {
    const decl: string[] = [];
    let assign = false;
    if (allowDecl) {
      // Look ahead for "$x :=", "$x =", "$i, $v :=".
      let j = this.i;
      const names: string[] = [];
      while (this.toks[j]?.t === 'var') {
        const v = this.toks[j] as { t: 'var'; v: string; fields: string[] };
        if (v.fields.length) break;
        names.push(v.v);
        j++;
        const s = this.toks[j];
        if (s?.t === 'sym' && s.v === ',') {
          j++;
          continue;
        }
        if (s?.t === 'sym' && (s.v === ':=' || s.v === '=')) {
          decl.push(...names);
          assign = s.v === '=';
          this.i = j + 1;
        }
        break;
      }
    }
    const cmds: Command[] = [];
    for (;;) {
      const args: Arg[] = [];
      for (;;) {
        const t = this.peek();
        if (!t) break;
        if (t.t === 'sym' && (t.v === '|' || t.v === ')')) break;
        args.push(this.operand());
      }
      if (args.length === 0) throw this.err('missing value in pipeline');
      cmds.push({ args, line: this.line });
      const t = this.peek();
      if (t?.t === 'sym' && t.v === '|') {
        this.next();
        continue;
      }
      if (t?.t === 'sym' && t.v === ')' && !stopAtParen) throw this.err('unexpected ")"');
      break;
    }
    return { decl, assign, cmds, line: this.line };
  }

  operand(): Arg {
    const t = this.next()!;
    const line = this.line;
    switch (t.t) {
      case 'field':
        return t.v.length === 0 ? { kind: 'dot', line } : { kind: 'field', line, fields: t.v };
      case 'var':
        return { kind: 'var', line, name: t.v, fields: t.fields };
      case 'string':
        return { kind: 'string', line, value: t.v };
      case 'number':
        return { kind: 'number', line, value: t.v };
      case 'ident':
        if (t.v === 'true' || t.v === 'false') return { kind: 'bool', line, value: t.v === 'true' };
        if (t.v === 'nil') return { kind: 'nil', line };
        return { kind: 'ident', line, name: t.v };
      case 'sym':
        if (t.v === '(') {
          const pipe = this.pipeline(true, true);
          const close = this.next();
          if (!close || close.t !== 'sym' || close.v !== ')') throw this.err('unclosed "("');
          let fields: string[] = [];
          if (this.peek()?.t === 'chain') fields = (this.next() as { v: string[] }).v;
          return { kind: 'pipe', line, pipe, fields };
        }
        throw this.err(`unexpected "${t.v}"`);
      case 'chain':
        throw this.err('unexpected field chain');
    }
  }
}

const SUPPORTED_KEYWORDS = new Set([
  'if',
  'else',
  'end',
  'range',
  'with',
  'define',
  'template',
  'break',
  'continue',
]);
const UNSUPPORTED_KEYWORDS = new Set(['block']);

type Frame = {
  kind: 'if' | 'with' | 'range' | 'define' | 'root';
  nodes: TNode[];
  node?: Extract<TNode, { kind: 'if' | 'with' | 'range' }>;
  /** `else if` chains close together with one {{end}}: how many levels this frame closes. */
  chained: number;
  name?: string;
  line: number;
};

/**
 * Parses a template source. `{{define}}` blocks are returned separately (they are global to a
 * render, as in Go); the root is everything else.
 */
export function parseTemplate(src: string, file: string): ParsedTemplate {
  const pieces = split(src, file);
  const defines: TemplateDef[] = [];
  const root: Frame = { kind: 'root', nodes: [], chained: 0, line: 1 };
  const stack: Frame[] = [root];
  const top = (): Frame => stack[stack.length - 1]!;

  // counted with an index: for-of allocates an iterator result per step in code not yet compiled
  for (let pi = 0; pi < pieces.length; pi++) {
    const p = pieces[pi]!;
    if (p.kind === 'text') {
      top().nodes.push({ kind: 'text', text: p.text });
      continue;
    }
    const { body, line } = p.act;
    const trimmed = body.trim();
    if (trimmed.startsWith('/*')) {
      if (!trimmed.endsWith('*/')) throw templateError(file, line, 'comment must fill its action');
      continue;
    }
    const toks = lex(body, file, line);
    if (toks.length === 0) throw templateError(file, line, 'missing value for command');
    const first = toks[0]!;
    const kw = first.t === 'ident' ? first.v : '';
    const ap = new ActionParser(toks, file, line);
    if (UNSUPPORTED_KEYWORDS.has(kw)) {
      throw templateError(file, line, `"{{${kw}}}" is not supported by cpm's template engine`);
    }
    if (!SUPPORTED_KEYWORDS.has(kw)) {
      top().nodes.push({ kind: 'action', pipe: ap.pipeline(true), line });
      continue;
    }
    ap.next();
    switch (kw) {
      case 'if':
      case 'with':
      case 'range': {
        const pipe = ap.pipeline(kw !== 'if');
        if (kw === 'range' && pipe.decl.length > 2) {
          throw templateError(file, line, 'range can declare at most two variables');
        }
        const node = { kind: kw, pipe, body: [], else: null, line } as Extract<
          TNode,
          { kind: 'if' | 'with' | 'range' }
        >;
        top().nodes.push(node);
        stack.push({ kind: kw, nodes: node.body, node, chained: 0, line });
        break;
      }
      case 'else': {
        const f = top();
        if (!f.node || f.node.else) throw templateError(file, line, 'unexpected {{else}}');
        f.node.else = [];
        f.nodes = f.node.else;
        if (!ap.done()) {
          // "else if ..." / "else with ...": a nested node closed by the same {{end}}.
          const k = ap.next();
          if (k?.t !== 'ident' || (k.v !== 'if' && k.v !== 'with')) {
            throw templateError(file, line, 'expected "if" or "with" after "else"');
          }
          const pipe = ap.pipeline(k.v === 'with');
          const node = { kind: k.v, pipe, body: [], else: null, line } as Extract<
            TNode,
            { kind: 'if' | 'with' }
          >;
          f.nodes.push(node);
          stack.push({ kind: k.v, nodes: node.body, node, chained: f.chained + 1, line });
        }
        break;
      }
      case 'end': {
        if (!ap.done()) throw templateError(file, line, 'unexpected arguments after "end"');
        const f = top();
        if (f.kind === 'root') throw templateError(file, line, 'unexpected {{end}}');
        const closing = f.chained;
        stack.pop();
        for (let k = 0; k < closing; k++) stack.pop();
        if (f.kind === 'define') {
          defines.push({ name: f.name!, body: f.nodes, file, line: f.line });
        }
        break;
      }
      case 'define': {
        if (stack.length !== 1) throw templateError(file, line, '{{define}} must be at top level');
        const name = ap.next();
        if (name?.t !== 'string' || !ap.done()) {
          throw templateError(file, line, '{{define}} needs one quoted name');
        }
        stack.push({ kind: 'define', nodes: [], chained: 0, name: name.v, line });
        break;
      }
      case 'template': {
        const name = ap.next();
        if (name?.t !== 'string')
          throw templateError(file, line, '{{template}} needs a quoted name');
        const pipe = ap.done() ? null : ap.pipeline(false);
        top().nodes.push({ kind: 'template', name: name.v, pipe, line });
        break;
      }
      case 'break':
      case 'continue': {
        if (!stack.some((s) => s.kind === 'range')) {
          throw templateError(file, line, `{{${kw}}} outside {{range}}`);
        }
        top().nodes.push({ kind: kw, line });
        break;
      }
    }
  }
  if (stack.length > 1) {
    const f = top();
    throw templateError(file, f.line, `unclosed {{${f.kind}}} (missing {{end}})`);
  }
  return { file, root: root.nodes, defines };
}
