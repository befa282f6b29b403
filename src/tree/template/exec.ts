/**
 * Executes parsed templates with Go text/template semantics, except that printing a missing value
 * is an error (Go's `missingkey=error` for output): `<no value>` in a build spec or a finalizer is
 * always a bug (`chmod /x/<no value>/*` is a shell redirect). Missing values stay usable in
 * conditions, `default`, `hasKey`, `index`, ... as in Go's default mode. Errors are CpmError
 * E_TEMPLATE with the file:line of the action.
 */
import { CpmError } from '../../errors.js';
import { FUNCS, isKnownFunction } from './funcs.js';
import {
  parseTemplate,
  templateError,
  type Arg,
  type ParsedTemplate,
  type Pipeline,
  type TemplateDef,
  type TNode,
} from './parse.js';
import { isMap, isMissing, MISSING, printValue, toNil, truthy, type Value } from './values.js';

export interface RenderLimits {
  /** Largest output, characters. */
  maxOutput: number;
  /** Deepest nesting of {{template}}/{{include}} calls. */
  maxDepth: number;
}

export const DEFAULT_RENDER_LIMITS: RenderLimits = { maxOutput: 16 * 1024 * 1024, maxDepth: 200 };

class Break {}
class Continue {}

interface Scope {
  vars: Map<string, Value>;
  parent: Scope | null;
}

function lookupVar(s: Scope | null, name: string): Scope | null {
  for (let c = s; c; c = c.parent) if (c.vars.has(name)) return c;
  return null;
}

// Loops over nodes, commands and arguments below count with an index: a template is rendered
// before the JIT has compiled any of this, and for-of there allocates an iterator result per step.

/** Walks the AST and rejects functions the engine does not have, even in branches not taken. */
function checkFunctions(nodes: TNode[], file: string): void {
  const checkPipe = (p: Pipeline | null): void => {
    if (!p) return;
    for (let i = 0; i < p.cmds.length; i++) {
      const args = p.cmds[i]!.args;
      for (let k = 0; k < args.length; k++) checkArg(args[k]!);
    }
  };
  const checkArg = (a: Arg): void => {
    if (a.kind === 'ident' && !isKnownFunction(a.name)) {
      throw templateError(
        file,
        a.line,
        `function "${a.name}" is not supported by cpm's template engine`,
      );
    }
    if (a.kind === 'pipe') checkPipe(a.pipe);
  };
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!;
    switch (n.kind) {
      case 'action':
      case 'template':
        checkPipe(n.pipe);
        break;
      case 'if':
      case 'with':
      case 'range':
        checkPipe(n.pipe);
        checkFunctions(n.body, file);
        if (n.else) checkFunctions(n.else, file);
        break;
      default:
        break;
    }
  }
}

/** Names the value an action printed as `<no value>` (the last command's field chain). */
function missingMessage(p: Pipeline): string {
  const last = p.cmds[p.cmds.length - 1];
  const a = last && last.args.length === 1 ? last.args[0] : undefined;
  const name =
    a?.kind === 'field'
      ? `.${a.fields.join('.')}`
      : a?.kind === 'var'
        ? `${a.name}${a.fields.map((f) => `.${f}`).join('')}`
        : undefined;
  return (
    `${name ? `${name} has no value` : 'the action has no value'} (it would render as "<no value>"); ` +
    'set it (in the package or a --values file) or guard it with `default`, `if` or `hasKey`'
  );
}

/** A set of named templates (from `templates/` and the file itself) plus the root to render. */
export class TemplateSet {
  private readonly defs = new Map<string, TemplateDef>();
  /**
   * The last source rendered per file, parsed and checked, with the templates it sees: a
   * collection's packages all render one build.yaml, which is parsed once. Parsed templates are
   * never changed by rendering; a source that fails to parse or check is not kept (each render
   * throws the same error again).
   */
  private readonly parsed = new Map<
    string,
    { src: string; root: TNode[]; defs: Map<string, TemplateDef> }
  >();

  /** Adds the `{{define}}` blocks of a source (e.g. a tree's shared templates/*.yaml). */
  addDefinitions(src: string, file: string): void {
    this.add(parseTemplate(src, file));
    this.parsed.clear();
  }

  private add(p: ParsedTemplate): void {
    checkFunctions(p.root, p.file);
    for (const d of p.defines) {
      checkFunctions(d.body, d.file);
      // Later definitions replace earlier ones, as Go's (*Template).Parse does.
      this.defs.set(d.name, d);
    }
  }

  /** Parses and renders `src` with `data` as dot. Defines in `src` are visible only to this render. */
  render(
    src: string,
    file: string,
    data: Value,
    limits: RenderLimits = DEFAULT_RENDER_LIMITS,
  ): string {
    let hit = this.parsed.get(file);
    if (hit?.src !== src) {
      const parsed = parseTemplate(src, file);
      let defs = this.defs;
      if (parsed.defines.length > 0) {
        const local = new TemplateSet();
        for (const [k, v] of this.defs) local.defs.set(k, v);
        local.add(parsed);
        defs = local.defs;
      } else {
        checkFunctions(parsed.root, parsed.file);
      }
      hit = { src, root: parsed.root, defs };
      this.parsed.set(file, hit);
    }
    const ex = new Executor(hit.defs, limits);
    ex.run(hit.root, file, data, { vars: new Map([['$', data]]), parent: null }, 0);
    return ex.out.join('');
  }
}

class Executor {
  readonly out: string[] = [];
  private size = 0;

  constructor(
    private readonly defs: Map<string, TemplateDef>,
    private readonly limits: RenderLimits,
  ) {}

  private write(s: string, file: string, line: number): void {
    this.size += s.length;
    if (this.size > this.limits.maxOutput) {
      throw templateError(file, line, `output is larger than ${this.limits.maxOutput} characters`);
    }
    this.out.push(s);
  }

  run(nodes: TNode[], file: string, dot: Value, scope: Scope, depth: number): void {
    for (let i = 0; i < nodes.length; i++) {
      const n = nodes[i]!;
      switch (n.kind) {
        case 'text':
          this.write(n.text, file, 0);
          break;
        case 'action': {
          const v = this.pipeline(n.pipe, file, dot, scope, depth);
          if (n.pipe.decl.length === 0) {
            if (isMissing(v) || v === null || v === undefined)
              throw templateError(file, n.line, missingMessage(n.pipe));
            this.write(printValue(v), file, n.line);
          }
          break;
        }
        case 'if': {
          const inner: Scope = { vars: new Map(), parent: scope };
          const v = this.pipeline(n.pipe, file, dot, inner, depth);
          if (truthy(v)) this.run(n.body, file, dot, inner, depth);
          else if (n.else) this.run(n.else, file, dot, inner, depth);
          break;
        }
        case 'with': {
          const inner: Scope = { vars: new Map(), parent: scope };
          const v = this.pipeline(n.pipe, file, dot, inner, depth);
          if (truthy(v)) this.run(n.body, file, v, inner, depth);
          else if (n.else) this.run(n.else, file, dot, { vars: new Map(), parent: scope }, depth);
          break;
        }
        case 'range':
          this.range(n, file, dot, scope, depth);
          break;
        case 'template': {
          const data = n.pipe ? this.pipeline(n.pipe, file, dot, scope, depth) : null;
          this.call(n.name, data, file, n.line, depth);
          break;
        }
        case 'break':
          throw new Break();
        case 'continue':
          throw new Continue();
      }
    }
  }

  /** Runs a named template with `data` as dot; `$` inside it is that data, as in Go. */
  call(name: string, data: Value, file: string, line: number, depth: number): void {
    const def = this.defs.get(name);
    if (!def) throw templateError(file, line, `no template "${name}" is defined`);
    if (depth + 1 > this.limits.maxDepth) {
      throw templateError(file, line, `template calls nested deeper than ${this.limits.maxDepth}`);
    }
    const d = isMissing(data) ? null : data;
    this.run(def.body, def.file, d, { vars: new Map([['$', d]]), parent: null }, depth + 1);
  }

  private range(
    n: Extract<TNode, { kind: 'range' }>,
    file: string,
    dot: Value,
    scope: Scope,
    depth: number,
  ): void {
    const pipe = { ...n.pipe, decl: [] };
    const v = this.pipeline(pipe, file, dot, scope, depth);
    let items: Array<[Value, Value]>;
    if (Array.isArray(v)) items = v.map((x, i) => [i, x]);
    else if (isMap(v))
      items = Object.keys(v)
        .sort()
        .map((k) => [k, v[k]]);
    else if (typeof v === 'number' && Number.isInteger(v)) {
      items = Array.from({ length: Math.max(0, v) }, (_, i) => [i, i]);
    } else if (v === null || v === undefined || isMissing(v)) items = [];
    else throw templateError(file, n.line, `range can't iterate over ${printValue(v)}`);
    if (items.length === 0) {
      if (n.else) this.run(n.else, file, dot, { vars: new Map(), parent: scope }, depth);
      return;
    }
    for (let i = 0; i < items.length; i++) {
      const k = items[i]![0];
      const x = items[i]![1];
      const inner: Scope = { vars: new Map(), parent: scope };
      if (n.pipe.decl.length === 1) inner.vars.set(n.pipe.decl[0]!, x);
      if (n.pipe.decl.length === 2) {
        inner.vars.set(n.pipe.decl[0]!, k);
        inner.vars.set(n.pipe.decl[1]!, x);
      }
      try {
        this.run(n.body, file, x, inner, depth);
      } catch (e) {
        if (e instanceof Break) break;
        if (e instanceof Continue) continue;
        throw e;
      }
    }
  }

  pipeline(p: Pipeline, file: string, dot: Value, scope: Scope, depth: number): Value {
    let v: Value = undefined;
    for (let i = 0; i < p.cmds.length; i++) {
      const c = p.cmds[i]!;
      v = this.command(c.args, i === 0 ? undefined : { v }, file, dot, scope, depth, c.line);
    }
    if (p.decl.length > 0) {
      const name = p.decl[0]!;
      if (p.assign) {
        const owner = lookupVar(scope, name);
        if (!owner) throw templateError(file, p.line, `undefined variable: ${name}`);
        owner.vars.set(name, v);
      } else {
        scope.vars.set(name, v);
      }
    }
    return v;
  }

  private command(
    args: Arg[],
    piped: { v: Value } | undefined,
    file: string,
    dot: Value,
    scope: Scope,
    depth: number,
    line: number,
  ): Value {
    const head = args[0]!;
    if (head.kind === 'ident') {
      return this.callFn(head.name, args.slice(1), piped, file, dot, scope, depth, head.line);
    }
    if (args.length > 1 || piped) {
      const what = head.kind === 'field' ? `.${head.fields.join('.')}` : head.kind;
      throw templateError(file, line, `can't give argument to non-function ${what}`);
    }
    return this.arg(head, file, dot, scope, depth);
  }

  private callFn(
    name: string,
    argNodes: Arg[],
    piped: { v: Value } | undefined,
    file: string,
    dot: Value,
    scope: Scope,
    depth: number,
    line: number,
  ): Value {
    const evalAt = (i: number): Value =>
      i < argNodes.length ? this.arg(argNodes[i]!, file, dot, scope, depth) : piped!.v;
    const count = argNodes.length + (piped ? 1 : 0);
    if (name === 'and' || name === 'or') {
      if (count < 1) throw templateError(file, line, `wrong number of args for ${name}`);
      // Short-circuit and return the deciding operand, as Go (>= 1.18) does.
      let v: Value = undefined;
      for (let i = 0; i < count; i++) {
        v = evalAt(i);
        if (name === 'and' ? !truthy(v) : truthy(v)) return v;
      }
      return v;
    }
    const raw: Value[] = [];
    for (let i = 0; i < count; i++) raw.push(evalAt(i));
    if (name === 'include') {
      if (typeof raw[0] !== 'string' || raw.length !== 2) {
        throw templateError(file, line, 'include needs a template name and one argument');
      }
      const sub = new Executor(this.defs, this.limits);
      sub.call(raw[0], raw[1], file, line, depth);
      return sub.out.join('');
    }
    // eq/ne/index/... see missing values as Go's invalid reflect.Value; other functions get nil.
    const passMissing = name === 'eq' || name === 'ne' || name === 'index' || name === 'not';
    const fn = Object.hasOwn(FUNCS, name) ? FUNCS[name] : undefined;
    if (!fn)
      throw templateError(
        file,
        line,
        `function "${name}" is not supported by cpm's template engine`,
      );
    try {
      return fn(passMissing ? raw : raw.map(toNil));
    } catch (e) {
      if (e instanceof CpmError) throw e;
      throw templateError(file, line, `error calling ${name}: ${(e as Error).message}`);
    }
  }

  private arg(a: Arg, file: string, dot: Value, scope: Scope, depth: number): Value {
    switch (a.kind) {
      case 'dot':
        return dot;
      case 'field':
        return this.fields(dot, a.fields, '', file, a.line);
      case 'var': {
        const owner = lookupVar(scope, a.name);
        if (!owner) throw templateError(file, a.line, `undefined variable: ${a.name}`);
        return this.fields(owner.vars.get(a.name), a.fields, a.name, file, a.line);
      }
      case 'string':
      case 'number':
      case 'bool':
        return a.value;
      case 'nil':
        return null;
      case 'ident':
        return this.callFn(a.name, [], undefined, file, dot, scope, depth, a.line);
      case 'pipe': {
        const v = this.pipeline(a.pipe, file, dot, { vars: new Map(), parent: scope }, depth);
        return this.fields(v, a.fields, '(...)', file, a.line);
      }
    }
  }

  private fields(v: Value, names: string[], base: string, file: string, line: number): Value {
    let cur = v;
    let path = base;
    for (let i = 0; i < names.length; i++) {
      const f = names[i]!;
      if (isMissing(cur)) return MISSING; // Go: a field of a missing value is missing, not an error.
      if (cur === null || cur === undefined) {
        throw templateError(file, line, `nil pointer evaluating ${path || '.'}.${f}`);
      }
      if (!isMap(cur)) {
        const t = Array.isArray(cur) ? 'list' : typeof cur;
        throw templateError(
          file,
          line,
          `can't evaluate field ${f} in type ${t} (at ${path || '.'})`,
        );
      }
      cur = Object.prototype.hasOwnProperty.call(cur, f) ? cur[f] : MISSING;
      path += '.' + f;
    }
    return cur;
  }
}
